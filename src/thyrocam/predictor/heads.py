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
from thyrocam.metrics import beats_rate
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
    outputs: Mapping[str, torch.Tensor],
    cat_maps: Mapping[str, Any],
    *,
    quality: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]] | None:
    """The most likely value of each image descriptor, its probability and how far to trust it.

    Args:
        outputs: ``field -> (1, k)`` logits (columns in ``cat_maps["fields"][field]`` order).
        quality: the run's ``meta.json`` ``"descriptor_quality"`` (held-out accuracy
            beside the commonest value's, per field); ``None`` for runs without it.

    Returns:
        ``{field: {"value": str, "probability": float, "held_out": {"accuracy",
        "baseline", "n"} | None, "beats_baseline": bool | None}}`` for the four
        fields, or ``None`` when the outputs hold no descriptor head.
        ``beats_baseline`` is True only where the head read held-out frames better
        than always answering the commonest value beyond chance (one-sided exact
        binomial test at 5 %, :func:`thyrocam.metrics.beats_rate`), ``None`` where
        that is unknown.
    """
    if not all(f in outputs for f in DESCRIPTOR_FIELDS):
        return None
    per_field = (quality or {}).get("fields", {})
    estimated: dict[str, dict[str, Any]] = {}
    for f in DESCRIPTOR_FIELDS:
        probs = torch.softmax(outputs[f][0].detach().float(), dim=0)
        j = int(probs.argmax())
        q = per_field.get(f) or {}
        known = q.get("accuracy") is not None and q.get("baseline") is not None
        held_out = {k: q[k] for k in ("accuracy", "baseline", "n")} if known else None
        estimated[f] = {
            "value": str(cat_maps["fields"][f][j]),
            "probability": round(float(probs[j]), 4),
            "held_out": held_out,
            "beats_baseline": beats_rate(
                accuracy=held_out["accuracy"], baseline=held_out["baseline"], n=held_out["n"]
            )
            if held_out
            else None,
        }
    return estimated


def tirads_from_image(
    clinical: Mapping[str, Any], estimated: Mapping[str, Mapping[str, Any]] | None
) -> tuple[TiradsResult | None, list[str], list[str]]:
    """ACR TI-RADS with each missing image descriptor taken from ``estimated``.

    An estimate whose head was not shown better than the commonest value on
    held-out frames (``beats_baseline`` False) is withheld: a TI-RADS level built on a guess
    would look like a reading.

    Returns:
        ``(result, fields taken from the image, missing fields withheld)``;
        ``result`` is ``None`` when nothing was missing (the entered line says it
        all), there is no estimate, or every missing field was withheld.
    """
    if estimated is None:
        return None, [], []
    missing = [f for f in DESCRIPTOR_FIELDS if clinical.get(f) is None]
    withheld = [f for f in missing if estimated[f].get("beats_baseline") is False]
    filled = [f for f in missing if f not in withheld]
    if not filled:
        return None, [], withheld
    values = dict(clinical)
    values.update({f: estimated[f]["value"] for f in filled})
    return acr_tirads(values), filled, withheld


def outline_probability(outputs: Mapping[str, torch.Tensor]) -> np.ndarray | None:
    """The outline head's mask as float32 ``(S, S)`` probabilities, or ``None`` without one."""
    logits = outputs.get("outline")
    if logits is None:
        return None
    return torch.sigmoid(logits[0, 0].detach().float()).cpu().numpy()
