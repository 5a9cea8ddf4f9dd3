"""Blend a CAM onto a picture, in RGB, with a matplotlib colormap."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image

from thyrocam.errors import InputError

__all__ = ["overlay_cam_on_pil", "colorize_cam", "check_alpha"]


def check_alpha(alpha: float) -> None:
    """Raise ``InputError`` unless the overlay opacity ``alpha`` is in [0, 1]."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(
            f"alpha: got {alpha!r}; allowed: a number from 0 to 1",
            field="alpha",
            value=alpha,
            allowed="0..1",
        )


def colorize_cam(cam: np.ndarray, *, cmap: str = "jet") -> np.ndarray:
    """``cam (H, W)`` in [0, 1] -> uint8 RGB ``(H, W, 3)`` through a matplotlib colormap."""
    rgba = colormaps[cmap](np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay_cam_on_pil(
    img: Image.Image,
    cam: np.ndarray,
    alpha: float = 0.35,
    *,
    cmap: str = "jet",
    where: np.ndarray | None = None,
) -> Image.Image:
    """Blend ``cam`` over ``img``; the result is RGB at the image's own size.

    Args:
        img: the picture (any PIL mode; converted to RGB).
        cam: ``(h, w)`` map in [0, 1]. A map of another size is resized
            bilinearly to the image's (it must cover the same region: use
            ``FrameMapping.cam_to_frame`` to put a network-input CAM on the frame).
        alpha: heatmap opacity in [0, 1] (0 = image only, 1 = heatmap only).
        cmap: a matplotlib colormap name.
        where: optional boolean ``(H, W)``: tint only there (e.g. the part of
            the frame the network saw, ``FrameMapping.visible_mask()``).
    """
    check_alpha(alpha)
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise InputError(
            f"cam: got shape {cam.shape}; allowed: (H, W)",
            field="cam",
            value=cam.shape,
            allowed="(H, W)",
        )
    base = img.convert("RGB")
    if cam.shape != (base.height, base.width):
        cam = np.asarray(
            Image.fromarray(cam, mode="F").resize(base.size, Image.BILINEAR), dtype=np.float32
        )
    heat = colorize_cam(cam, cmap=cmap).astype(np.float32)
    weight = np.full(cam.shape + (1,), float(alpha), dtype=np.float32)
    if where is not None:
        weight *= np.asarray(where, dtype=np.float32)[..., None]
    out = (1.0 - weight) * np.asarray(base, dtype=np.float32) + weight * heat
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), mode="RGB")
