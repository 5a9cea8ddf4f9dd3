"""The report's scores: each model's probabilities, metrics, bootstrap intervals, grades.

The combined model's probabilities come from :func:`thyrocam.evaluate.score_run`
(the same numbers ``thyrocam evaluate`` writes into the run's ``metrics.json``);
the single-modality ablation runs are scored here on the same images.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from thyrocam.clinical import TIRADS_GRADES
from thyrocam.data import Sample
from thyrocam.errors import InputError, check_choice
from thyrocam.evaluate import Scored, score_samples
from thyrocam.metrics import binary_metrics, calibration_curve, roc_auc, roc_curve
from thyrocam.predictor import Predictor

__all__ = [
    "ABLATION_KINDS",
    "COMBINED",
    "BOOTSTRAP_RESAMPLES",
    "GradeRow",
    "ModelScore",
    "Calibration",
    "Scoring",
    "load_ablation_runs",
    "bootstrap_auc",
    "case_resamples",
    "percentile_interval",
    "results_by_grade",
    "score_models",
]

ABLATION_KINDS = ("image", "clinical")
# The name of the main run's row; ablation runs are "<kind>-only".
COMBINED = "combined"
# Case resamples behind every 95% interval of the report.
BOOTSTRAP_RESAMPLES = 1000


class GradeRow(TypedDict):
    """One DDTI TI-RADS grade (or ``"none"``): a row of ``metrics.json["by_tirads_grade"]``."""

    grade: str
    images: int
    cases: int
    malignant: int
    mean_probability: float
    called_malignant: float
    accuracy: float
    auc: float | None


@dataclass(frozen=True)
class ModelScore:
    """One model scored on the held-out images.

    Attributes:
        name: ``"combined"``, ``"image-only"`` or ``"clinical-only"``.
        run: the run folder.
        modalities: what the run was trained on (``both``, ``image``, ``clinical``).
        probabilities: ``(N,)`` P(malignant) per held-out image.
        metrics: :func:`thyrocam.metrics.binary_metrics` at the run's threshold.
        auc_ci: 95% bootstrap interval of the AUC (``None`` with too few resamples).
        diff_ci: 95% interval of ``AUC(combined) - AUC(this)`` (``None`` for combined).
        fpr: ROC false-positive rates.
        tpr: ROC true-positive rates.
    """

    name: str
    run: str
    modalities: str
    probabilities: np.ndarray
    metrics: dict
    auc_ci: list[float] | None
    diff_ci: list[float] | None
    fpr: list[float]
    tpr: list[float]

    def to_json(self) -> dict:
        """The model's entry of ``metrics.json["ablation"]``."""
        return {
            **self.metrics,
            "auc_ci": self.auc_ci,
            "diff_ci": self.diff_ci,
            "modalities": self.modalities,
            "run": self.run,
        }


@dataclass(frozen=True)
class Calibration:
    """Reliability diagram of the combined model: per probability bin."""

    mean_predicted: list[float]
    observed: list[float]
    count: list[int]


@dataclass(frozen=True)
class Scoring:
    """Every score of the report, on one set of held-out images.

    Attributes:
        scored: the combined run's evaluation (images, labels, probabilities).
        models: ``"combined"`` first, then the ablation runs.
        by_grade: results per DDTI TI-RADS grade.
        calibration: the combined model's reliability diagram.
    """

    scored: Scored
    models: dict[str, ModelScore]
    by_grade: list[GradeRow]
    calibration: Calibration

    @property
    def combined(self) -> ModelScore:
        return self.models[COMBINED]

    @property
    def samples(self) -> list[Sample]:
        return self.scored.samples

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 0/1."""
        return self.scored.labels.astype(np.int64)

    @property
    def cases(self) -> int:
        return len({s.case_id for s in self.scored.samples})


# -- ablation runs ----------------------------------------------------------------------
def _split_of(run: Path) -> dict | None:
    path = run / "split.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _check_split(kind: str, path: str | os.PathLike, theirs: Path, ours: Path) -> None:
    mine, other = _split_of(ours), _split_of(theirs)
    if mine is None or other is None or other.get("test") != mine.get("test"):
        common = len(set((other or {}).get("test", [])) & set((mine or {}).get("test", [])))
        raise InputError(
            f"ablation {kind}: got {path}, whose test split differs from the main run's "
            f"({common} of {len((mine or {}).get('test', []))} test cases shared); "
            "allowed: a run trained on the same data with the same --seed",
            field="ablation",
            value=str(path),
            allowed="the same data and seed",
        )


def load_ablation_runs(
    ablation: Mapping[str, str | os.PathLike] | None,
    *,
    main: Path,
    same_split: bool,
    device: str | None = None,
) -> dict[str, Predictor]:
    """Load the single-modality runs and check they are comparable with the main run.

    Args:
        ablation: ``{"image": RUN, "clinical": RUN}`` (either may be left out): runs
            trained with ``thyrocam train --modalities image|clinical`` on the same
            data with the same seed, so their test split is the main run's.
        main: the combined model's run folder.
        same_split: the report scores the main run's test split, so each ablation
            run must have held out exactly the same cases.
        device: where to load them.

    Raises:
        InputError: an unknown kind, a run of the wrong modality, or another split.
    """
    runs: dict[str, Predictor] = {}
    for kind, path in (ablation or {}).items():
        check_choice(kind, field="ablation", allowed=ABLATION_KINDS)
        pred = Predictor.load(path, device=device)
        modalities = pred.meta.get("modalities", "both")
        if modalities != kind:
            raise InputError(
                f"ablation {kind}: got a run trained with modalities {modalities!r} ({path}); "
                f"allowed: a run trained with --modalities {kind}",
                field="ablation",
                value=str(path),
                allowed=f"--modalities {kind}",
            )
        if same_split:
            _check_split(kind, path, Path(pred.path), Path(main))
        runs[kind] = pred
    return runs


# -- scores -----------------------------------------------------------------------------
def bootstrap_auc(
    labels: np.ndarray,
    groups: Sequence[str],
    scores: Mapping[str, np.ndarray],
    *,
    reference: str | None = None,
    n: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, list[float] | None]]:
    """95% bootstrap intervals of each model's AUC, resampling *cases* (views stay together).

    Args:
        labels: ``(N,)`` 0/1 per image.
        groups: ``N`` case ids (the resampling unit).
        scores: model name -> ``(N,)`` probabilities.
        reference: also give the interval of ``AUC(reference) - AUC(model)`` on the
            same resamples (a paired comparison).
        n: number of resamples.
        seed: the resampling seed.

    Returns:
        ``{name: {"auc_ci": [lo, hi] | None, "diff_ci": [lo, hi] | None}}``.
    """
    labels = np.asarray(labels)
    draws: dict[str, list[float]] = {name: [] for name in scores}
    diffs: dict[str, list[float]] = {name: [] for name in scores}
    for idx in case_resamples(groups, n=n, seed=seed):
        y = labels[idx]
        if y.min() == y.max():
            continue
        aucs = {name: roc_auc(s[idx], y) for name, s in scores.items()}
        for name, auc in aucs.items():
            draws[name].append(auc)
            if reference is not None:
                diffs[name].append(aucs[reference] - auc)
    return {
        name: {
            "auc_ci": percentile_interval(draws[name]),
            "diff_ci": (
                percentile_interval(diffs[name]) if reference not in (None, name) else None
            ),
        }
        for name in scores
    }


def case_resamples(groups: Sequence[str], *, n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` bootstrap resamples of the cases in ``groups`` (one case id per image; a
    case's images stay together): each as the indices of its images."""
    cases = sorted(set(groups))
    index = {c: np.flatnonzero(np.asarray(groups) == c) for c in cases}
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picked = rng.choice(len(cases), size=len(cases), replace=True)
        yield np.concatenate([index[cases[i]] for i in picked])


def percentile_interval(values: Sequence[float]) -> list[float] | None:
    """The 95% percentile interval of bootstrap ``values``; ``None`` under 20 of them
    (too few usable resamples for meaningful 2.5/97.5 percentiles)."""
    if len(values) < 20:
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def results_by_grade(
    samples: Sequence[Sample], probs: np.ndarray, labels: np.ndarray, *, threshold: float
) -> list[GradeRow]:
    """One row per DDTI TI-RADS grade (and "none"): counts, mean P, share called malignant."""
    rows: list[GradeRow] = []
    for grade in (*TIRADS_GRADES, None):
        sel = np.array([s.tirads == grade for s in samples], dtype=bool)
        if not sel.any():
            continue
        p, y = probs[sel], labels[sel]
        auc = roc_auc(p, y)
        rows.append(
            GradeRow(
                grade=grade if grade is not None else "none",
                images=int(sel.sum()),
                cases=len({s.case_id for s, keep in zip(samples, sel, strict=True) if keep}),
                malignant=int(y.sum()),
                mean_probability=float(p.mean()),
                called_malignant=float((p >= threshold).mean()),
                accuracy=float(((p >= threshold) == (y == 1)).mean()),
                auc=None if math.isnan(auc) else auc,
            )
        )
    return rows


def score_models(
    scored: Scored, *, main: Predictor, others: Mapping[str, Predictor], seed: int = 0
) -> Scoring:
    """Score the ablation runs on ``scored``'s images and compare every model.

    Args:
        scored: the combined run's evaluation; its probabilities are reused, so each
            image goes through the combined model once.
        main: the combined run, loaded.
        others: ``{kind: Predictor}`` from :func:`load_ablation_runs`.
        seed: the bootstrap seed.
    """
    labels = scored.labels.astype(np.int64)
    runs = {COMBINED: main, **{f"{kind}-only": pred for kind, pred in others.items()}}
    probs: dict[str, np.ndarray] = {COMBINED: scored.probs}
    for name, pred in runs.items():
        if name not in probs:
            probs[name], _ = score_samples(
                pred.model,
                scored.samples,
                preprocessing=pred.preprocessing,
                cat_maps=pred.cat_maps,
                device=pred.device,
            )
    groups = [s.case_id for s in scored.samples]
    intervals = bootstrap_auc(labels, groups, probs, reference=COMBINED, seed=seed)
    models = {}
    for name, pred in runs.items():
        fpr, tpr, _ = roc_curve(probs[name], labels)
        models[name] = ModelScore(
            name=name,
            run=str(pred.path),
            modalities=pred.meta.get("modalities", "both"),
            probabilities=probs[name],
            metrics=binary_metrics(probs[name], labels, threshold=pred.threshold),
            auc_ci=intervals[name]["auc_ci"],
            diff_ci=intervals[name]["diff_ci"],
            fpr=fpr.tolist(),
            tpr=tpr.tolist(),
        )
    mean_p, frac, count = calibration_curve(scored.probs, labels)
    return Scoring(
        scored=scored,
        models=models,
        by_grade=results_by_grade(scored.samples, scored.probs, labels, threshold=scored.threshold),
        calibration=Calibration(
            mean_predicted=mean_p.tolist(), observed=frac.tolist(), count=count.tolist()
        ),
    )
