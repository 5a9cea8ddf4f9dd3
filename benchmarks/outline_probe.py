"""Which outline error loses the image signal, and whether the pixels add to the descriptors.

Run from the project root (about nine minutes on 2 cores, most of it computing
the statistics of 231 frames under seven outline changes; nothing is trained but
logistic regressions)::

    python benchmarks/outline_probe.py [--ddti ../shared/ddti] [--folds 5]

On the folds ``thyrocam cv`` uses (by case, stratified, seed 0), the
``outline_lr`` regression (:mod:`thyrocam.cv.lines`: eight plain statistics of
the pixels inside an outline) is fitted on each training fold's *true* outlines
and scored on the test fold's outlines changed on purpose: an ellipse inscribed
in the true outline's box, dilated or eroded by a few pixels, shifted by a share
of its box. A change that costs AUC here is one a predicted outline must avoid.
Two more lines: the regression refitted on ellipses in the true box (what a user
who draws a box gives), and one regression on the encoded descriptors plus the
statistics (does the image add to the descriptor line ``descriptor_lr``?).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from thyrocam.clinical import encode_clinical_with_mask, fit_cat_maps
from thyrocam.cv.lines import (
    OutlineLR,
    case_folds,
    fit_logistic,
    outline_features,
    score,
    sigmoid,
    truth_outline,
)
from thyrocam.data.samples import Sample, prepare_samples

ROOT = Path(__file__).resolve().parents[1]

Change = Callable[[np.ndarray], np.ndarray]


def _morph(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilate (``r > 0``) or erode (``r < 0``) by ``|r|`` px with a square element."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    k = 2 * abs(r) + 1
    out = torch.nn.functional.max_pool2d(m if r > 0 else -m, k, 1, abs(r))
    return (out if r > 0 else -out)[0, 0].numpy() > 0.5


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def ellipse_in_box(mask: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = _box(mask)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    rx, ry = max((x1 - x0) / 2, 1.0), max((y1 - y0) / 2, 1.0)
    return ((xx + 0.5 - (x0 + x1) / 2) / rx) ** 2 + ((yy + 0.5 - (y0 + y1) / 2) / ry) ** 2 <= 1


def shifted(share: float) -> Change:
    def change(mask: np.ndarray) -> np.ndarray:
        x0, _, x1, _ = _box(mask)
        return np.roll(mask, int(round(share * (x1 - x0))), axis=1)

    return change


CHANGES: dict[str, Change] = {
    "the radiologist's outline": lambda m: m,
    "ellipse inscribed in its box": ellipse_in_box,
    "dilated 6 px": lambda m: _morph(m, 6),
    "dilated 12 px": lambda m: _morph(m, 12),
    "eroded 6 px": lambda m: _morph(m, -6),
    "shifted 20 % of its width": shifted(0.2),
    "shifted 40 % of its width": shifted(0.4),
}


def statistics(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """``{change: (N, 8)}`` statistics inside each frame's largest outline after each of
    :data:`CHANGES` (NaN: no outline); every frame is read once."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name in CHANGES}
    for s in samples:
        gray, mask = truth_outline(s)
        for name, change in CHANGES.items():
            rows[name].append(outline_features(gray, None if mask is None else change(mask)))
    return {name: np.stack(r) for name, r in rows.items()}


def cv_auc(folds: list[list[int]], y: np.ndarray, fit_x: np.ndarray, test_x: np.ndarray) -> list:
    """Per-fold AUC of ``OutlineLR`` fitted on ``fit_x`` rows, scored on ``test_x`` rows."""
    aucs = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        lr = OutlineLR(fit_x[train], y[train])
        aucs.append(score(sigmoid(lr.logits(test_x[test])), y[test])["auc"])
    return aucs


def with_descriptors(
    samples: Sequence[Sample], folds: list[list[int]], y: np.ndarray, stats: np.ndarray | None
) -> list:
    """Per-fold AUC of one regression on the encoded descriptors (+ standardised stats)."""
    aucs = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        cat_maps = fit_cat_maps([samples[i].clinical for i in train])
        x = np.stack([encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in samples])
        if stats is not None:
            ok = ~np.isnan(stats[train]).any(axis=1)
            mu, sd = stats[train][ok].mean(0), stats[train][ok].std(0) + 1e-6
            x = np.concatenate([x, np.nan_to_num((stats - mu) / sd)], axis=1)
        w, b = fit_logistic(x[train], y[train])
        aucs.append(score(sigmoid(x[test] @ w + b), y[test])["auc"])
    return aucs


def _row(name: str, aucs: Sequence[float]) -> str:
    return f"| {name} | {np.mean(aucs):.3f} ± {np.std(aucs):.3f} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ddti", default=str(ROOT.parent / "shared" / "ddti"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    samples, _, _ = prepare_samples(args.ddti, label_source="auto")
    folds = case_folds(samples, folds=args.folds, seed=args.seed)
    y = np.array([s.label for s in samples], dtype=np.float64)
    stats = statistics(samples)
    truth = stats["the radiologist's outline"]
    print(f"{len(samples)} images, {args.folds} folds by case")
    print("| outline_lr fitted on true outlines, test outline: | AUC (mean ± sd) |")
    print("|---|---:|")
    for name, x in stats.items():
        print(_row(name, cv_auc(folds, y, truth, x)))
    ellipse = stats["ellipse inscribed in its box"]
    refit = cv_auc(folds, y, ellipse, ellipse)
    print(_row("refitted and tested on ellipses in the true box", refit))
    print("\n| one regression on | AUC (mean ± sd) |\n|---|---:|")
    print(_row("the descriptors (descriptor_lr)", with_descriptors(samples, folds, y, None)))
    print(_row("descriptors + statistics in the true outline",
               with_descriptors(samples, folds, y, truth)))  # fmt: skip
    print(_row("descriptors + statistics in the ellipse in its box",
               with_descriptors(samples, folds, y, ellipse)))  # fmt: skip


if __name__ == "__main__":
    main()
