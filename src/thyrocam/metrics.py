"""Binary classification metrics in plain numpy (no scikit-learn at run time)."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "roc_auc",
    "roc_curve",
    "youden_threshold",
    "binary_metrics",
    "calibration_curve",
    "binomial_tail",
    "beats_rate",
]


def _as_arrays(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.int64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probs and labels: got {p.shape} and {y.shape}; expected equal lengths")
    return p, y


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    p, y = _as_arrays(probs, labels)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    values = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(values))
    # average ranks over ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty(len(values))
    r[order] = ranks
    rank_sum_pos = r[: len(pos)].sum()
    return float((rank_sum_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def roc_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, thresholds descending (a case is positive when ``p >= t``)."""
    p, y = _as_arrays(probs, labels)
    thresholds = np.concatenate([[np.inf], np.unique(p)[::-1]])
    n_pos, n_neg = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1)
    tpr = np.array([((p >= t) & (y == 1)).sum() / n_pos for t in thresholds])
    fpr = np.array([((p >= t) & (y == 0)).sum() / n_neg for t in thresholds])
    return fpr, tpr, thresholds


def youden_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (0.5 with one class only)."""
    p, y = _as_arrays(probs, labels)
    if len(set(y.tolist())) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(p, y)
    best = int(np.argmax(tpr - fpr))
    t = thresholds[best]
    return float(min(max(t, 0.0), 1.0)) if np.isfinite(t) else 1.0


def binary_metrics(probs: np.ndarray, labels: np.ndarray, *, threshold: float) -> dict:
    """AUC and, at ``threshold``, sensitivity, specificity, accuracy and the confusion counts."""
    p, y = _as_arrays(probs, labels)
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    n = len(y)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "n": n,
        "n_malignant": int((y == 1).sum()),
        "n_benign": int((y == 0).sum()),
        "auc": None if np.isnan(auc := roc_auc(p, y)) else auc,
        "threshold": float(threshold),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "accuracy": ratio(tp + tn, n),
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def calibration_curve(
    probs: np.ndarray, labels: np.ndarray, *, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width probability bin: ``(mean predicted, observed fraction, count)``."""
    p, y = _as_arrays(probs, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    mean_p, frac, count = [], [], []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            mean_p.append(p[sel].mean())
            frac.append(y[sel].mean())
            count.append(int(sel.sum()))
    return np.array(mean_p), np.array(frac), np.array(count)


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)`` (exact; 1.0 for ``k <= 0``)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k, n + 1)))


def beats_rate(*, accuracy: float, baseline: float, n: int, alpha: float = 0.05) -> bool:
    """Whether ``accuracy`` on ``n`` cases is better than ``baseline`` beyond chance.

    One-sided exact binomial test: a reader right at ``baseline``'s rate would score
    at least this many of ``n`` with probability under ``alpha``. On the ~20-35
    held-out frames of a small real-data run, a one-frame edge is not enough.
    """
    if n <= 0:
        return False
    return binomial_tail(round(accuracy * n), n, baseline) < alpha
