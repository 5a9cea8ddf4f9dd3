"""Multi-task step loss: malignancy + nodule outline + image descriptors, one forward pass.

The outline and descriptor targets are the supervision a small real data set
has beyond its one label per case (DDTI: an outline on nearly every frame, four
descriptors on most cases). Each term is masked where its target is absent, so
a frame without an outline or a case without a recorded margin adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from thyrocam.data.batches import Batch
from thyrocam.model import DESCRIPTOR_FIELDS

__all__ = [
    "outline_loss",
    "box_projection_loss",
    "descriptor_loss",
    "malignancy_bce",
    "MultiTaskLoss",
]


def outline_loss(logits: torch.Tensor, target: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Soft-Dice + BCE over mask logits, averaged over the frames that have an outline.

    Args:
        logits: ``(B, 1, H, W)`` mask logits.
        target: ``(B, 1, H, W)`` in ``[0, 1]``.
        has: ``(B,)`` 1 where the frame has an outline, 0 where it has none (its
            term is then exactly zero, whatever its logits).

    Returns:
        A scalar; 0 (still differentiable) when no frame has an outline. Dice
        counters the nodule being a small part of a whole frame; BCE keeps the
        gradient useful while Dice is flat (at the start of training).
    """
    has = has.to(logits.dtype)
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    dice = 1.0 - _soft_dice(torch.sigmoid(logits).flatten(1), target.flatten(1))
    return ((bce + dice) * has).sum() / has.sum().clamp(min=1.0)


def _soft_dice(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Soft Dice (smoothed by 1) of ``(B, N)`` probabilities and targets -> ``(B,)``."""
    return (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)


def box_projection_loss(
    logits: torch.Tensor, target: torch.Tensor, has: torch.Tensor
) -> torch.Tensor:
    """Soft-Dice of the mask's column and row maxima against the outline's, as in BoxInst.

    The automatic box is the extent of the predicted mask, which a per-pixel loss
    weighs only by its area: a faint rim around a small nodule costs little there
    but widens the box. The maxima along each axis are the mask's shadow on it, so
    this term is the box's extent, differentiably.

    Args:
        logits: ``(B, 1, H, W)`` mask logits.
        target: ``(B, 1, H, W)`` in ``[0, 1]``.
        has: ``(B,)`` 1 where the frame has an outline (0: its term is exactly zero).

    Returns:
        A scalar: the mean over frames with an outline of the two axes' Dice losses.
    """
    has = has.to(logits.dtype)
    p, t = torch.sigmoid(logits)[:, 0], target.to(logits.dtype)[:, 0]
    total = torch.zeros_like(has)
    for dim in (1, 2):  # maxima over rows (a column profile), then over columns
        total = total + 1.0 - _soft_dice(p.amax(dim), t.amax(dim))
    return (0.5 * total * has).sum() / has.sum().clamp(min=1.0)


def descriptor_loss(
    logits: Mapping[str, torch.Tensor], targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over the four descriptor fields, each masked where not recorded.

    Args:
        logits: ``{field: (B, k)}`` for :data:`~thyrocam.model.DESCRIPTOR_FIELDS`.
        targets: ``(B, 4)`` int64 class indices, -1 where the field is not recorded.

    Returns:
        ``(loss, {"field": ce})``: the mean over fields with at least one recorded
        value in the batch (zero, still differentiable, if none has).
    """
    terms, logs = [], {}
    for j, field in enumerate(DESCRIPTOR_FIELDS):
        t = targets[:, j]
        if bool((t >= 0).any()):
            ce = F.cross_entropy(logits[field], t, ignore_index=-1)
            terms.append(ce)
            logs[field] = float(ce.detach())
    if not terms:
        any_logits = next(iter(logits.values()))
        return any_logits.sum() * 0.0, logs
    return torch.stack(terms).mean(), logs


def malignancy_bce(logits: torch.Tensor, label: torch.Tensor, *, pos_weight: float) -> torch.Tensor:
    """Class-weighted BCE of ``(B,)`` logits, averaged over the frames with a label.

    ``label``: ``(B,)`` 0/1, NaN for an unlabelled frame kept for its outline
    (:func:`~thyrocam.data.samples.outline_only_samples`), whose term is exactly zero.
    A batch with no label gives 0 (still differentiable).
    """
    has = ~torch.isnan(label)
    weight = torch.tensor([pos_weight], device=logits.device, dtype=logits.dtype)
    if bool(has.all()):  # the plain mean: a run without unlabelled frames is as before
        return F.binary_cross_entropy_with_logits(logits, label.to(logits.dtype), pos_weight=weight)
    target = torch.where(has, label, torch.zeros_like(label)).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight, reduction="none")
    has = has.to(logits.dtype)
    return (per * has).sum() / has.sum().clamp(min=1.0)


class MultiTaskLoss:
    """``bce + outline_weight * outline + descriptor_weight * descriptors`` from one forward.

    Reads dict batches (``ThyroidDataset(targets=True)``): ``image``,
    ``clinical``, ``label``, ``mask``, ``has_mask``, ``descriptors``, and
    optionally ``frame``/``frame_mask`` (the whole frame, so the outline head
    also learns the input the automatic box is computed on). Heads the model
    lacks are skipped.

    Args:
        pos_weight: weight of the malignant class in the BCE (class balance).
        outline_weight: weight of the outline term.
        box_weight: weight of :func:`box_projection_loss`, added to the outline term.
        descriptor_weight: weight of the descriptor term.
        frame_share: the whole frames' share of the outline term (the crops have the
            rest), when the batch has them.
    """

    def __init__(
        self,
        *,
        pos_weight: float = 1.0,
        outline_weight: float = 1.0,
        box_weight: float = 0.0,
        descriptor_weight: float = 1.0,
        frame_share: float = 0.5,
    ) -> None:
        self.frame_share = float(frame_share)
        self.pos_weight = float(pos_weight)
        self.outline_weight = float(outline_weight)
        self.box_weight = float(box_weight)
        self.descriptor_weight = float(descriptor_weight)

    def __call__(
        self, model: torch.nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        net = getattr(model, "module", model)  # DDP wraps the ThyroidNet
        heads = net.heads
        out = _forward_heads(model, batch["image"], batch["clinical"])
        loss = malignancy_bce(out["malignancy"][:, 0], batch["label"], pos_weight=self.pos_weight)
        logs = {"bce": float(loss.detach())}
        if "outline" in heads:
            o = self._outlines(out, batch["mask"], batch["has_mask"])
            if "frame" in batch:
                frame_out = _forward_heads(model, batch["frame"], None)
                f = self._outlines(frame_out, batch["frame_mask"], batch["has_mask"])
                o = (1.0 - self.frame_share) * o + self.frame_share * f
            loss = loss + self.outline_weight * o
            logs["outline"] = float(o.detach())
        if "descriptors" in heads:
            d, _ = descriptor_loss(out, batch["descriptors"])
            loss = loss + self.descriptor_weight * d
            logs["descriptors"] = float(d.detach())
        return loss, logs

    def _outlines(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, has: torch.Tensor
    ) -> torch.Tensor:
        """The outline term of one forward: its ``"outline"`` logits, plus with equal
        weight the ``"outline_aux"`` ones a ``"unet"`` model returns while training."""
        o = self._outline(out["outline"], target, has)
        if "outline_aux" in out:
            o = o + self._outline(out["outline_aux"], target, has)
        return o

    def _outline(
        self, logits: torch.Tensor, target: torch.Tensor, has: torch.Tensor
    ) -> torch.Tensor:
        o = outline_loss(logits, target, has)
        if self.box_weight:
            o = o + self.box_weight * box_projection_loss(logits, target, has)
        return o


def _forward_heads(
    model: torch.nn.Module, img: torch.Tensor, clin: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    # Through forward(), not forward_heads(): a DDP wrapper syncs gradients only
    # for what passes through its forward.
    return model(img, clin, all_heads=True)
