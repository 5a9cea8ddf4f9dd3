"""Plain statistics of a nodule inside its outline, at the frame's own resolution.

What a radiologist reads off the pixels, as numbers: how dark the nodule is
against its surroundings (echogenicity), how uneven it is inside (fluid parts),
its bright spots (echogenic foci), how sharp its edge is (margins). Levels are
divided by the frame's bright tissue (its 90th percentile) so gain and dynamic
range cancel.

They serve three things: ``benchmarks/synth_realism.py`` compares how visible each
descriptor is in synthetic and real frames, ``thyrocam cv`` scores a logistic
regression over them (``outline_lr``) — the line a network reading the same
outline has to beat — and ``benchmarks/outline_probe.py`` measures which outline
errors cost that regression most.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["OUTLINE_STATISTICS", "outline_statistics"]

#: The statistics :func:`outline_statistics` returns, in order.
OUTLINE_STATISTICS = (
    "surround_ratio",  # mean level inside / mean level of a 15 px ring outside
    "texture_sd",  # spread of the levels inside
    "bright_spots",  # share of inside pixels whose white top-hat (9 px) exceeds 0.6
    "bright_p99",  # 99th percentile of that top-hat inside
    "edge_gradient",  # mean gradient magnitude on the outline's rim
    "level_mean",  # mean level inside
    "level_p10",  # 10th percentile inside (fluid, dark parts)
    "level_p90",  # 90th percentile inside
)


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -F.max_pool2d(-x, k, 1, k // 2)


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, 1, k // 2)


def outline_statistics(*, gray: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """:data:`OUTLINE_STATISTICS` of one nodule.

    Args:
        gray: ``(H, W)`` gray levels in [0, 1] (the whole frame).
        mask: ``(H, W)`` bool, the nodule's outline filled.

    Returns:
        ``{name: value}`` in the order of :data:`OUTLINE_STATISTICS`.

    Raises:
        ValueError: the shapes differ or the mask is empty.
    """
    gray = np.asarray(gray, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if gray.ndim != 2 or gray.shape != mask.shape:
        raise ValueError(
            "gray, mask: expected two (H, W) arrays of one shape, "
            f"got {gray.shape} and {mask.shape}"
        )
    if not mask.any():
        raise ValueError("mask: empty; the statistics need at least one pixel inside")
    img = torch.from_numpy(gray)[None, None]
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    inner = (_erode(m, 5) > 0)[0, 0].numpy()
    if inner.sum() < 20:  # a tiny outline: keep every pixel of it
        inner = mask
    ring = ((_dilate(m, 31) - m) > 0)[0, 0].numpy()
    lit = gray[gray > 0.02]
    ref = float(np.percentile(lit, 90)) if lit.size else 1.0
    ref = max(ref, 1e-3)
    inside = gray[inner] / ref
    tophat = (img - _dilate(_erode(img, 9), 9))[0, 0].numpy()[inner] / ref
    rim = ((_dilate(m, 3) - _erode(m, 3)) > 0)[0, 0].numpy()
    if not rim.any():  # only when the outline fills the image: its edge is the border
        rim = np.ones(mask.shape, dtype=bool)
        rim[1:-1, 1:-1] = False
    gy, gx = np.gradient(gray / ref)
    around = float(gray[ring].mean()) / ref if ring.any() else float(inside.mean())
    return {
        "surround_ratio": float(inside.mean() / (around + 1e-6)),
        "texture_sd": float(inside.std()),
        "bright_spots": float((tophat > 0.6).mean()),
        "bright_p99": float(np.percentile(tophat, 99)),
        "edge_gradient": float(np.hypot(gx, gy)[rim].mean()),
        "level_mean": float(inside.mean()),
        "level_p10": float(np.percentile(inside, 10)),
        "level_p90": float(np.percentile(inside, 90)),
    }
