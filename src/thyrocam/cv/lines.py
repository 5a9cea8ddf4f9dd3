"""The lines a network must beat, and what every model is scored with.

``descriptor_lr``: a logistic regression on the encoded descriptors. ``outline_lr``:
one on plain pixel statistics inside the radiologist's outline
(:func:`thyrocam.imaging.outline_statistics`), also applied to an image network's
own outline of the whole frame (:func:`thyrocam.cv.networks.own_outline_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from thyrocam.clinical import encode_clinical_with_mask
from thyrocam.data import Sample
from thyrocam.errors import DataError
from thyrocam.imaging import (
    OUTLINE_STATISTICS,
    outline_statistics,
    outlines_by_area,
    polygons_to_mask,
)
from thyrocam.metrics import binary_metrics
from thyrocam.train.stacking import fit_logistic

#: L2 penalty of the outline-statistics regression (scikit-learn's C = 1/3 on
#: standardised statistics; 8 statistics, ~185 training frames).
OUTLINE_LR_L2 = 3.0
#: Sensitivity and specificity are read at this probability.
THRESHOLD = 0.5


def case_folds(samples: Sequence[Sample], *, folds: int, seed: int = 0) -> list[list[int]]:
    """Stratified folds of sample indices; all views of a case fall in one fold.

    Cases are shuffled per class with ``seed`` and dealt round-robin, so each fold
    gets about the same number of benign and malignant cases.

    Raises:
        DataError: fewer than ``folds`` cases of a class, or ``folds < 2``.
    """
    labels: dict[str, int] = {}
    for s in samples:
        labels.setdefault(s.case_id, s.label)
    counts = [sum(1 for v in labels.values() if v == c) for c in (0, 1)]
    if folds < 2 or min(counts) < folds:
        raise DataError(
            f"folds: got {folds} with {counts[0]} benign and {counts[1]} malignant cases; "
            "allowed: 2 <= folds <= the cases of the smaller class",
            field="folds",
            value=folds,
            allowed=f"2..{min(counts)}",
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for cls in (0, 1):
        cases = sorted(c for c, v in labels.items() if v == cls)
        rng.shuffle(cases)
        for j, case in enumerate(cases):
            fold_of[case] = j % folds
    return [[i for i, s in enumerate(samples) if fold_of[s.case_id] == f] for f in range(folds)]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def score(probs: np.ndarray, labels: np.ndarray) -> dict:
    m = binary_metrics(probs, labels, threshold=THRESHOLD)
    return {k: m[k] for k in ("auc", "sensitivity", "specificity")}


def descriptor_lr(train_s: list[Sample], test_s: list[Sample], cat_maps: dict) -> dict:
    def enc(samples: list[Sample]) -> np.ndarray:
        return np.stack([encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in samples])

    w, b = fit_logistic(enc(train_s), np.array([s.label for s in train_s], dtype=np.float64))
    logits = enc(test_s) @ w + b
    return score(1.0 / (1.0 + np.exp(-logits)), np.array([s.label for s in test_s]))


def truth_outline(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame's gray levels ``(H, W)`` in [0, 1] and the radiologist's (largest)
    outline filled, ``(H, W)`` bool (``None`` without a usable one)."""
    with Image.open(sample.image_path) as im:
        gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    outlines = outlines_by_area(sample.polygons)
    if outlines:
        mask = polygons_to_mask(outlines[:1], size=(gray.shape[1], gray.shape[0]))
    elif sample.mask_path is not None:
        mask = np.asarray(Image.open(sample.mask_path).convert("L")) > 127
    else:
        return gray, None
    return gray, (mask if mask.any() else None)


def outline_features(gray: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``(len(OUTLINE_STATISTICS),)``; NaN without a usable outline."""
    if mask is None or not mask.any():
        return np.full(len(OUTLINE_STATISTICS), np.nan)
    return np.array(list(outline_statistics(gray=gray, mask=mask).values()))


class OutlineLR:
    """Logistic regression on the outline statistics of one fold's training frames.

    Frames without an outline (no statistics) get the bias alone.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        ok = ~np.isnan(x).any(axis=1)
        self.mean = x[ok].mean(axis=0)
        self.sd = x[ok].std(axis=0) + 1e-6
        self.w, self.b = fit_logistic((x[ok] - self.mean) / self.sd, y[ok], l2=OUTLINE_LR_L2)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((x - self.mean) / self.sd, nan=0.0)
        return np.where(np.isnan(x).any(axis=1), self.b, z @ self.w + self.b)


def _truth_statistics(samples: Sequence[Sample], cache: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, len(OUTLINE_STATISTICS))`` inside the radiologist's outlines (cached by path)."""
    rows = []
    for s in samples:
        key = str(s.image_path)
        if key not in cache:
            cache[key] = outline_features(*truth_outline(s))
        rows.append(cache[key])
    return np.stack(rows)


def outline_lr(
    train_s: list[Sample], test_s: list[Sample], cache: dict[str, np.ndarray]
) -> tuple[dict, OutlineLR]:
    labels = np.array([s.label for s in train_s], dtype=np.float64)
    lr = OutlineLR(_truth_statistics(train_s, cache), labels)
    logits = lr.logits(_truth_statistics(test_s, cache))
    res = score(sigmoid(logits), np.array([s.label for s in test_s]))
    return res, lr
