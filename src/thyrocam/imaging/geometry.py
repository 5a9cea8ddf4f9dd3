"""Boxes and nodule outlines in frame pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from thyrocam.errors import InputError

__all__ = [
    "Box",
    "box_iou",
    "polygons_to_mask",
    "polygons_bbox",
    "nodule_box",
    "outline_boxes",
    "outlines_by_area",
    "parse_box",
    "check_box",
]

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in frame pixels


def check_box(box: Sequence[float], frame_size: tuple[int, int], *, field: str = "roi") -> Box:
    """Validate a box against a ``(W, H)`` frame: ordered, finite, overlapping the frame."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(
            f"{field}: got {box!r}; allowed: four numbers x0, y0, x1, y1 in frame pixels",
            field=field,
            value=box,
            allowed="x0,y0,x1,y1",
        ) from None
    width, height = frame_size
    finite = all(math.isfinite(v) for v in (x0, y0, x1, y1))
    if not finite or x1 <= x0 or y1 <= y0 or x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InputError(
            f"{field}: got {box!r}; allowed: x0 < x1, y0 < y1, "
            f"overlapping the {width}x{height} frame",
            field=field,
            value=box,
            allowed=f"a box overlapping the {width}x{height} frame",
        )
    return (x0, y0, x1, y1)


def parse_box(text: str | Sequence[float] | None) -> Box | None:
    """``"x0,y0,x1,y1"`` (or a sequence of four numbers) -> a box; ``None``/``""`` -> ``None``."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(
            f"roi: got {text!r}; allowed: four numbers 'x0,y0,x1,y1' in frame pixels",
            field="roi",
            value=text,
            allowed="x0,y0,x1,y1",
        )
    return values  # type: ignore[return-value]


def polygons_to_mask(
    polygons: Sequence[Sequence[tuple[float, float]]], *, size: tuple[int, int]
) -> np.ndarray:
    """Rasterise nodule outlines into a boolean ``(H, W)`` mask (``size`` is ``(W, H)``)."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for poly in polygons:
        if len(poly) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in poly], fill=1, outline=1)
    return np.asarray(mask, dtype=bool)


def polygons_bbox(polygons: Sequence[Sequence[tuple[float, float]]]) -> Box | None:
    """Bounding box ``(x0, y0, x1, y1)`` around all points, or ``None`` without points."""
    points = [p for poly in polygons for p in poly]
    if not points:
        return None
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def _polygon_area(poly: Sequence[tuple[float, float]]) -> float:
    xs = np.array([float(p[0]) for p in poly])
    ys = np.array([float(p[1]) for p in poly])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def outlines_by_area(
    polygons: Sequence[Sequence[tuple[float, float]]],
) -> list[Sequence[tuple[float, float]]]:
    """The outlines (polygons of >= 3 points), the largest by area first (ties keep their order)."""
    return sorted((p for p in polygons if len(p) >= 3), key=_polygon_area, reverse=True)


def outline_boxes(polygons: Sequence[Sequence[tuple[float, float]]]) -> list[Box]:
    """The box of each outline (a polygon of >= 3 points), the largest outline first
    (by area; ties keep their order)."""
    return [polygons_bbox([p]) for p in outlines_by_area(polygons)]  # type: ignore[misc]


def nodule_box(polygons: Sequence[Sequence[tuple[float, float]]]) -> Box | None:
    """The box around the largest outline: the region of interest of one view.

    A two-panel DDTI frame outlines the same nodule once per panel; a box around
    every outline would span both panels and shrink the nodule in the crop.
    """
    boxes = outline_boxes(polygons)
    return boxes[0] if boxes else polygons_bbox(polygons)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
