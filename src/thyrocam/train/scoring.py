"""Scoring a fitted model: the decision threshold on validation, then the test split once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from thyrocam.data import Sample, ThyroidDataset
from thyrocam.data.dataset import descriptor_targets
from thyrocam.evaluate import predict_probs
from thyrocam.imaging import Preprocessing
from thyrocam.metrics import binary_metrics, youden_threshold
from thyrocam.model import DESCRIPTOR_FIELDS, ThyroidNet

__all__ = ["Scores", "descriptor_quality", "score_fitted"]


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


@torch.no_grad()
def descriptor_quality(
    model: ThyroidNet,
    *,
    train: Sequence[Sample],
    test: Sequence[Sample],
    preprocessing: Preprocessing,
    cat_maps: dict,
    device: torch.device,
    batch_size: int = 32,
) -> dict | None:
    """How well each descriptor head reads held-out frames, beside the trivial answer.

    For every field: the head's accuracy on the ``test`` frames where the field is
    recorded, and the accuracy of always answering ``train``'s commonest recorded
    value on the same frames (what a head that learnt nothing scores). The page
    shows both next to each estimate, and the TI-RADS line from the image uses only
    heads that beat it.

    Returns:
        ``{"split": "test", "fields": {field: {"accuracy", "baseline", "n",
        "commonest"}}}`` (``accuracy``/``baseline`` ``None`` where no test frame
        records the field), or ``None`` when the model has no descriptor heads.
    """
    if "descriptors" not in model.heads:
        return None
    truth_train = np.stack([descriptor_targets(s.clinical, cat_maps) for s in train])
    ds = ThyroidDataset(list(test), preprocessing=preprocessing, cat_maps=cat_maps, targets=True)
    preds, truths = [], []
    model.eval()
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        out = model.forward_heads(batch["image"].to(device), batch["clinical"].to(device))
        preds.append(np.stack([out[f].argmax(1).cpu().numpy() for f in DESCRIPTOR_FIELDS], 1))
        truths.append(batch["descriptors"].numpy())
    pred = np.concatenate(preds) if preds else np.zeros((0, len(DESCRIPTOR_FIELDS)), int)
    truth = np.concatenate(truths) if truths else pred
    fields = {}
    for j, f in enumerate(DESCRIPTOR_FIELDS):
        known_train = truth_train[:, j][truth_train[:, j] >= 0]
        commonest = int(np.bincount(known_train).argmax()) if len(known_train) else None
        ok = truth[:, j] >= 0
        n = int(ok.sum())
        fields[f] = {
            "accuracy": float((pred[ok, j] == truth[ok, j]).mean()) if n else None,
            "baseline": (
                float((truth[ok, j] == commonest).mean()) if n and commonest is not None else None
            ),
            "n": n,
            "commonest": None if commonest is None else str(cat_maps["fields"][f][commonest]),
        }
    return {"split": "test", "fields": fields}
