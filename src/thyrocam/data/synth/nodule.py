"""The nodule, drawn into a panel's anatomy from its true features.

Composition sets how much of it is fluid and how that fluid is arranged,
echogenicity the level of its solid part, margins the outline (and a halo or a
blurred edge), calcifications the bright foci and their shadows, and
taller-than-wide and size its radii.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from thyrocam.data.synth.anatomy import FLUID, FLUID_ATTENUATION, Anatomy
from thyrocam.data.synth.cases import NoduleFeatures, known, per_value
from thyrocam.data.synth.raster import blur, mask_polygon, smooth_fields, window

__all__ = ["nodule_radii", "render_nodule"]

# Scatter amplitude of the solid part relative to the parenchyma (1.0); the strap
# muscles sit at 0.32, and "marked" hypoechogenicity goes below them.
_SOLID_LEVEL = per_value(
    "echogenicity",
    {
        "hyperechogenicity": 1.7,
        "isoechogenicity": 0.95,
        "hypoechogenicity": 0.42,
        "marked hypoechogenicity": 0.17,
    },
)
# Share of the nodule's interior that is fluid, by composition (low, high).
_FLUID_SHARE = per_value(
    "composition",
    {
        "cystic": (0.85, 0.95),
        "predominantly cystic": (0.55, 0.75),
        "spongiform": (0.35, 0.5),
        "predominantly solid": (0.1, 0.3),
        "solid": (0.0, 0.0),
        "dense": (0.0, 0.0),
    },
)
_CALC_DB = 10.0  # under a coarse calcification: a clear but not black shadow

_CYSTIC, _MOSTLY_CYSTIC, _SPONGIFORM, _DENSE = known(
    "composition", "cystic", "predominantly cystic", "spongiform", "dense"
)
_ISO = known("echogenicity", "isoechogenicity")[0]
_SMOOTH, _DEFINED, _ILL, _MACRO, _MICRO, _SPICULATED = known(
    "margins",
    "well defined smooth",
    "well defined",
    "ill defined",
    "macrolobulated",
    "microlobulated",
    "spiculated",
)
# A thin dark rim (halo) is common around smooth, well-defined nodules.
_HALO_P = {_SMOOTH: 0.75, _DEFINED: 0.45}
_MICROCALCIFICATIONS, _MACROCALCIFICATIONS = known(
    "calcifications", "microcalcifications", "macrocalcifications"
)


def _outline(
    rng: np.random.Generator, margins: str, rx: float, ry: float, n: int = 360
) -> np.ndarray:
    """Nodule outline (n, 2) in pixels around (0, 0); the margin type shapes it."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3):
        r += rng.uniform(0.02, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if margins == _DEFINED:
        r += rng.uniform(0.02, 0.04) * np.cos(5 * theta + rng.uniform(0, 2 * np.pi))
    elif margins == _ILL:
        for k in (5, 7, 9):
            r += rng.uniform(0.02, 0.04) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    elif margins == _MACRO:
        k = int(rng.integers(3, 6))
        r += rng.uniform(0.14, 0.22) * np.abs(np.cos(k * theta / 2 + rng.uniform(0, np.pi)))
    elif margins == _MICRO:
        k = int(rng.integers(10, 17))
        r += rng.uniform(0.06, 0.09) * np.abs(np.cos(k * theta / 2 + rng.uniform(0, np.pi)))
        r += 0.03 * np.cos(7 * theta + rng.uniform(0, 2 * np.pi))
    elif margins == _SPICULATED:
        for c in rng.uniform(0, 2 * np.pi, size=int(rng.integers(9, 15))):
            d = np.angle(np.exp(1j * (theta - c)))
            r += rng.uniform(0.15, 0.32) * np.exp(-((d / rng.uniform(0.04, 0.07)) ** 2))
        r += 0.04 * np.cos(6 * theta + rng.uniform(0, 2 * np.pi))
    # Keep the drawn size: spikes and lobes stick out of the same body.
    r /= np.percentile(r, 70)
    return np.stack([rx * r * np.cos(theta), ry * r * np.sin(theta)], axis=1)


def _ellipses(
    rng: np.random.Generator,
    h: int,
    w: int,
    inside: np.ndarray,
    count: int,
    radius: tuple[float, float],
) -> np.ndarray:
    """Mask (h, w) of `count` small ellipses whose centres fall where `inside` > 0.5."""
    ys, xs = np.nonzero(inside > 0.5)
    img = Image.new("L", (w, h), 0)
    if len(xs):
        draw = ImageDraw.Draw(img)
        for i in rng.integers(len(xs), size=count):
            rx = rng.uniform(*radius)
            ry = rx * rng.uniform(0.5, 0.9)
            cx, cy = float(xs[i]), float(ys[i])
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def nodule_radii(
    rng: np.random.Generator, features: NoduleFeatures, px_per_mm: float, w: int, h: int
) -> tuple[float, float]:
    """Half width and half depth of the nodule in a ``(h, w)`` panel, pixels."""
    half = 0.5 * features.size_mm * px_per_mm
    if features.taller_than_wide:
        ry, rx = half, half / rng.uniform(1.15, 1.45)
    else:
        rx, ry = half, half * rng.uniform(0.6, 0.88)
    # A nodule bigger than the field is drawn at the field's size, as a scanner crops it.
    scale = min(1.0, (0.4 * w) / rx, (0.3 * h) / ry)
    return rx * scale, ry * scale


def _centre(
    rng: np.random.Generator, anatomy: Anatomy, radii: tuple[float, float], mm: float
) -> tuple[float, float]:
    """Where in the lobe the nodule sits, kept inside the panel with room for spikes."""
    h, w = anatomy.echo.shape
    cx, cy, lrx, lry = anatomy.lobe
    rx, ry = radii
    nx = cx + rng.uniform(-1, 1) * max(0.0, lrx - rx - 1.5 * mm) * 0.8
    ny = cy + rng.uniform(-1, 1) * max(0.0, lry - ry - 1.5 * mm) * 0.7
    reach = 1.35  # spikes and lobes reach beyond the body radius
    nx = float(np.clip(nx, reach * rx + 4, w - reach * rx - 4))
    ny = float(np.clip(ny, reach * ry + 4, h - reach * ry - 4))
    return nx, ny


def _fluid(
    rng: np.random.Generator,
    composition: str,
    inner: np.ndarray,
    centre: tuple[float, float],
    radii: tuple[float, float],
    share: float,
) -> np.ndarray:
    """The fluid part (h, w) in [0, 1] of the nodule's interior ``inner``, before blurring."""
    h, w = inner.shape
    (nx, ny), (rx, ry) = centre, radii
    small = min(rx, ry)
    area = float(inner.sum())
    fluid = np.zeros((h, w), dtype=np.float32)
    if composition == _CYSTIC:
        fluid = inner
    elif composition == _MOSTLY_CYSTIC:
        # Fluid with one or two solid mural components attached to the wall.
        n_blobs = int(rng.integers(1, 3))
        blobs = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(blobs)
        for _ in range(n_blobs):
            r = math.sqrt((1 - share) * area / (math.pi * n_blobs)) * rng.uniform(0.9, 1.2)
            angle = rng.uniform(0, 2 * np.pi)
            bx, by = nx + 0.75 * rx * math.cos(angle), ny + 0.75 * ry * math.sin(angle)
            draw.ellipse((bx - r, by - 0.8 * r, bx + r, by + 0.8 * r), fill=255)
        fluid = inner * (1 - np.asarray(blobs, dtype=np.float32) / 255.0)
    elif share > 0:
        # Spongiform: many tiny spaces; predominantly solid: a few larger ones.
        spongy = composition == _SPONGIFORM
        radius = (1.6, 3.6) if spongy else (0.18 * small, 0.4 * small)
        mean_area = math.pi * (0.5 * sum(radius)) ** 2 * 0.7
        count = max(1, int(share * area / mean_area * (1.6 if spongy else 1.0)))
        fluid = _ellipses(rng, h, w, inner, count, radius) * inner
    return fluid


def _blend(
    rng: np.random.Generator,
    features: NoduleFeatures,
    echo: np.ndarray,
    mask: np.ndarray,
    nodule_echo: np.ndarray,
) -> None:
    """Put the nodule's echo into ``echo`` (in place) with the margin's edge and halo."""
    soft = blur(mask, rng.uniform(3.0, 5.0) if features.margins == _ILL else 0.8)
    halo_p = _HALO_P.get(features.margins, 0.0)
    if features.echogenicity == _ISO or rng.random() < halo_p:
        # A thin dark rim (halo) straddling the border.
        ring = np.clip(1 - np.abs(blur(mask, rng.uniform(1.0, 1.6)) - 0.5) / 0.3, 0, 1)
        dim = 1 - rng.uniform(0.6, 0.8) * ring
        echo *= dim
        nodule_echo = nodule_echo * dim
    echo[:] = echo * (1 - soft) + nodule_echo * soft


def _macro_arcs(
    rng: np.random.Generator,
    shape: tuple[int, int],
    xs: np.ndarray,
    ys: np.ndarray,
    small: float,
) -> np.ndarray:
    """One or two coarse bright arcs (h, w) in [0, 1], caps facing the probe."""
    h, w = shape
    arcs = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(arcs)
    for _ in range(int(rng.integers(1, 3))):
        i = int(rng.integers(len(xs)))
        r = rng.uniform(0.35, 0.6) * small + 4
        # A cap facing the probe (PIL's angles run clockwise from 3 o'clock).
        span = rng.uniform(70, 140)
        start = 270 - span / 2 + rng.uniform(-20, 20)
        draw.arc(
            (xs[i] - r, ys[i] - r, xs[i] + r, ys[i] + r),
            start=start,
            end=start + span,
            fill=255,
            width=int(rng.integers(3, 6)),
        )
    # Coarse calcifications are clumps, not drawn lines: the arc breaks into brighter
    # and fainter pieces along its length.
    clumps, _ = smooth_fields(rng, h, w, 2.5, 2.0)
    pieces = np.clip(0.75 + 0.6 * clumps, 0.15, 1.4)
    return blur(np.asarray(arcs, dtype=np.float32) / 255.0, 0.8) * pieces


def _calcifications(
    rng: np.random.Generator,
    calcifications: str,
    maps: tuple[np.ndarray, np.ndarray, np.ndarray],
    solid_inside: np.ndarray,
    radii: tuple[float, float],
) -> None:
    """Bright foci in the solid part; coarse ones cast a shadow (``maps`` changed in place).

    Args:
        maps: ``(echo, attenuation, specular)`` around the nodule.
    """
    echo, attenuation, specular = maps
    rx, ry = radii
    ys, xs = np.nonzero(solid_inside > 0.5)
    if calcifications == _MICROCALCIFICATIONS and len(xs):
        count = int(rng.integers(4, 9) + (rx * ry) / 400)
        for i in rng.integers(len(xs), size=count):
            specular[ys[i], xs[i]] += rng.uniform(3.0, 6.0)
    elif calcifications == _MACROCALCIFICATIONS and len(xs):
        arc = _macro_arcs(rng, echo.shape, xs, ys, min(rx, ry))
        specular += 6.0 * arc
        echo += 5.0 * arc
        # The shadow is as deep under the arc's thin ends as under its middle, and
        # a little wider than the arc (blurred sideways only, so it starts under
        # the arc): its edges are soft on real scans.
        cover = np.clip(np.cumsum(blur(arc, (4.0, 0.0)), axis=0) / 1.5, 0, 1)
        attenuation += _CALC_DB * np.diff(cover, axis=0, prepend=0)


def render_nodule(
    rng: np.random.Generator,
    features: NoduleFeatures,
    anatomy: Anatomy,
    radii: tuple[float, float],
    px_per_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the nodule into the anatomy's maps (in place).

    Returns:
        The outline, (n, 2) pixels (x, y), and the nodule mask, (h, w) in [0, 1].
    """
    panel_shape = anatomy.echo.shape
    rx, ry = radii
    nx, ny = _centre(rng, anatomy, radii, px_per_mm)
    shape = _outline(rng, features.margins, rx, ry)
    outline = shape + (nx, ny)
    # From here on, work in a box around the nodule (views into the panel's maps):
    # nothing below reaches further than a blurred halo.
    low, high = outline.min(axis=0) - 16, outline.max(axis=0) + 16
    rows, cols = window(*panel_shape, *(low + high) / 2, *(high - low) / 2)
    echo = anatomy.echo[rows, cols]
    attenuation, specular = anatomy.attenuation[rows, cols], anatomy.specular[rows, cols]
    h, w = echo.shape
    nx, ny = nx - cols.start, ny - rows.start
    mask = mask_polygon(h, w, shape + (nx, ny))
    if features.composition in (_CYSTIC, _MOSTLY_CYSTIC):
        # Fluid keeps a smooth lining; an irregular margin belongs to the wall.
        lining = _outline(rng, _SMOOTH, 0.85 * rx, 0.85 * ry)
        inner = mask_polygon(h, w, lining + (nx, ny)) * mask
    else:
        inner = mask_polygon(h, w, shape * (1 - 2.5 / min(rx, ry)) + (nx, ny))

    heterogeneity = 0.35 if features.composition == _DENSE else 0.18
    texture, debris = smooth_fields(rng, h, w, 3.0, 2.2)
    solid = _SOLID_LEVEL[features.echogenicity] * np.exp(heterogeneity * texture)
    least, most = _FLUID_SHARE[features.composition]
    share = rng.uniform(least, most) if most > 0 else 0.0
    fluid = blur(_fluid(rng, features.composition, inner, (nx, ny), radii, share), 0.7)
    nodule_echo = solid * (1 - fluid) + FLUID * np.exp(0.8 * debris) * fluid

    _blend(rng, features, echo, mask, nodule_echo)
    if features.composition == _DENSE:
        attenuation *= 1 + 0.8 * mask
    attenuation *= 1 - (1 - FLUID_ATTENUATION) * fluid
    solid_inside = np.clip(mask - fluid, 0, 1)
    _calcifications(
        rng, features.calcifications, (echo, attenuation, specular), solid_inside, radii
    )
    panel_mask = np.zeros(panel_shape, dtype=np.float32)
    panel_mask[rows, cols] = mask
    return outline, panel_mask
