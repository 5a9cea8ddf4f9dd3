"""What a DataLoader batch is, whatever shape the Dataset gives it.

:class:`~thyrocam.data.ThyroidDataset` yields ``(image, clinical, label)``
tuples; a Dataset with more targets (outlines, descriptors) may yield a dict
with at least ``"image"``, ``"clinical"`` and ``"label"``. Training and
evaluation read batches only through these helpers, so either shape works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["Batch", "batch_to", "batch_inputs", "batch_len"]

Batch = Sequence[Any] | Mapping[str, Any]


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor of ``batch`` (tuple, list or dict, nested) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: batch_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(batch_to(v, device) for v in batch)
    return batch


def batch_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image (B, 3, S, S), clinical (B, D), label (B,))`` of a tuple or dict batch."""
    if isinstance(batch, Mapping):
        return batch["image"], batch["clinical"], batch["label"]
    return batch[0], batch[1], batch[2]


def batch_len(batch: Batch) -> int:
    """Number of samples in ``batch`` (the label's length)."""
    return len(batch_inputs(batch)[2])
