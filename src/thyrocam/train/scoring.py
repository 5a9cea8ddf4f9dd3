"""Scoring a fitted model: the decision threshold on validation, then the test split once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from thyrocam.evaluate import predict_probs
from thyrocam.metrics import binary_metrics, youden_threshold

__all__ = ["Scores", "score_fitted"]


@dataclass(frozen=True)
class Scores:
    """The threshold chosen on validation and the metrics at it.

    Attributes:
        threshold: P(malignant) at or above which a case is called malignant
            (Youden's J on validation).
        validation: :func:`~thyrocam.metrics.binary_metrics` on the validation split.
        test: the same on the test split, scored once with the validation threshold.
    """

    threshold: float
    validation: dict
    test: dict


def score_fitted(
    model: torch.nn.Module,
    *,
    val_loader: DataLoader,
    test_loader: DataLoader,
    device: torch.device,
) -> Scores:
    """Choose the threshold on ``val_loader`` and score ``test_loader`` at it."""
    p_val, y_val, _ = predict_probs(model, val_loader, device=device)
    threshold = youden_threshold(p_val, y_val)
    p_test, y_test, _ = predict_probs(model, test_loader, device=device)
    return Scores(
        threshold=threshold,
        validation=binary_metrics(p_val, y_val, threshold=threshold),
        test=binary_metrics(p_test, y_test, threshold=threshold),
    )
