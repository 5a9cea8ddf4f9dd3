"""The report's explanation measures, per CAM method, beside two maps that ignore the image.

Each measure and its defaults (steps, pointing tolerance, randomisation) are
defined in :mod:`thyrocam.explain.measures`; this module runs them over held-out
images and summarises them per method.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from thyrocam.data import Sample, sample_roi
from thyrocam.explain.measures import (
    BLUR_SIGMA_DIVISOR,
    DELETION_STEPS,
    POINTING_TOLERANCE,
    RANDOMIZATION_THRESHOLD,
    RANDOMIZED_MODULES,
    DeletionInsertion,
    centre_map,
    deletion_insertion,
    energy_in_mask,
    pointing_game,
    random_map,
    randomization_check,
    randomized_copy,
)
from thyrocam.explain.methods import METHOD_NAMES, canonical_method
from thyrocam.explain.targets import HeadOutput, explained_head
from thyrocam.imaging import Box, load_image, polygons_to_mask
from thyrocam.predictor import Predictor

__all__ = [
    "REPORT_METHODS",
    "RANDOM_BASELINE",
    "CENTRE_BASELINE",
    "BASELINES",
    "MeasureRow",
    "MethodSummary",
    "MethodCurves",
    "Measures",
    "outlined",
    "roi_for",
    "measured_subset",
    "measure_cases",
    "summarize_measures",
]

log = logging.getLogger(__name__)

# Every method of the CAM table, in its order.
REPORT_METHODS: tuple[str, ...] = METHOD_NAMES
# Pseudo-methods scored beside the real ones: a smooth random map (chance level)
# and a Gaussian at the input's centre (where a ROI crop always puts the nodule).
RANDOM_BASELINE = "random"
CENTRE_BASELINE = "centre"
BASELINES = (RANDOM_BASELINE, CENTRE_BASELINE)
# ResNet's layer4 sees the input at stride 32: the random map is drawn on that grid
# so that it is as smooth as a CAM.
_CAM_STRIDE = 32


class MeasureRow(TypedDict):
    """One image and one method: a row of ``metrics.json["explanations"]["per_case"]``."""

    case_id: str
    image: str
    label: int
    target: str
    mask_share: float
    method: str
    pointing: bool
    energy: float
    deletion_auc: float
    insertion_auc: float
    randomization_rho: float | None
    randomization_passed: bool | None


class MethodSummary(TypedDict):
    """One method's means over the measured images (``None`` where no image contributes)."""

    n: int
    n_malignant: int
    pointing_malignant: float | None
    pointing_benign: float | None
    pointing: float | None
    energy: float | None
    mask_share: float | None
    deletion_auc: float | None
    insertion_auc: float | None
    randomization_rho_median: float | None
    randomization_pass_rate: float | None
    randomization_passed: bool | None


@dataclass(frozen=True)
class MethodCurves:
    """One method's deletion and insertion curves over the measured images.

    Attributes:
        fractions: ``(steps + 1,)`` share of pixels removed / restored.
        deletion: ``(n, steps + 1)`` P(true class) per image.
        insertion: ``(n, steps + 1)``.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray


@dataclass(frozen=True)
class Measures:
    """The explanation measures of the report.

    Attributes:
        methods: the CAM methods measured (canonical names), then :data:`BASELINES`.
        images: how many outlined images were measured.
        rows: one row per image and method.
        summary: per method, in :attr:`methods` order.
        curves: per method, the deletion/insertion curves.

    The settings the measures ran with are the defaults of
    :mod:`thyrocam.explain.measures`, read back by the properties below.
    """

    methods: tuple[str, ...]
    images: int
    rows: list[MeasureRow]
    summary: dict[str, MethodSummary]
    curves: dict[str, MethodCurves]

    @property
    def steps(self) -> int:
        return DELETION_STEPS

    @property
    def tolerance(self) -> float:
        return POINTING_TOLERANCE

    @property
    def deletion_baseline(self) -> str:
        return f"Gaussian blur, sigma = S/{BLUR_SIGMA_DIVISOR}"

    @property
    def randomized(self) -> str:
        names = [m.rsplit(".", 1)[-1] for m in reversed(RANDOMIZED_MODULES)]
        return f"{', '.join(names[:-1])} and {names[-1]} re-initialised"

    @property
    def randomization_threshold(self) -> float:
        return RANDOMIZATION_THRESHOLD

    def to_json(self) -> dict:
        """``metrics.json["explanations"]``."""
        return {
            "images": self.images,
            "target": "each case's true class",
            "deletion_baseline": self.deletion_baseline,
            "steps": self.steps,
            "pointing_tolerance_px": self.tolerance,
            "randomized": self.randomized,
            "summary": self.summary,
            "per_case": self.rows,
        }


def outlined(sample: Sample) -> bool:
    """Whether ``sample`` has a nodule outline the maps can be checked against."""
    return any(len(p) >= 3 for p in sample.polygons)


def roi_for(predictor: Predictor, sample: Sample) -> Box | None:
    """The box to give ``predictor`` for ``sample``: its nodule box for a ROI run, else None.

    A whole-frame run must see the whole frame, as it was trained (given a box,
    :meth:`Predictor.explain` would crop around it).
    """
    return sample_roi(sample) if predictor.preprocessing.mode == "roi" else None


def measured_subset(samples: Sequence[Sample], k: int | None, *, seed: int) -> list[Sample]:
    """The outlined samples, or a seeded random ``k`` of them (in their order)."""
    keep = [s for s in samples if outlined(s)]
    if k is None or len(keep) <= k:
        return keep
    picked = sorted(np.random.default_rng(seed).choice(len(keep), size=k, replace=False))
    return [keep[i] for i in picked]


def _maps(
    predictor: Predictor,
    shuffled: Predictor,
    sample: Sample,
    *,
    methods: Sequence[str],
    seed: int,
) -> tuple[dict, torch.Tensor, torch.Tensor, np.ndarray, float]:
    """Every map of one image: the methods' (with their randomisation ρ) and the baselines'.

    Returns:
        ``(maps, x, clin, mask, mask_share)`` where ``maps`` is ``{method: (cam over
        the input, cam on the frame, rho, passed)}``.
    """
    frame = load_image(sample.image_path)
    roi = roi_for(predictor, sample)
    mask = polygons_to_mask(sample.polygons, size=frame.size)
    _, clin = predictor.encode_clinical(sample.clinical)
    _, x, mapping, _ = predictor.prepare_image(frame, roi=roi)
    target = "malignant" if sample.label == 1 else "benign"
    maps: dict[str, tuple[np.ndarray, np.ndarray, float | None, bool | None]] = {}
    for method in methods:
        exp = predictor.explain(frame, sample.clinical, roi=roi, method=method, target=target)
        rnd = shuffled.explain(frame, sample.clinical, roi=roi, method=method, target=target)
        rho, passed = randomization_check(exp.cam, rnd.cam)
        maps[method] = (exp.cam, exp.cam_frame, None if math.isnan(rho) else rho, passed)
    size = tuple(x.shape[-2:])
    grid = (max(2, math.ceil(size[0] / _CAM_STRIDE)), max(2, math.ceil(size[1] / _CAM_STRIDE)))
    noise = random_map(size, grid=grid, seed=seed)
    maps[RANDOM_BASELINE] = (noise, mapping.cam_to_frame(noise), None, None)
    prior = centre_map(size)
    maps[CENTRE_BASELINE] = (prior, mapping.cam_to_frame(prior), None, None)
    share = energy_in_mask(mapping.visible_mask().astype(np.float32), mask)
    return maps, x, clin, mask, share


def measure_cases(
    predictor: Predictor,
    samples: Sequence[Sample],
    *,
    methods: Sequence[str] = REPORT_METHODS,
    seed: int = 0,
) -> Measures:
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
        methods: CAM method names (any accepted spelling).
        seed: seeds the random maps, the tie order and the randomised model.
    """
    methods = tuple(dict.fromkeys(canonical_method(m) for m in methods))
    shuffled = Predictor(
        model=randomized_copy(predictor.model, seed=seed),
        cat_maps=predictor.cat_maps,
        preprocessing=predictor.preprocessing,
        threshold=predictor.threshold,
        device=predictor.device,
    )
    rows: list[MeasureRow] = []
    curves: dict[str, list[DeletionInsertion]] = {}
    chosen = [s for s in samples if outlined(s)]
    for n, sample in enumerate(chosen):
        for row, di in _measure_sample(
            predictor, shuffled, sample, methods=methods, seed=seed, n=n
        ):
            rows.append(row)
            curves.setdefault(row["method"], []).append(di)
        if (n + 1) % 10 == 0:
            log.info("explanation measures: %d/%d images", n + 1, len(chosen))
    return Measures(
        methods=(*methods, *BASELINES),
        images=len(chosen),
        rows=rows,
        summary=summarize_measures(rows),
        curves={
            m: MethodCurves(
                fractions=np.asarray(c[0].fractions),
                deletion=np.stack([d.deletion for d in c]),
                insertion=np.stack([d.insertion for d in c]),
            )
            for m, c in curves.items()
        },
    )


def _measure_sample(
    predictor: Predictor,
    shuffled: Predictor,
    sample: Sample,
    *,
    methods: Sequence[str],
    seed: int,
    n: int,
) -> list[tuple[MeasureRow, DeletionInsertion]]:
    """Every method's and baseline's row (and curves) for the ``n``-th measured image."""
    maps, x, clin, mask, share = _maps(predictor, shuffled, sample, methods=methods, seed=seed + n)
    target = "malignant" if sample.label == 1 else "benign"
    scored = explained_score(predictor.model)
    out = []
    for method, (cam, cam_frame, rho, passed) in maps.items():
        di = deletion_insertion(scored, x, cam, clinical=clin, target=target, seed=seed)
        row = MeasureRow(
            case_id=sample.case_id,
            image=Path(sample.image_path).name,
            label=int(sample.label),
            target=target,
            mask_share=share,
            method=method,
            pointing=pointing_game(cam_frame, mask),
            energy=energy_in_mask(cam_frame, mask),
            deletion_auc=di.deletion_auc,
            insertion_auc=di.insertion_auc,
            randomization_rho=rho,
            randomization_passed=passed,
        )
        out.append((row, di))
    return out


def explained_score(model: torch.nn.Module) -> torch.nn.Module:
    """The logit a malignancy map explains (:func:`explained_head`), for the deletion
    and insertion curves: a stacked fusion's maps are its image network's, and the
    fused logit moves with the pixels only by the image's weight, not at all at 0."""
    head = explained_head(model, "malignancy")
    return model if head == "malignancy" else HeadOutput(model, head)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarize_measures(rows: Sequence[MeasureRow]) -> dict[str, MethodSummary]:
    """Per method: the measures' means over cases (pointing game split by true class).

    The randomisation check passes for a method when the median ρ is below
    :data:`~thyrocam.explain.measures.RANDOMIZATION_THRESHOLD`.
    """
    out: dict[str, MethodSummary] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        rhos = [r["randomization_rho"] for r in mine if r["randomization_rho"] is not None]
        checks = [r["randomization_passed"] for r in mine if r["randomization_passed"] is not None]
        out[method] = MethodSummary(
            n=len(mine),
            n_malignant=sum(r["label"] == 1 for r in mine),
            pointing_malignant=_mean([float(r["pointing"]) for r in mine if r["label"] == 1]),
            pointing_benign=_mean([float(r["pointing"]) for r in mine if r["label"] == 0]),
            pointing=_mean([float(r["pointing"]) for r in mine]),
            energy=_mean([r["energy"] for r in mine]),
            mask_share=_mean([r["mask_share"] for r in mine]),
            deletion_auc=_mean([r["deletion_auc"] for r in mine]),
            insertion_auc=_mean([r["insertion_auc"] for r in mine]),
            randomization_rho_median=float(np.median(rhos)) if rhos else None,
            randomization_pass_rate=_mean([float(c) for c in checks]),
            randomization_passed=(
                bool(np.median(rhos) < RANDOMIZATION_THRESHOLD) if rhos else None
            ),
        )
    return out
