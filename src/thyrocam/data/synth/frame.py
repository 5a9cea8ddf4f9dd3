"""One B-mode frame: its panels rendered from the true features, then the marks burnt in."""

from __future__ import annotations

import numpy as np
from PIL import Image

from thyrocam.data.synth.anatomy import anatomy, speckle_gray
from thyrocam.data.synth.cases import NoduleFeatures, SynthConfig
from thyrocam.data.synth.marks import (
    Layout,
    Panel,
    annotate,
    draw_calipers,
    draw_layout,
    draw_marks,
)
from thyrocam.data.synth.nodule import nodule_radii, render_nodule

__all__ = ["render_case"]


def _render_panel(
    rng: np.random.Generator,
    layout: Layout,
    panel: Panel,
    features: NoduleFeatures,
    w: int,
    h: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One panel as display gray levels (h, w) in [0, 255] and its nodule outline (n, 2)."""
    px_per_mm = h / layout.depth_mm
    radii = nodule_radii(rng, features, px_per_mm, w, h)
    maps = anatomy(rng, h, w, px_per_mm, panel, *radii)
    outline, nodule = render_nodule(rng, features, maps, radii, px_per_mm)
    return speckle_gray(rng, layout, maps, nodule, px_per_mm), outline


def render_case(
    rng: np.random.Generator, *, features: NoduleFeatures, config: SynthConfig
) -> tuple[Image.Image, list[list[tuple[int, int]]]]:
    """Render one B-mode frame showing a nodule with the given true features.

    The burnt-in marks (and whether the frame has two panels or calipers) are drawn
    from ``rng`` before the features are looked at, so they never depend on them.

    Args:
        rng: the random source (consumed).
        features: the nodule's true features.
        config: frame size and mark rates.

    Returns:
        ``(image, polygons)``: an RGB image (``config.width`` x ``config.height``)
        with grayscale content, and one nodule outline per panel as (x, y) pixels.
    """
    W, H = config.width, config.height
    layout = draw_layout(rng, config)
    x0, y0, fw, fh = layout.field
    canvas = np.zeros((H, W), dtype=np.float32)
    panel_w = fw // 2 if layout.two_panel else fw
    outlines: list[tuple[np.ndarray, int, bool]] = []
    first, outline = _render_panel(rng, layout, layout.panels[0], features, panel_w, fh)
    canvas[y0 : y0 + fh, x0 : x0 + panel_w] = first
    outlines.append((outline, x0, layout.panels[0].calipers))
    if layout.two_panel:
        if layout.same_view_twice:
            second = first
        else:
            second, outline = _render_panel(rng, layout, layout.panels[1], features, panel_w, fh)
        canvas[y0 : y0 + fh, x0 + panel_w : x0 + 2 * panel_w] = second
        outlines.append((outline, x0 + panel_w, layout.panels[1].calipers))
    img = Image.fromarray(np.rint(canvas).astype(np.uint8), "L").convert("RGB")
    draw_marks(img, layout, W, H)
    polygons = []
    for outline, dx, calipers in outlines:
        if calipers:
            draw_calipers(img, rng, outline, dx, H)
        polygons.append(annotate(rng, outline, dx, W, H))
    return img, polygons
