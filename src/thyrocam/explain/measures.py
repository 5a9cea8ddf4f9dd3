"""Measures of an explanation: does the map point at the nodule, and does the model use it?

Localisation (against the nodule outline, at the frame's resolution):

* :func:`pointing_game` — is the map's maximum on the nodule (within a tolerance)?
  Zhang et al., "Top-down Neural Attention by Excitation Backprop", IJCV 2018.
* :func:`energy_in_mask` — the share of the map's mass inside the outline
  ("energy-based pointing game"); Wang et al., "Score-CAM", CVPR-W 2020.

Faithfulness (against the model itself):

* :func:`deletion_insertion` — the probability as input pixels are replaced by a
  blurred copy (deletion) or restored from it (insertion) in the map's order;
  Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box
  Models", BMVC 2018.
* :func:`randomized_copy` + :func:`randomization_check` — the map of a model
  whose top layers are re-initialised should look different; Adebayo et al.,
  "Sanity Checks for Saliency Maps", NeurIPS 2018.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from thyrocam.errors import InputError

__all__ = [
    "POINTING_TOLERANCE",
    "RANDOMIZATION_THRESHOLD",
    "DELETION_STEPS",
    "BLUR_SIGMA_DIVISOR",
    "RANDOMIZED_MODULES",
    "DeletionInsertion",
    "pointing_game",
    "cam_peak",
    "energy_in_mask",
    "deletion_insertion",
    "randomized_copy",
    "spearman",
    "randomization_check",
    "random_map",
    "centre_map",
]

# Zhang et al.'s tolerance: a hit within 15 px of the object still counts, so a
# peak on the nodule's edge (where margins and halos are judged) is not a miss.
POINTING_TOLERANCE = 15.0
# A map that still correlates above this with the randomised model's map did not
# depend on the learned weights enough to pass the check.
RANDOMIZATION_THRESHOLD = 0.5
# Deletion/insertion: equal steps from no pixel to all of them (Petsiuk et al. use
# finer steps; 16 keeps one image's curves to one batch of 34 inputs).
DELETION_STEPS = 16
# The deletion baseline's Gaussian sigma is the input side over this (7 px at 224):
# wide enough to erase margins and calcifications, narrow enough to keep the layout.
BLUR_SIGMA_DIVISOR = 32
# The cascade step re-initialised by the randomisation check: layer4 (the usual CAM
# layer) and everything above it.
RANDOMIZED_MODULES = ("head", "img_proj", "clin_net", "cnn.layer4")


def _check_pair(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if cam.ndim != 2 or cam.shape != mask.shape:
        raise InputError(
            f"cam and mask: got shapes {cam.shape} and {mask.shape}; allowed: the same (H, W)",
            field="mask",
            value=mask.shape,
            allowed=cam.shape,
        )
    return cam, mask


def cam_peak(cam: np.ndarray) -> tuple[float, float] | None:
    """``(x, y)`` of the map's maximum (centroid of tied maxima); ``None`` for a flat map."""
    cam = np.asarray(cam, dtype=np.float64)
    hi, lo = cam.max(), cam.min()
    if not hi > lo:
        return None
    ys, xs = np.nonzero(cam >= hi - 1e-9 * max(abs(hi), 1.0))
    return float(xs.mean()), float(ys.mean())


def pointing_game(
    cam: np.ndarray, mask: np.ndarray, *, tolerance: float = POINTING_TOLERANCE
) -> bool:
    """True when the map's maximum lies within ``tolerance`` pixels of the mask.

    Args:
        cam: ``(H, W)`` map on the frame (``FrameMapping.cam_to_frame``).
        mask: ``(H, W)`` bool nodule mask (``polygons_to_mask``).
        tolerance: distance in pixels that still counts as a hit.

    A flat map (no evidence) is a miss; an empty mask cannot be hit.
    """
    cam, mask = _check_pair(cam, mask)
    peak = cam_peak(cam)
    if peak is None or not mask.any():
        return False
    ys, xs = np.nonzero(mask)
    dist2 = (xs - peak[0]) ** 2 + (ys - peak[1]) ** 2
    return bool(dist2.min() <= tolerance**2)


def energy_in_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass inside the mask, in [0, 1] (0 for an all-zero map).

    A map spread evenly over what the network saw scores the mask's share of
    that area; compare with :func:`random_map`'s score for the chance level.
    """
    cam, mask = _check_pair(cam, mask)
    cam = np.clip(cam, 0.0, None)
    total = cam.sum()
    return float(cam[mask].sum() / total) if total > 0 else 0.0


@dataclass(frozen=True)
class DeletionInsertion:
    """Probability curves as pixels are removed / added in the map's order.

    Attributes:
        fractions: ``(steps + 1,)`` share of pixels removed (deletion) or added (insertion).
        deletion: ``(steps + 1,)`` P(target) as the top-ranked pixels are blurred away.
        insertion: ``(steps + 1,)`` P(target) as they are restored onto the blurred image.
        deletion_auc: area under ``deletion`` (lower: the map found what the model uses).
        insertion_auc: area under ``insertion`` (higher is better).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float


def _auc(xs: np.ndarray, ys: np.ndarray) -> float:
    return float(((ys[1:] + ys[:-1]) / 2.0 * np.diff(xs)).sum())


@torch.no_grad()
def deletion_insertion(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    cam: np.ndarray,
    *,
    clinical: torch.Tensor | None = None,
    target: str = "malignant",
    steps: int = DELETION_STEPS,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk et al. 2018) for one input.

    The removed pixels are replaced by a Gaussian-blurred copy of the input, not
    by black: in ultrasound a black patch is itself a finding (an anechoic,
    cyst-like area) and would push the benign class, while blur removes texture,
    margins and calcifications without adding a structure. Pixels of equal map
    value are taken in a fixed random order, so the flat (zero) part of a map
    counts as a random ordering rather than a raster scan.

    Args:
        model: ``model(x, clinical)`` (or ``model(x)``) returning logits ``(B, 1)``.
        x: ``(1, 3, S, S)`` or ``(3, S, S)`` preprocessed input.
        cam: ``(S, S)`` map over the input (``Explanation.cam``).
        clinical: ``(1, D)`` descriptors kept fixed while pixels change.
        target: ``"malignant"`` (P = sigmoid(logit)) or ``"benign"`` (1 - P).
        steps: number of equal steps from 0 to all pixels.
        blur_sigma: Gaussian sigma in input pixels; default side / ``BLUR_SIGMA_DIVISOR``.
        seed: order among pixels of equal map value.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    size = tuple(x.shape[-2:])
    cam = _check_curve_args(cam, target=target, steps=steps, size=size)
    sigma = float(blur_sigma) if blur_sigma is not None else max(size) / BLUR_SIGMA_DIVISOR
    kernel = 2 * int(np.ceil(3.0 * sigma)) + 1
    kernel = min(kernel, 2 * ((min(size) - 1) // 2) + 1)
    blurred = gaussian_blur(x, [kernel, kernel], [sigma, sigma])

    top, counts = _ranked_masks(cam, steps=steps, seed=seed)
    top = top.to(device=x.device, dtype=x.dtype)
    deleted = x * (1 - top) + blurred * top
    inserted = blurred * (1 - top) + x * top
    batch = torch.cat([deleted, inserted])
    if clinical is None:
        logits = model(batch)
    else:
        logits = model(batch, clinical.expand(len(batch), -1))
    logits = logits.reshape(len(batch), -1)[:, 0].double()
    probs = torch.sigmoid(logits if target == "malignant" else -logits).cpu().numpy()
    fractions = counts / cam.size
    deletion, insertion = probs[: steps + 1], probs[steps + 1 :]
    return DeletionInsertion(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=_auc(fractions, deletion),
        insertion_auc=_auc(fractions, insertion),
    )


def _check_curve_args(
    cam: np.ndarray, *, target: str, steps: int, size: tuple[int, int]
) -> np.ndarray:
    """Validate :func:`deletion_insertion`'s arguments; the map as float64 ``(H, W)``."""
    if target not in ("malignant", "benign"):
        raise InputError(
            f"target: got {target!r}; allowed: malignant, benign",
            field="target",
            value=target,
            allowed=("malignant", "benign"),
        )
    if not isinstance(steps, int) or steps < 1:
        raise InputError(
            f"steps: got {steps!r}; allowed: an integer >= 1",
            field="steps",
            value=steps,
            allowed=">= 1",
        )
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != tuple(size):
        raise InputError(
            f"cam: got shape {cam.shape}; allowed: the input's {tuple(size)}",
            field="cam",
            value=cam.shape,
            allowed=tuple(size),
        )
    return cam


def _ranked_masks(cam: np.ndarray, *, steps: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``top[k]``: the first ``counts[k]`` pixels in the map's order, ``(steps+1, 1, H, W)``.

    Ties (the flat part of a map) are broken in a fixed random order.
    """
    n = cam.size
    tiebreak = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tiebreak, -cam.ravel()))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    counts = np.round(np.linspace(0, n, steps + 1)).astype(np.int64)
    top = torch.from_numpy(rank.reshape(1, 1, *cam.shape) < counts[:, None, None, None])
    return top, counts


def randomized_copy(
    model: nn.Module,
    *,
    seed: int = 0,
    modules: tuple[str, ...] = RANDOMIZED_MODULES,
) -> nn.Module:
    """A copy of ``model`` with the named sub-modules re-initialised (cascading randomisation).

    Adebayo et al. re-initialise from the top layer down; re-initialising
    ``layer4`` through the head is the cascade's step at the usual CAM layer.
    Every sub-module with a ``reset_parameters`` method (convolutions, linear
    layers, batch norms and their running statistics) is reset.

    Args:
        model: the trained network (left untouched).
        seed: the re-initialisation seed.
        modules: dotted names of the sub-modules to re-initialise.
    """
    clone = copy.deepcopy(model)
    names = dict(clone.named_modules())
    # "" names the whole model in named_modules(): that is not a cascade step.
    unknown = [m for m in modules if not m or m not in names]
    if unknown:
        raise InputError(
            f"modules: got {unknown[0]!r}; allowed: sub-module names such as "
            "head, img_proj, cnn.layer4",
            field="modules",
            value=unknown[0],
            allowed="names from model.named_modules()",
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in modules:
            for sub in names[name].modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
    return clone.eval()


def _average_ranks(a: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    # Tied values share the mean of the ranks they occupy.
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of equal shape (ties get average ranks).

    Returns NaN when either map is constant (the correlation is undefined).
    """
    ra = _average_ranks(np.asarray(a, dtype=np.float64).ravel())
    rb = _average_ranks(np.asarray(b, dtype=np.float64).ravel())
    if ra.shape != rb.shape:
        raise InputError(
            f"maps: got {np.shape(a)} and {np.shape(b)}; allowed: equal shapes",
            field="maps",
            value=(np.shape(a), np.shape(b)),
            allowed="equal shapes",
        )
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def randomization_check(
    cam: np.ndarray, cam_randomized: np.ndarray, *, threshold: float = RANDOMIZATION_THRESHOLD
) -> tuple[float, bool]:
    """Compare the trained model's map with the randomised model's map.

    Returns:
        ``(rho, passed)``: the Spearman correlation and whether it is below
        ``threshold``. When one map is constant the correlation is undefined
        (``rho`` NaN); that passes only if the trained map is not constant.
    """
    rho = spearman(cam, cam_randomized)
    if np.isnan(rho):
        trained = np.asarray(cam)
        return rho, bool(trained.max() > trained.min())
    return rho, bool(rho < threshold)


def random_map(
    shape: tuple[int, int], *, grid: tuple[int, int] = (5, 5), seed: int = 0
) -> np.ndarray:
    """A smooth random map in [0, 1], ``shape (H, W)``: the chance level for the measures.

    Uniform noise on a coarse ``grid`` (like a CAM's layer resolution), upsampled
    bilinearly, so it is as smooth as a real map.
    """
    coarse = torch.from_numpy(np.random.default_rng(seed).random(grid, dtype=np.float64))
    fine = torch.nn.functional.interpolate(
        coarse[None, None].float(), size=shape, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    lo, hi = fine.min(), fine.max()
    return ((fine - lo) / (hi - lo)).astype(np.float32)


def centre_map(shape: tuple[int, int], *, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian at the input's centre, ``shape (H, W)``, in [0, 1]: the centre-bias baseline.

    In ``roi`` runs the nodule sits at the centre of every input, so a map that
    ignores the image and peaks at the centre already "finds" the nodule; a CAM
    method earns its localisation only where it beats this map.

    Args:
        shape: ``(H, W)``.
        sigma: standard deviation as a fraction of each side.
    """
    height, width = shape
    ys = (np.arange(height) + 0.5 - height / 2.0) / (sigma * height)
    xs = (np.arange(width) + 0.5 - width / 2.0) / (sigma * width)
    blob = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return ((blob - blob.min()) / (blob.max() - blob.min())).astype(np.float32)
