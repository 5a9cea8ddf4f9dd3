"""The numbers of the evaluation report: scores, ablation, grades, attributions, CAM measures.

Everything here returns plain data (dicts, arrays, :class:`Explanation` objects);
:mod:`thyrocam.report.figures` draws it and :mod:`thyrocam.report.html` lays it out.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from thyrocam.clinical import FIELDS, TIRADS_GRADES
from thyrocam.data import Sample, ThyroidDataset, sample_roi
from thyrocam.errors import InputError
from thyrocam.evaluate import held_out_samples, score_samples
from thyrocam.explain import get_cam_class
from thyrocam.explain.attribution import descriptor_attributions
from thyrocam.explain.measures import (
    RANDOMIZATION_THRESHOLD,
    centre_map,
    deletion_insertion,
    energy_in_mask,
    pointing_game,
    random_map,
    randomization_check,
    randomized_copy,
)
from thyrocam.imaging import Box, load_image, polygons_to_mask
from thyrocam.metrics import binary_metrics, calibration_curve, roc_auc, roc_curve
from thyrocam.predictor import Explanation, Predictor
from thyrocam.train import prepare_samples

__all__ = [
    "REPORT_METHODS",
    "ABLATION_KINDS",
    "RANDOM_BASELINE",
    "CENTRE_BASELINE",
    "BASELINES",
    "GalleryItem",
    "ReportData",
    "load_ablation_runs",
    "bootstrap_auc",
    "results_by_grade",
    "attribution_summary",
    "roi_for",
    "measure_cases",
    "summarize_measures",
    "select_gallery",
    "build_report",
]

log = logging.getLogger(__name__)

REPORT_METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "layercam-fused")
ABLATION_KINDS = ("image", "clinical")
# Pseudo-methods scored beside the real ones: a smooth random map (chance level)
# and a Gaussian at the input's centre (where a ROI crop always puts the nodule).
RANDOM_BASELINE = "random"
CENTRE_BASELINE = "centre"
BASELINES = (RANDOM_BASELINE, CENTRE_BASELINE)


@dataclass
class GalleryItem:
    """One gallery case: the sample, its score and the explanation of the model's call."""

    sample: Sample
    probability: float
    correct: bool
    explanation: Explanation
    mask: np.ndarray | None


@dataclass
class ReportData:
    """What the report shows. ``metrics`` is what ``metrics.json`` holds."""

    metrics: dict
    labels: np.ndarray
    scores: dict[str, np.ndarray]  # model name -> P(malignant) per held-out image
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    gallery: list[GalleryItem] = field(default_factory=list)


# -- ablation runs ----------------------------------------------------------------------
def _split_of(run: Path) -> dict | None:
    path = run / "split.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_ablation_runs(
    ablation: Mapping[str, str | os.PathLike] | None,
    *,
    main: Predictor,
    same_split: bool,
    device: str | None = None,
) -> dict[str, Predictor]:
    """Load the single-modality runs and check they are comparable with ``main``.

    Args:
        ablation: ``{"image": RUN, "clinical": RUN}`` (either may be left out): runs
            trained with ``thyrocam train --modalities image|clinical`` on the same
            data with the same seed, so their test split is the main run's.
        main: the combined model.
        same_split: the report scores the main run's test split, so each ablation
            run must have held out exactly the same cases.
        device: where to load them.

    Raises:
        InputError: an unknown kind, a run of the wrong modality, or another split.
    """
    runs: dict[str, Predictor] = {}
    for kind, path in (ablation or {}).items():
        if kind not in ABLATION_KINDS:
            raise InputError(
                f"ablation: got {kind!r}; allowed: {', '.join(ABLATION_KINDS)}",
                field="ablation",
                value=kind,
                allowed=ABLATION_KINDS,
            )
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
            theirs, ours = _split_of(Path(pred.path)), _split_of(Path(main.path))
            if theirs is None or ours is None or theirs.get("test") != ours.get("test"):
                common = len(
                    set((theirs or {}).get("test", [])) & set((ours or {}).get("test", []))
                )
                raise InputError(
                    f"ablation {kind}: got {path}, whose test split differs from the main run's "
                    f"({common} of {len((ours or {}).get('test', []))} test cases shared); "
                    "allowed: a run trained on the same data with the same --seed",
                    field="ablation",
                    value=str(path),
                    allowed="the same data and seed",
                )
        runs[kind] = pred
    return runs


# -- scores -----------------------------------------------------------------------------
def bootstrap_auc(
    labels: np.ndarray,
    groups: Sequence[str],
    scores: Mapping[str, np.ndarray],
    *,
    reference: str | None = None,
    n: int = 1000,
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
    cases = sorted(set(groups))
    index = {c: np.flatnonzero(np.asarray(groups) == c) for c in cases}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in scores}
    diffs: dict[str, list[float]] = {name: [] for name in scores}
    for _ in range(n):
        picked = rng.choice(len(cases), size=len(cases), replace=True)
        idx = np.concatenate([index[cases[i]] for i in picked])
        y = labels[idx]
        if y.min() == y.max():
            continue
        aucs = {name: roc_auc(s[idx], y) for name, s in scores.items()}
        for name, auc in aucs.items():
            draws[name].append(auc)
            if reference is not None:
                diffs[name].append(aucs[reference] - auc)

    def interval(values: list[float]) -> list[float] | None:
        if len(values) < 20:
            return None
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    return {
        name: {
            "auc_ci": interval(draws[name]),
            "diff_ci": interval(diffs[name]) if reference not in (None, name) else None,
        }
        for name in scores
    }


def results_by_grade(
    samples: Sequence[Sample], probs: np.ndarray, labels: np.ndarray, *, threshold: float
) -> list[dict]:
    """One row per DDTI TI-RADS grade (and "none"): counts, mean P, share called malignant."""
    rows = []
    for grade in (*TIRADS_GRADES, None):
        sel = np.array([s.tirads == grade for s in samples], dtype=bool)
        if not sel.any():
            continue
        p, y = probs[sel], labels[sel]
        auc = roc_auc(p, y)
        rows.append(
            {
                "grade": grade if grade is not None else "none",
                "images": int(sel.sum()),
                "cases": len({s.case_id for s, keep in zip(samples, sel, strict=True) if keep}),
                "malignant": int(y.sum()),
                "mean_probability": float(p.mean()),
                "called_malignant": float((p >= threshold).mean()),
                "accuracy": float(((p >= threshold) == (y == 1)).mean()),
                "auc": None if math.isnan(auc) else auc,
            }
        )
    return rows


def attribution_summary(predictor: Predictor, samples: Sequence[Sample]) -> dict:
    """Exact descriptor Shapley values over ``samples``, summarised per field.

    Returns:
        ``{"fields", "mean_abs", "mean_malignant", "mean_benign", "present",
        "mean_abs_effect", "max_completeness_error"}``: per-field means (logit
        units) over all images, over malignant / benign ones, the share of images
        where the field is given, the mean ``|logit(given) - logit(all missing)|``
        and the largest completeness error.
    """
    ds = ThyroidDataset(samples, preprocessing=predictor.preprocessing, cat_maps=predictor.cat_maps)
    shap, effect, errors, labels = [], [], [], []
    for img, clin, y in DataLoader(ds, batch_size=32, shuffle=False):
        att = descriptor_attributions(
            predictor.model, img.to(predictor.device), clin, cat_maps=predictor.cat_maps
        )
        shap.append(att.shapley)
        effect.append(att.logit_full - att.logit_none)
        errors.append(att.completeness_error)
        labels.append(y.numpy())
    values = np.concatenate(shap)
    y = np.concatenate(labels)
    present = np.array([[s.clinical[f] is not None for f in FIELDS] for s in samples])

    def mean_rows(sel: np.ndarray) -> list[float] | None:
        return values[sel].mean(0).tolist() if sel.any() else None

    return {
        "fields": list(FIELDS),
        "mean_abs": np.abs(values).mean(0).tolist(),
        "mean_malignant": mean_rows(y == 1),
        "mean_benign": mean_rows(y == 0),
        "present": present.mean(0).tolist(),
        "mean_abs_effect": float(np.abs(np.concatenate(effect)).mean()),
        "max_completeness_error": float(np.concatenate(errors).max()),
    }


# -- explanation measures ---------------------------------------------------------------
def _outlined(sample: Sample) -> bool:
    return any(len(p) >= 3 for p in sample.polygons)


def roi_for(predictor: Predictor, sample: Sample) -> Box | None:
    """The box to give ``predictor`` for ``sample``: its nodule box for a ROI run, else None.

    A whole-frame run must see the whole frame, as it was trained (given a box,
    :meth:`Predictor.explain` would crop around it).
    """
    return sample_roi(sample) if predictor.preprocessing.mode == "roi" else None


def measure_cases(
    predictor: Predictor,
    samples: Sequence[Sample],
    *,
    methods: Sequence[str] = REPORT_METHODS,
    steps: int = 16,
    seed: int = 0,
) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Pointing game, energy in mask, deletion/insertion and randomisation, per case and method.

    Each map explains the case's *true* class (evidence for malignant on a malignant
    case, for benign on a benign one), in the context of its descriptors. Two maps
    that do not look at the image are scored as pseudo-methods: ``"random"`` (a
    smooth random map, the chance level) and ``"centre"`` (a Gaussian at the input's
    centre: in ``roi`` runs the nodule is always there). Samples without an outline
    are skipped.

    Args:
        predictor: the loaded run.
        samples: held-out samples (with ``polygons``).
        methods: CAM method names.
        steps: deletion/insertion steps.
        seed: seeds the random maps, the tie order and the randomised model.

    Returns:
        ``(rows, curves)``: one row per sample and method (``case_id``, ``image``,
        ``label``, ``method``, ``pointing``, ``energy``, ``mask_share``,
        ``deletion_auc``, ``insertion_auc``, ``randomization_rho``,
        ``randomization_passed``), and per method the deletion and insertion curves
        ``(n, steps + 1)``.
    """
    for m in methods:
        get_cam_class(m)  # fail early, naming the bad method
    shuffled = Predictor(
        model=randomized_copy(predictor.model, seed=seed),
        cat_maps=predictor.cat_maps,
        preprocessing=predictor.preprocessing,
        threshold=predictor.threshold,
        device=predictor.device,
    )
    rows: list[dict] = []
    curves: dict[str, dict[str, list]] = {}
    outlined = [s for s in samples if _outlined(s)]
    for n, sample in enumerate(outlined):
        frame = load_image(sample.image_path)
        roi = roi_for(predictor, sample)
        mask = polygons_to_mask(sample.polygons, size=frame.size)
        _, clin = predictor.encode_clinical(sample.clinical)
        _, x, mapping, _ = predictor.prepare_image(frame, roi=roi)
        target = "malignant" if sample.label == 1 else "benign"
        base = {
            "case_id": sample.case_id,
            "image": Path(sample.image_path).name,
            "label": int(sample.label),
            "target": target,
            "mask_share": energy_in_mask(mapping.visible_mask().astype(np.float32), mask),
        }
        maps: dict[str, tuple[np.ndarray, np.ndarray, float | None, bool | None]] = {}
        for method in methods:
            exp = predictor.explain(frame, sample.clinical, roi=roi, method=method, target=target)
            rnd = shuffled.explain(frame, sample.clinical, roi=roi, method=method, target=target)
            rho, passed = randomization_check(exp.cam, rnd.cam)
            maps[method] = (exp.cam, exp.cam_frame, None if math.isnan(rho) else rho, passed)
        # As coarse as layer4's map (stride 32), so the chance map is as smooth as a CAM.
        grid = (max(2, math.ceil(x.shape[-2] / 32)), max(2, math.ceil(x.shape[-1] / 32)))
        noise = random_map(x.shape[-2:], grid=grid, seed=seed + n)
        maps[RANDOM_BASELINE] = (noise, mapping.cam_to_frame(noise), None, None)
        prior = centre_map(tuple(x.shape[-2:]))
        maps[CENTRE_BASELINE] = (prior, mapping.cam_to_frame(prior), None, None)
        for method, (cam, cam_frame, rho, passed) in maps.items():
            di = deletion_insertion(
                predictor.model, x, cam, clinical=clin, target=target, steps=steps, seed=seed
            )
            rows.append(
                {
                    **base,
                    "method": method,
                    "pointing": pointing_game(cam_frame, mask),
                    "energy": energy_in_mask(cam_frame, mask),
                    "deletion_auc": di.deletion_auc,
                    "insertion_auc": di.insertion_auc,
                    "randomization_rho": rho,
                    "randomization_passed": passed,
                }
            )
            c = curves.setdefault(
                method, {"fractions": di.fractions, "deletion": [], "insertion": []}
            )
            c["deletion"].append(di.deletion)
            c["insertion"].append(di.insertion)
        if (n + 1) % 10 == 0:
            log.info("explanation measures: %d/%d images", n + 1, len(outlined))
    return rows, {m: {k: np.asarray(v) for k, v in c.items()} for m, c in curves.items()}


def summarize_measures(rows: Sequence[dict]) -> dict[str, dict]:
    """Per method: the measures' means over cases (pointing game split by true class).

    Returns:
        ``{method: {"n", "pointing_malignant", "pointing_benign", "pointing",
        "energy", "mask_share", "deletion_auc", "insertion_auc",
        "randomization_rho_median", "randomization_pass_rate", "randomization_passed"}}``;
        the check passes for a method when the median ρ is below the threshold. A
        value is ``None`` where no case contributes.
    """

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        rhos = [r["randomization_rho"] for r in mine if r["randomization_rho"] is not None]
        checks = [r["randomization_passed"] for r in mine if r["randomization_passed"] is not None]
        out[method] = {
            "n": len(mine),
            "n_malignant": sum(r["label"] == 1 for r in mine),
            "pointing_malignant": mean([float(r["pointing"]) for r in mine if r["label"] == 1]),
            "pointing_benign": mean([float(r["pointing"]) for r in mine if r["label"] == 0]),
            "pointing": mean([float(r["pointing"]) for r in mine]),
            "energy": mean([r["energy"] for r in mine]),
            "mask_share": mean([r["mask_share"] for r in mine]),
            "deletion_auc": mean([r["deletion_auc"] for r in mine]),
            "insertion_auc": mean([r["insertion_auc"] for r in mine]),
            "randomization_rho_median": float(np.median(rhos)) if rhos else None,
            "randomization_pass_rate": mean([float(c) for c in checks]),
            "randomization_passed": (
                bool(np.median(rhos) < RANDOMIZATION_THRESHOLD) if rhos else None
            ),
        }
    return out


# -- gallery ----------------------------------------------------------------------------
def select_gallery(
    probs: np.ndarray, labels: np.ndarray, *, threshold: float, k: int
) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` most confident right and the ``k`` most confident wrong calls.

    Confidence is the probability given to the class the model called.
    """
    called = probs >= threshold
    confidence = np.where(called, probs, 1.0 - probs)
    order = np.argsort(-confidence, kind="stable")
    right = [int(i) for i in order if called[i] == (labels[i] == 1)][:k]
    wrong = [int(i) for i in order if called[i] != (labels[i] == 1)][:k]
    return right, wrong


def _gallery_item(predictor: Predictor, sample: Sample, prob: float, label: int) -> GalleryItem:
    called = prob >= predictor.threshold
    frame = load_image(sample.image_path)
    exp = predictor.explain(
        frame,
        sample.clinical,
        roi=roi_for(predictor, sample),
        target="malignant" if called else "benign",
    )
    mask = polygons_to_mask(sample.polygons, size=frame.size) if _outlined(sample) else None
    return GalleryItem(
        sample=sample,
        probability=prob,
        correct=bool(called == (label == 1)),
        explanation=exp,
        mask=mask,
    )


# -- everything -------------------------------------------------------------------------
def _subsample(samples: list[Sample], k: int | None, seed: int) -> list[Sample]:
    outlined = [s for s in samples if _outlined(s)]
    if k is None or len(outlined) <= k:
        return outlined
    keep = sorted(np.random.default_rng(seed).choice(len(outlined), size=k, replace=False))
    return [outlined[i] for i in keep]


def build_report(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    device: str | None = None,
    ablation: Mapping[str, str | os.PathLike] | None = None,
    methods: Sequence[str] = REPORT_METHODS,
    max_cases: int | None = 60,
    gallery: int = 4,
    label_source: str = "auto",
    seed: int = 0,
) -> ReportData:
    """Score the run (and its ablation runs) and measure its explanations.

    Args:
        run: the run folder (the combined model).
        data: a DDTI folder or CSV manifest; when it is the run's training data,
            only the run's held-out test split is used.
        device: ``None``: CUDA when present.
        ablation: ``{"image": RUN, "clinical": RUN}``: single-modality runs on the
            same split (see :func:`load_ablation_runs`).
        methods: CAM methods to measure.
        max_cases: at most this many outlined held-out images are measured (a seeded
            random subset); ``None`` for all.
        gallery: number of right and of wrong cases shown.
        label_source: ``auto``, ``labels`` or ``tirads`` (see ``thyrocam train``).
        seed: seeds the bootstrap, the subset and the random baselines.
    """
    for method in methods:
        get_cam_class(method)  # a misspelt method fails before minutes of scoring
    predictor = Predictor.load(run, device=device)
    samples, problems, label_definition = prepare_samples(data, label_source=label_source)
    subset, subset_name = held_out_samples(Path(predictor.path), data, samples)
    others = load_ablation_runs(
        ablation, main=predictor, same_split=subset_name == "test split", device=device
    )
    log.info("report: scoring %d images (%s)", len(subset), subset_name)
    runs = {"combined": predictor, **{f"{k}-only": p for k, p in others.items()}}
    scores: dict[str, np.ndarray] = {}
    labels = np.zeros(0)
    for name, pred in runs.items():
        scores[name], labels = score_samples(
            pred.model,
            subset,
            preprocessing=pred.preprocessing,
            cat_maps=pred.cat_maps,
            device=pred.device,
        )
    labels = labels.astype(np.int64)
    groups = [s.case_id for s in subset]
    intervals = bootstrap_auc(labels, groups, scores, reference="combined", seed=seed)
    models = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for name, pred in runs.items():
        m = binary_metrics(scores[name], labels, threshold=pred.threshold)
        m.update(intervals[name])
        m["modalities"] = pred.meta.get("modalities", "both")
        m["run"] = str(pred.path)
        models[name] = m
        fpr, tpr, _ = roc_curve(scores[name], labels)
        curves[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    mean_p, frac, count = calibration_curve(scores["combined"], labels)
    curves["calibration"] = {
        "mean_predicted": mean_p.tolist(),
        "observed": frac.tolist(),
        "count": count.tolist(),
    }

    log.info("report: descriptor attributions")
    attributions = attribution_summary(predictor, subset)
    measured = _subsample(subset, max_cases, seed)
    log.info("report: explanation measures on %d outlined images", len(measured))
    rows, measure_curves = measure_cases(predictor, measured, methods=methods, seed=seed)
    for method, c in measure_curves.items():
        curves[f"deletion:{method}"] = {
            "fractions": c["fractions"].tolist(),
            "mean": c["deletion"].mean(0).tolist(),
        }
        curves[f"insertion:{method}"] = {
            "fractions": c["fractions"].tolist(),
            "mean": c["insertion"].mean(0).tolist(),
        }

    right, wrong = select_gallery(
        scores["combined"], labels, threshold=predictor.threshold, k=gallery
    )
    items = [
        _gallery_item(predictor, subset[i], float(scores["combined"][i]), int(labels[i]))
        for i in right + wrong
    ]

    meta = predictor.meta
    metrics = {
        "run": str(predictor.path),
        "data": str(Path(data).resolve()),
        "subset": subset_name,
        "images": len(subset),
        "cases": len(set(groups)),
        "label_definition": label_definition,
        "data_problems": len(problems),
        "arch": meta.get("arch"),
        "preprocessing": meta.get("preprocessing"),
        "threshold": predictor.threshold,
        "evaluation": models["combined"],
        "ablation": models,
        "by_tirads_grade": results_by_grade(
            subset, scores["combined"], labels, threshold=predictor.threshold
        ),
        "attributions": attributions,
        "explanations": {
            "images": len(measured),
            "target": "each case's true class",
            "deletion_baseline": "Gaussian blur, sigma = S/32",
            "steps": 16,
            "pointing_tolerance_px": 15,
            "randomized": "layer4, img_proj, clin_net and head re-initialised",
            "summary": summarize_measures(rows),
            "per_case": rows,
        },
        "gallery": [
            {
                "case_id": it.sample.case_id,
                "image": Path(it.sample.image_path).name,
                "label": int(it.sample.label),
                "probability": it.probability,
                "correct": it.correct,
                "pointing": (
                    pointing_game(it.explanation.cam_frame, it.mask)
                    if it.mask is not None
                    else None
                ),
            }
            for it in items
        ],
        "versions": meta.get("versions"),
    }
    return ReportData(metrics=metrics, labels=labels, scores=scores, curves=curves, gallery=items)
