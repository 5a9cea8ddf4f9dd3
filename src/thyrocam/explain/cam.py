"""Class activation maps from activation-only gradients, safe on a shared model.

Why not ``pytorch-grad-cam``'s mechanics: it runs a full ``backward()`` that
fills every parameter's ``.grad`` (3-4x a forward pass on CPU) and keeps the
captured activations on the engine object, so threads sharing one model read
each other's tensors. Here:

* the forward runs under ``no_grad`` until the first target layer; there a
  forward hook, registered for the duration of one call and answering only the
  calling thread, returns ``output.detach().requires_grad_()`` (a leaf) and
  switches grad mode on, so only the layers after it record a graph;
* ``torch.autograd.grad(score, activation)`` computes exactly the gradient the
  map needs — no parameter ``.grad`` is ever written, frozen parameters and an
  outer ``torch.no_grad()`` do not matter;
* hooks are removed in ``finally``; train/eval mode is restored.

The cost is about one forward pass (see ``benchmarks/explain_vs_predict.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thyrocam.errors import InputError, check_choice

__all__ = [
    "CamResult",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "get_cam_class",
]

Target = Literal["malignant", "benign"]
TARGETS = ("malignant", "benign")

# Switching a shared model to eval mode and back is not thread-safe; the rare
# call that finds the model in training mode takes this lock for its duration.
_MODE_LOCK = threading.Lock()


@dataclass(frozen=True)
class CamResult:
    """Everything one CAM call computed.

    Attributes:
        cam: float32 ``(B, H, W)`` in [0, 1] at the input's resolution.
        raw: float32 ``(B, h, w)`` at the (first) target layer's resolution,
            before normalisation (ReLU applied); for several layers, their fused map.
        logits: float32 ``(B, C)`` model output of the same forward pass.
        used_idx: output column each map explains, per sample.
        target: ``"malignant"`` or ``"benign"`` (the negated logit), for ``(B, 1)`` outputs.
        all_zero: per sample, True where the map had no positive evidence (reported as zeros).
    """

    cam: np.ndarray
    raw: np.ndarray
    logits: np.ndarray
    used_idx: list[int]
    target: str
    all_zero: list[bool]


class BaseCAM:
    """Owns hooks, scoring and resizing; subclasses override :meth:`cam_from`.

    Args:
        model: the network; ``model(x)`` or ``model(x, clinical)`` must return
            logits ``(B, 1)`` (binary) or ``(B, C)``. May later be replaced by a
            one-input proxy (``engine.model = lambda x: net(x, clin)``).
        target_layer: a module inside ``model`` (or a sequence of modules: their
            maps are resized to the input, averaged and renormalised).

    Example:
        >>> with GradCAM(model, model.cnn.layer4[-1].conv2) as engine:
        ...     cam, used_idx = engine(x)              # x: (1, 3, H, W); cam: (H, W)
    """

    def __init__(
        self, model: Callable[..., torch.Tensor], target_layer: nn.Module | Sequence[nn.Module]
    ) -> None:
        self.model = model
        if isinstance(target_layer, nn.Module):
            self.target_layers: list[nn.Module] = [target_layer]
        else:
            self.target_layers = list(target_layer)
        if not self.target_layers:
            raise InputError(
                "target_layer: got an empty list; allowed: one or more modules",
                field="target_layer",
                value=[],
                allowed="nn.Module",
            )

    # -- the one method each CAM variant overrides ---------------------------------
    def cam_from(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """``activations, grads (B, K, h, w)`` -> map ``(B, h, w)`` before ReLU."""
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------
    def __call__(
        self,
        x: torch.Tensor,
        class_idx: int | None = None,
        *,
        clinical: torch.Tensor | np.ndarray | None = None,
        target: Target = "malignant",
    ) -> tuple[np.ndarray, int | list[int]]:
        """Compute the map(s).

        Args:
            x: ``(B, 3, H, W)`` or ``(3, H, W)`` input.
            class_idx: for ``(B, C>1)`` outputs the column to explain (default: argmax).
            clinical: ``(B, D)`` or ``(D,)`` descriptor vector passed as the model's
                second input, so the gradient is taken in the prediction's context.
            target: for ``(B, 1)`` outputs, ``"malignant"`` explains the logit,
                ``"benign"`` its negation.

        Returns:
            ``(cam, used_idx)``: ``cam`` float32 ``(H, W)`` in [0, 1] for one
            image (``(B, H, W)`` for a batch); ``used_idx`` an int (a list for a batch).
        """
        single = x.dim() == 3 or x.shape[0] == 1
        res = self.compute(x, class_idx=class_idx, clinical=clinical, target=target)
        if single:
            return res.cam[0], res.used_idx[0]
        return res.cam, res.used_idx

    def compute(
        self,
        x: torch.Tensor,
        *,
        class_idx: int | None = None,
        clinical: torch.Tensor | np.ndarray | None = None,
        target: Target = "malignant",
    ) -> CamResult:
        """Like ``__call__`` but returns a :class:`CamResult` (maps, raw grid, logits)."""
        check_choice(target, field="target", allowed=TARGETS)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise InputError(
                f"x: got shape {tuple(x.shape)}; allowed: (B, 3, H, W) or (3, H, W)",
                field="x",
                value=tuple(x.shape),
                allowed="(B, 3, H, W)",
            )
        clin = _as_clinical(clinical, batch=x.shape[0], like=x)
        module = self.model if isinstance(self.model, nn.Module) else None
        if module is not None and module.training:
            with _MODE_LOCK:
                module.eval()
                try:
                    return self._compute(x, clin, class_idx, target)
                finally:
                    module.train()
        return self._compute(x, clin, class_idx, target)

    def remove_hooks(self) -> None:
        """Kept for the seed's API: hooks live only for the duration of each call."""

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_hooks()

    # -- mechanics ---------------------------------------------------------------------
    def _compute(
        self, x: torch.Tensor, clin: torch.Tensor | None, class_idx: int | None, target: str
    ) -> CamResult:
        captured: list[torch.Tensor | None] = [None] * len(self.target_layers)
        caller = threading.get_ident()

        def make_hook(i: int) -> Callable:
            def hook(
                _module: nn.Module, _inputs: object, output: torch.Tensor
            ) -> torch.Tensor | None:
                # Other threads run the same shared modules concurrently; only the
                # call that registered this hook may capture and replace the output.
                if threading.get_ident() != caller:
                    return None
                if output.requires_grad:
                    # Downstream of an earlier target layer, already on its graph: keep
                    # it, so that layer's gradient still flows through this one, as a
                    # full backward() would give.
                    captured[i] = output
                    return None
                leaf = output.detach().requires_grad_(True)
                captured[i] = leaf
                # The forward runs under no_grad up to here: the graph starts at the
                # first target layer, so the layers before it record nothing (the
                # map needs no gradient below it). Grad mode is thread-local, and
                # the enclosing no_grad block restores it on exit.
                torch.set_grad_enabled(True)
                return leaf

            return hook

        handles = [
            layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(self.target_layers)
        ]
        try:
            with torch.no_grad():  # grad is switched on at the first target layer (hook)
                out = self.model(x) if clin is None else self.model(x, clin)
                if out.dim() == 1:
                    out = out.unsqueeze(1)
                scores, used = _select_scores(out, class_idx, target)
                missing = [i for i, a in enumerate(captured) if a is None]
                if missing:
                    raise RuntimeError(
                        f"target layer {missing[0]} did not run in the forward pass; "
                        "is it a module of this model?"
                    )
                acts = [a for a in captured if a is not None]
                grads = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        size = (x.shape[-2], x.shape[-1])
        with torch.no_grad():
            per_layer = []
            raws = []
            for act, grad in zip(acts, grads, strict=True):
                grad = torch.zeros_like(act) if grad is None else grad
                # float32 even under CUDA autocast: bf16 sums over 512 channels lose
                # the small differences the map is made of (a no-op for float32 inputs).
                raw = F.relu(self.cam_from(act.detach().float(), grad.detach().float()))
                raws.append(raw)
                per_layer.append(_resize(_minmax(raw), size))
            # As pytorch-grad-cam aggregates: the mean of the per-layer maps,
            # renormalised after resizing (bilinear upsampling lowers the peak).
            cam = _minmax(torch.stack(per_layer).mean(0))
            raw = raws[0] if len(raws) == 1 else cam
        flat = raw.flatten(1)
        all_zero = (flat.max(1).values - flat.min(1).values <= 0).tolist()
        return CamResult(
            cam=cam.cpu().numpy().astype(np.float32),
            raw=raw.cpu().numpy().astype(np.float32),
            logits=out.detach().float().cpu().numpy(),
            used_idx=used,
            target=target,
            all_zero=all_zero,
        )


def _as_clinical(
    clinical: torch.Tensor | np.ndarray | None, *, batch: int, like: torch.Tensor
) -> torch.Tensor | None:
    if clinical is None:
        return None
    clin = torch.as_tensor(clinical, dtype=torch.float32, device=like.device)
    if clin.dim() == 1:
        clin = clin.unsqueeze(0)
    if clin.shape[0] == 1 and batch > 1:
        clin = clin.expand(batch, -1)
    return clin


def _select_scores(
    out: torch.Tensor, class_idx: int | None, target: str
) -> tuple[torch.Tensor, list[int]]:
    batch, classes = out.shape
    if classes == 1:
        if class_idx not in (None, 0):
            raise InputError(
                f"class_idx: got {class_idx!r} for a one-logit output; allowed: None or 0 "
                "(use target='benign' for evidence against malignancy)",
                field="class_idx",
                value=class_idx,
                allowed=(None, 0),
            )
        score = out[:, 0]
        return (-score if target == "benign" else score), [0] * batch
    if class_idx is None:
        idx = out.argmax(dim=1)
    else:
        if not 0 <= int(class_idx) < classes:
            raise InputError(
                f"class_idx: got {class_idx!r}; allowed: 0..{classes - 1}",
                field="class_idx",
                value=class_idx,
                allowed=f"0..{classes - 1}",
            )
        idx = torch.full((batch,), int(class_idx), dtype=torch.long, device=out.device)
    return out.gather(1, idx[:, None])[:, 0], idx.tolist()


def _minmax(cam: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max to [0, 1]; a constant map becomes all zeros, never NaN."""
    flat = cam.flatten(1)
    lo = flat.min(1).values.view(-1, *([1] * (cam.dim() - 1)))
    hi = flat.max(1).values.view(-1, *([1] * (cam.dim() - 1)))
    span = hi - lo
    return torch.where(span > 0, (cam - lo) / span.clamp_min(1e-12), torch.zeros_like(cam))


def _resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)`` -> ``(B, H, W)``, bilinear with half-pixel centres (as cv2.resize)."""
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


class GradCAM(BaseCAM):
    """Grad-CAM: channel weights = spatial mean of the score's gradient.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017.

    See also: :class:`GradCAMPlusPlus`, :class:`HiResCAM`, :class:`LayerCAM`.
    """

    def cam_from(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(dim=1)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: weights from higher-order gradient terms, better for several instances.

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018. (Second/third-order terms approximated by
    powers of the first-order gradient, as in the paper's exponential-output
    derivation and in pytorch-grad-cam.)
    """

    def cam_from(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_act = activations.sum(dim=(2, 3), keepdim=True)
        eps = 1e-6
        aij = g2 / (2 * g2 + sum_act * g3 + eps)
        aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
        weights = (grads.clamp_min(0) * aij).sum(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(dim=1)


class HiResCAM(BaseCAM):
    """HiResCAM: element-wise gradient x activation, summed over channels.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks", arXiv:2011.08891, 2020.
    """

    def cam_from(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * activations).sum(dim=1)


class LayerCAM(BaseCAM):
    """LayerCAM: positive gradients weight each location; works on shallow layers too.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021. Pass several layers (e.g. the last blocks of
    ``layer2``-``layer4``) to fuse coarse and fine maps.
    """

    def cam_from(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads.clamp_min(0) * activations).sum(dim=1)


def get_cam_class(method: str) -> type[BaseCAM]:
    """A method name (any spelling :mod:`thyrocam.explain.methods` accepts) -> its class."""
    from thyrocam.explain.methods import get_method  # the table imports the classes above

    return get_method(method).cam_class
