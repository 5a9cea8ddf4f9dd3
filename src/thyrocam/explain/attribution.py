"""How much each of the six descriptors pushed the logit: exact Shapley values.

Why Shapley values over the fields, with "missing" as the absent value:

* "missing" is a value the model was trained on (fields are hidden at random
  during training, and most DDTI cases lack some), so removing a field means
  encoding it as missing — zero its one-hot/age entries and its mask entry —
  which is an input the model knows, not an out-of-distribution baseline.
* With six players there are only ``2**6 = 64`` coalitions, so the values are
  exact (no sampling), and they are *complete*: they sum to
  ``logit(all given) - logit(all missing)`` (up to float rounding), so the bar
  chart accounts for the whole effect of the descriptors on the logit.
* Interactions are shared fairly. The simpler "set one field to missing"
  occlusion delta is also returned; it is exact too, but its sum is not the total
  effect when fields interact (e.g. composition and echogenicity together).
* It is cheap: the image features are computed once; only the small descriptor
  branch and the fusion head run for the 64 coalitions (about one forward pass).

Integrated Gradients was not used: the one-hot inputs make the straight path
from "missing" to "given" pass through encodings that are neither (half a
category), and its completeness holds only up to the integration error.

Shapley, "A value for n-person games", 1953; Lundberg & Lee, "A Unified Approach
to Interpreting Model Predictions", NeurIPS 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from thyrocam.clinical import FIELDS, clinical_dim, feature_slices, mask_slice
from thyrocam.errors import InputError
from thyrocam.model import ThyroidNet

__all__ = ["DescriptorAttribution", "descriptor_attributions", "coalition_inputs"]


@dataclass(frozen=True)
class DescriptorAttribution:
    """Per-field contributions to the malignancy logit, for a batch of ``B`` inputs.

    Attributes:
        fields: the field names, in column order (:data:`~thyrocam.clinical.FIELDS`).
        shapley: float64 ``(B, 6)`` exact Shapley values (logit units); a field
            that was missing in the input gets exactly 0.
        occlusion: float64 ``(B, 6)``: ``logit(all given) - logit(this field missing)``.
        logit_full: float64 ``(B,)`` the logit with the descriptors as given.
        logit_none: float64 ``(B,)`` the logit with every descriptor missing.
    """

    fields: tuple[str, ...]
    shapley: np.ndarray
    occlusion: np.ndarray
    logit_full: np.ndarray
    logit_none: np.ndarray

    @property
    def completeness_error(self) -> np.ndarray:
        """``(B,)``: ``|sum(shapley) - (logit_full - logit_none)|`` (float rounding only)."""
        return np.abs(self.shapley.sum(1) - (self.logit_full - self.logit_none))

    def as_dict(self, index: int = 0) -> dict[str, float]:
        """Shapley values of sample ``index`` as ``{field: value}``."""
        return {f: float(v) for f, v in zip(self.fields, self.shapley[index], strict=True)}


def coalition_inputs(clin: torch.Tensor, *, cat_maps: dict) -> torch.Tensor:
    """All ``2**6`` versions of one encoded descriptor vector, some fields set to missing.

    Args:
        clin: ``(D,)`` the vector of ``encode_clinical_with_mask``.
        cat_maps: the encoding it was made with.

    Returns:
        ``(64, D)``: row ``s`` keeps field ``FIELDS[i]`` when bit ``i`` of ``s`` is set
        and encodes it as missing (value entries and mask entry zero) otherwise.
    """
    slices = feature_slices(cat_maps)
    mask_start = mask_slice(cat_maps).start
    n = len(FIELDS)
    keep = torch.zeros(2**n, clin.shape[-1], dtype=clin.dtype, device=clin.device)
    for s in range(2**n):
        for i, field in enumerate(FIELDS):
            if s >> i & 1:
                keep[s, slices[field]] = 1.0
                keep[s, mask_start + i] = 1.0
    return clin[None, :] * keep


def _shapley_terms(n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per player ``i``: coalitions ``S`` without ``i``, ``S + i``, and the weights.

    ``phi_i = sum_S |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``; taking the
    differences first makes a field whose presence changes nothing exactly 0.
    """
    terms = []
    for i in range(n):
        without = np.array([s for s in range(2**n) if not s >> i & 1])
        sizes = np.array([bin(s).count("1") for s in without])
        weights = np.array(
            [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in sizes]
        )
        terms.append((without, without | 1 << i, weights))
    return terms


_TERMS = _shapley_terms(len(FIELDS))


@torch.no_grad()
def _coalition_logits(model: ThyroidNet, x: torch.Tensor, coalitions: torch.Tensor) -> np.ndarray:
    """Logits ``(B, 64)`` for every image with every coalition of its descriptors."""
    batch, n_coal = coalitions.shape[:2]
    # The same fusion as ThyroidNet.forward, with the image features computed once
    # per image instead of once per coalition.
    if model.modalities == "clinical":
        weight = model.head[-1].weight
        f_img = torch.zeros(batch, model.hidden, dtype=weight.dtype, device=weight.device)
    else:
        f_img = model.forward_image(x)
    flat = coalitions.reshape(batch * n_coal, -1)
    f_clin = model.forward_clinical(None if model.modalities == "image" else flat, len(flat))
    f_img = f_img.repeat_interleave(n_coal, dim=0)
    logits = model.head(torch.cat([f_img, f_clin], dim=1))[:, 0]
    return logits.double().cpu().numpy().reshape(batch, n_coal)


def descriptor_attributions(
    model: ThyroidNet,
    x: torch.Tensor,
    clin: torch.Tensor | np.ndarray,
    *,
    cat_maps: dict,
) -> DescriptorAttribution:
    """Exact Shapley values of the six descriptors for the malignancy logit.

    Args:
        model: a :class:`~thyrocam.model.ThyroidNet` in eval mode (dropout would
            make the coalition logits random).
        x: ``(B, 3, S, S)`` or ``(3, S, S)`` preprocessed images.
        clin: ``(B, D)`` or ``(D,)`` vectors of ``encode_clinical_with_mask``.
        cat_maps: the encoding the model was trained with.

    Returns:
        A :class:`DescriptorAttribution` with Shapley values and occlusion deltas.

    Example:
        >>> att = descriptor_attributions(model, x, clin, cat_maps=cat_maps)
        >>> att.as_dict()                          # {"composition": 0.8, ..., "age": -0.1}
    """
    if model.training:
        raise InputError(
            "model: got a model in training mode; allowed: a model in eval mode "
            "(call model.eval() first)",
            field="model",
            value="training",
            allowed="eval mode",
        )
    if x.dim() == 3:
        x = x.unsqueeze(0)
    param = next(model.parameters())
    clin_t = torch.as_tensor(clin, dtype=param.dtype, device=param.device)
    if clin_t.dim() == 1:
        clin_t = clin_t.unsqueeze(0)
    dim = clinical_dim(cat_maps)
    if clin_t.dim() != 2 or clin_t.shape != (x.shape[0], dim):
        raise InputError(
            f"clin: got shape {tuple(clin_t.shape)}; allowed: ({x.shape[0]}, {dim})",
            field="clin",
            value=tuple(clin_t.shape),
            allowed=f"({x.shape[0]}, {dim})",
        )
    coalitions = torch.stack([coalition_inputs(row, cat_maps=cat_maps) for row in clin_t])
    values = _coalition_logits(model, x.to(param.device, param.dtype), coalitions)
    full = 2 ** len(FIELDS) - 1
    without_one = [full & ~(1 << i) for i in range(len(FIELDS))]
    return DescriptorAttribution(
        fields=tuple(FIELDS),
        shapley=np.stack(
            [(values[:, plus] - values[:, minus]) @ w for minus, plus, w in _TERMS], axis=1
        ),
        occlusion=values[:, full : full + 1] - values[:, without_one],
        logit_full=values[:, full].copy(),
        logit_none=values[:, 0].copy(),
    )
