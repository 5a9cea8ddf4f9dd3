"""What an explanation explains: the malignancy logit, or one value of a descriptor head.

A target is a string, the same in the Python API, the CLI (``--target``) and
HTTP (``target=``):

* ``"malignant"``: evidence for malignancy (the malignancy logit);
* ``"benign"``: evidence against it (the negated logit);
* ``"field:value"`` for a run with descriptor heads, e.g.
  ``"calcifications:microcalcifications"``: evidence for that value, i.e. column
  ``j`` of the field's ``(B, k)`` logits (``j`` the value's place in
  ``cat_maps["fields"][field]``), as pytorch-grad-cam's ``ClassifierOutputTarget(j)``.

The CAM engine needs one output tensor; :class:`HeadOutput` is the proxy model
that gives it one head of ``model.forward_heads`` (and keeps every head of that
same pass, so the prediction comes from the forward pass the map explains).

Example:
    >>> target = parse_target("calcifications:microcalcifications",
    ...                       heads=model.heads, cat_maps=cat_maps)
    >>> proxy = HeadOutput(model, target.head)
    >>> res = GradCAM(proxy, layer).compute(x, clinical=clin, **target.engine_kwargs())
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from thyrocam.clinical import normalize_value
from thyrocam.errors import ClinicalValueError, InputError, TargetError
from thyrocam.model import DESCRIPTOR_FIELDS

__all__ = [
    "CLASS_TARGETS",
    "ExplainTarget",
    "HeadOutput",
    "available_targets",
    "explained_head",
    "parse_target",
]

#: The malignancy head's two readings: evidence for, evidence against.
CLASS_TARGETS: tuple[str, ...] = ("malignant", "benign")


@dataclass(frozen=True)
class ExplainTarget:
    """A checked explanation target.

    Attributes:
        name: the canonical string (``"benign"``, ``"margins:spiculated"``).
        head: ``"malignancy"`` or the descriptor field whose logits are explained.
        column: the output column explained (0 for the one malignancy logit).
        value: the descriptor value (``None`` for the malignancy head).
    """

    name: str
    head: str
    column: int
    value: str | None = None

    @property
    def is_descriptor(self) -> bool:
        return self.head != "malignancy"

    def engine_kwargs(self) -> dict[str, Any]:
        """``class_idx`` / ``target`` for :meth:`~thyrocam.explain.cam.BaseCAM.compute`."""
        if self.is_descriptor:
            return {"class_idx": self.column, "target": "malignant"}
        return {"class_idx": None, "target": self.name}


def available_targets(*, heads: Sequence[str], cat_maps: Mapping[str, Any]) -> tuple[str, ...]:
    """Every target a run can explain: the two classes, then ``field:value`` per head column."""
    if "descriptors" not in heads:
        return CLASS_TARGETS
    fields = cat_maps["fields"]
    return CLASS_TARGETS + tuple(f"{f}:{v}" for f in DESCRIPTOR_FIELDS for v in fields[f])


def _field_key(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


def parse_target(
    target: object, *, heads: Sequence[str], cat_maps: Mapping[str, Any]
) -> ExplainTarget:
    """Check a target string against a run's heads and encoding.

    Args:
        target: ``"malignant"``, ``"benign"`` or ``"field:value"`` (the value in any
            spelling :func:`thyrocam.clinical.normalize_value` accepts).
        heads: the run's heads (``model.heads``).
        cat_maps: the run's encoding; its category order is the head's column order.

    Raises:
        TargetError: ``field:value`` naming an unknown field or value, or a
            descriptor head the run does not have (HTTP 422).
        InputError: anything that is not a target at all (HTTP 400).
    """
    allowed = available_targets(heads=heads, cat_maps=cat_maps)
    listing = ", ".join(allowed)
    if isinstance(target, str) and target.strip().lower() in CLASS_TARGETS:
        name = target.strip().lower()
        return ExplainTarget(name=name, head="malignancy", column=0)
    if not isinstance(target, str) or ":" not in target:
        raise InputError(
            f"target: got {target!r}; allowed: {listing}",
            field="target",
            value=target,
            allowed=allowed,
        )

    def unknown(why: str) -> TargetError:
        return TargetError(
            f"target: got {target!r} ({why}); allowed: {listing}",
            field="target",
            value=target,
            allowed=allowed,
        )

    raw_field, raw_value = target.split(":", 1)
    field = _field_key(raw_field)
    if field not in DESCRIPTOR_FIELDS:
        raise unknown(f"{raw_field.strip()!r} is not a descriptor field")
    if "descriptors" not in heads:
        raise unknown("this run has no descriptor heads")
    try:
        value = normalize_value(field, raw_value)
    except ClinicalValueError:
        value = None
    categories = list(cat_maps["fields"][field])
    if value is None or value not in categories:
        raise unknown(f"{raw_value.strip()!r} is not a value of {field}")
    return ExplainTarget(
        name=f"{field}:{value}", head=field, column=categories.index(value), value=str(value)
    )


def explained_head(model: nn.Module, head: str) -> str:
    """The head whose logit a map of ``head`` explains.

    A stacked fusion's malignancy maps are its image network's own logit
    (``forward_heads(...)["image"]``): the same map as the fused logit's whenever
    the image has weight, and still the image network's evidence when its weight
    is 0 (the probability then comes from the descriptors alone). Any other head
    is itself.
    """
    if head == "malignancy" and getattr(model, "fusion", "joint") == "stacked":
        return "image"
    return head


class HeadOutput(nn.Module):
    """A proxy model whose output is one head of ``model.forward_heads(img, clin)``.

    Every head of the last pass is kept (detached) in :attr:`outputs`, so the
    caller reads the malignancy logit, the descriptor logits and the outline of
    the same forward pass the CAM was taken from. Make one per call: the kept
    outputs are the proxy's state.

    Args:
        model: a ``ThyroidNet`` (anything with ``forward_heads``).
        head: ``"malignancy"``, ``"outline"`` or a descriptor field.
    """

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.net = model
        self.head = head
        self.outputs: dict[str, torch.Tensor] = {}
        # A new Module starts in training mode; the engine would then switch the shared
        # model to eval for the call and back to *training* after it. Take its mode.
        self.training = model.training

    def forward(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> torch.Tensor:
        """``img (B, 3, H, W)``, ``clin (B, D)`` or ``None`` -> the head's logits."""
        out = self.net.forward_heads(img, clin)
        self.outputs = {k: v.detach() for k, v in out.items()}
        return out[self.head]
