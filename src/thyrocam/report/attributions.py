"""The report's descriptor attributions: exact Shapley values summarised per field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch.utils.data import DataLoader

from thyrocam.clinical import FIELDS
from thyrocam.data import Sample, ThyroidDataset
from thyrocam.data.batches import batch_inputs
from thyrocam.explain.attribution import descriptor_attributions
from thyrocam.predictor import Predictor

__all__ = ["AttributionSummary", "attribution_summary"]


@dataclass(frozen=True)
class AttributionSummary:
    """Per-field means of the descriptors' Shapley values (logit units) over the images.

    Attributes:
        fields: the six fields, in :data:`thyrocam.clinical.FIELDS` order.
        mean_abs: mean ``|value|`` per field over all images.
        mean_malignant: mean signed value over malignant images (``None``: none).
        mean_benign: the same over benign images.
        present: share of images with the field given.
        mean_abs_effect: mean ``|logit(as given) - logit(all missing)|``.
        max_completeness_error: largest ``|sum(values) - effect|`` (rounding only).
    """

    fields: list[str]
    mean_abs: list[float]
    mean_malignant: list[float] | None
    mean_benign: list[float] | None
    present: list[float]
    mean_abs_effect: float
    max_completeness_error: float

    @property
    def coalitions(self) -> int:
        """Given/missing combinations evaluated per image."""
        return 2 ** len(self.fields)

    def to_json(self) -> dict:
        """``metrics.json["attributions"]``."""
        return asdict(self)


def attribution_summary(predictor: Predictor, samples: Sequence[Sample]) -> AttributionSummary:
    """Exact descriptor Shapley values over ``samples``, summarised per field."""
    ds = ThyroidDataset(samples, preprocessing=predictor.preprocessing, cat_maps=predictor.cat_maps)
    shap, effect, errors, labels = [], [], [], []
    for batch in DataLoader(ds, batch_size=32, shuffle=False):
        img, clin, y = batch_inputs(batch)
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

    return AttributionSummary(
        fields=list(FIELDS),
        mean_abs=np.abs(values).mean(0).tolist(),
        mean_malignant=mean_rows(y == 1),
        mean_benign=mean_rows(y == 0),
        present=present.mean(0).tolist(),
        mean_abs_effect=float(np.abs(np.concatenate(effect)).mean()),
        max_completeness_error=float(np.concatenate(errors).max()),
    )
