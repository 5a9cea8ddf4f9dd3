"""Reading a run's extra heads: estimated descriptors, the TI-RADS line from the image, the outline.

A run lists its heads in ``meta.json`` (``"heads"``); a run written before the
heads existed is malignancy-only and gets none of this (``None`` throughout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from thyrocam.clinical import TiradsResult, acr_tirads
from thyrocam.model import DESCRIPTOR_FIELDS

__all__ = [
    "model_heads",
    "run_heads",
    "estimate_descriptors",
    "tirads_from_image",
    "outline_probability",
]


def model_heads(model: torch.nn.Module) -> tuple[str, ...]:
    """The model's heads; anything without the attribute is malignancy-only."""
    return tuple(getattr(model, "heads", ("malignancy",)))


def run_heads(
    model: torch.nn.Module, x: torch.Tensor, clin: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Every head from one pass: ``{"malignancy": (B, 1), ...}`` (see ``forward_heads``).

    A malignancy-only model runs its plain ``forward``, exactly as before the heads.
    """
    if model_heads(model) == ("malignancy",):
        return {"malignancy": model(x, clin)}
    return dict(model.forward_heads(x, clin))


def estimate_descriptors(
    outputs: Mapping[str, torch.Tensor], cat_maps: Mapping[str, Any]
) -> dict[str, dict[str, Any]] | None:
    """The most likely value of each image descriptor and its softmax probability.

    Args:
        outputs: ``field -> (1, k)`` logits (columns in ``cat_maps["fields"][field]`` order).

    Returns:
        ``{field: {"value": str, "probability": float}}`` for the four fields, or
        ``None`` when the outputs hold no descriptor head.
    """
    if not all(f in outputs for f in DESCRIPTOR_FIELDS):
        return None
    estimated: dict[str, dict[str, Any]] = {}
    for f in DESCRIPTOR_FIELDS:
        probs = torch.softmax(outputs[f][0].detach().float(), dim=0)
        j = int(probs.argmax())
        estimated[f] = {
            "value": str(cat_maps["fields"][f][j]),
            "probability": round(float(probs[j]), 4),
        }
    return estimated


def tirads_from_image(
    clinical: Mapping[str, Any], estimated: Mapping[str, Mapping[str, Any]] | None
) -> tuple[TiradsResult | None, list[str]]:
    """ACR TI-RADS with each missing image descriptor taken from ``estimated``.

    Returns:
        ``(result, fields taken from the image)``; ``(None, [])`` when nothing was
        missing (the entered line says it all) or there is no estimate.
    """
    if estimated is None:
        return None, []
    filled = [f for f in DESCRIPTOR_FIELDS if clinical.get(f) is None]
    if not filled:
        return None, []
    values = dict(clinical)
    values.update({f: estimated[f]["value"] for f in filled})
    return acr_tirads(values), filled


def outline_probability(outputs: Mapping[str, torch.Tensor]) -> np.ndarray | None:
    """The outline head's mask as float32 ``(S, S)`` probabilities, or ``None`` without one."""
    logits = outputs.get("outline")
    if logits is None:
        return None
    return torch.sigmoid(logits[0, 0].detach().float()).cpu().numpy()
