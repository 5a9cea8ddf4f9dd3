"""The neck in one panel, and the speckle image made from it.

:func:`anatomy` lays out an echo-amplitude map and an attenuation map (skin, fat,
strap muscles, thyroid lobe and isthmus, trachea, carotid, jugular, longus colli);
the nodule is drawn into those maps next; :func:`speckle_gray` then turns them into
speckle by a point-spread function and log-compresses it for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from thyrocam.data.synth.marks import Layout, Panel
from thyrocam.data.synth.raster import (
    band,
    blur,
    curve,
    fft_shape,
    lowpass,
    mask_polygon,
    smooth_fields,
    window,
)

__all__ = [
    "FLUID",
    "FLUID_ATTENUATION",
    "TISSUE_DB_PER_MM",
    "Anatomy",
    "anatomy",
    "speckle_gray",
]

# Scatter amplitude relative to the thyroid parenchyma (1.0). Strap muscles sit
# about 10 dB below the gland, so "marked" hypoechogenicity must go lower still.
_GLAND = 1.0
_FAT = 0.42
_MUSCLE = 0.26
_DEEP = 0.5
FLUID = 0.02
# Tissue attenuation, two-way, in dB per mm (about 0.5 dB/cm/MHz at ~10 MHz).
TISSUE_DB_PER_MM = 1.0
FLUID_ATTENUATION = 0.3  # relative to tissue: what makes posterior enhancement
_AIR_DB = 24.0  # through the tracheal wall: little comes back from below
_GLAND_GRAY = 105.0  # display level of the parenchyma before the per-frame gain
# Sideways spread of a shadow per pixel of depth (variance, px^2): about 6 px after 200 px.
_SPREAD = np.float32(0.18)


class Anatomy(NamedTuple):
    """One panel's maps, before the nodule is drawn into them (in place)."""

    echo: np.ndarray  # (h, w) diffuse scatter amplitude
    attenuation: np.ndarray  # (h, w) two-way dB per pixel
    specular: np.ndarray  # (h, w) coherent reflector amplitude
    reverberation: np.ndarray  # (h, w) artefact amplitude, not shadowed
    gland: np.ndarray  # (h, w) thyroid mask
    lobe: tuple[float, float, float, float]  # cx, cy, rx, ry of the lobe, pixels


class _Grid(NamedTuple):
    """Coordinates and shared texture of one panel."""

    x: np.ndarray  # (1, w) column index
    y: np.ndarray  # (h, 1) row index (depth)
    mm: float  # pixels per millimetre
    sign: float  # +1 when the trachea lies to the right of the lobe
    transverse: bool
    streak_a: np.ndarray  # long lateral streaks (fibres, fascia)
    streak_b: np.ndarray
    blob_a: np.ndarray  # rounder lumps (fat lobules, gland texture)
    blob_b: np.ndarray
    breakup: np.ndarray  # how bright an interface is along its length


@dataclass
class _Maps:
    """The maps being built (arrays changed in place by the structures below)."""

    echo: np.ndarray
    attenuation: np.ndarray
    specular: np.ndarray
    reverberation: np.ndarray
    gland: np.ndarray
    fluid: np.ndarray  # bool: vessel lumens
    bright: np.ndarray  # incoherent bright interfaces
    cartilage: np.ndarray  # darkening just outside the tracheal air line


def _grid(rng: np.random.Generator, h: int, w: int, mm: float, panel: Panel) -> _Grid:
    streak_a, streak_b = smooth_fields(rng, h, w, 16.0, 1.6)
    blob_a, blob_b = smooth_fields(rng, h, w, 12.0, 4.5)
    return _Grid(
        x=np.arange(w, dtype=np.float32)[None, :],
        y=np.arange(h, dtype=np.float32)[:, None],
        mm=mm,
        sign=1.0 if panel.medial_right else -1.0,
        transverse=panel.view == "transverse",
        streak_a=streak_a,
        streak_b=streak_b,
        blob_a=blob_a,
        blob_b=blob_b,
        breakup=np.clip(0.55 + 0.7 * streak_b, 0.0, 2.0),
    )


def _layers(
    rng: np.random.Generator, g: _Grid, w: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Skin, fat, strap muscles and deep tissue.

    Returns:
        ``(echo, muscle, skin, fat_bottom, muscle_bottom)``: the echo map so far, the
        muscle texture, the skin's depth and the two layers' lower boundaries, pixels.
    """
    x, y, mm = g.x, g.y, g.mm
    skin = rng.uniform(0.4, 0.9) * mm
    fat_bottom = curve(rng, x, skin + rng.uniform(2.0, 4.0) * mm, 0.5 * mm, w * 0.9)
    # The sternocleidomastoid thickens the muscle layer laterally in a transverse view.
    lateral = np.clip(-g.sign * (x - w / 2) / w, 0, None) if g.transverse else 0.0
    muscle_bottom = fat_bottom + curve(rng, x, rng.uniform(3.0, 5.0) * mm, 0.8 * mm, w * 1.1)
    muscle_bottom = muscle_bottom + rng.uniform(0.0, 8.0) * mm * lateral
    strands = np.clip(g.streak_a - 1.2, 0, None)
    echo = _DEEP * np.exp(0.45 * g.blob_a) * (1 + 2.5 * strands)
    muscle = _MUSCLE * np.exp(0.25 * g.streak_b) * (1 + 2.0 * strands)
    fat = _FAT * np.exp(0.35 * g.blob_b) * (1 + 3.0 * strands)
    echo = np.where(y < muscle_bottom, muscle, echo)
    echo = np.where(y < fat_bottom, fat, echo)
    echo = np.where(y < skin + 0.8 * mm, 0.9, echo)
    return echo, muscle, skin, fat_bottom, muscle_bottom


def _lobe(
    rng: np.random.Generator,
    g: _Grid,
    h: int,
    w: int,
    gland_top: float,
    nodule: tuple[float, float],
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The lobe's mask and ``(cx, cy, rx, ry)``: big enough to hold the nodule in parenchyma."""
    mm, (nodule_rx, nodule_ry) = g.mm, nodule
    if g.transverse:
        rx = max(rng.uniform(10.0, 15.0) * mm, nodule_rx + rng.uniform(2.5, 5.0) * mm)
        ry = max(rng.uniform(7.0, 10.0) * mm, nodule_ry + rng.uniform(2.0, 3.5) * mm)
        # Medial side toward the trachea; the lobe sits off-centre.
        shift = rng.uniform(0.0, 0.18) * w
        cx = w * 0.5 - g.sign * shift
    else:
        rx = max(rng.uniform(25.0, 35.0) * mm, nodule_rx + 6.0 * mm)
        ry = max(rng.uniform(6.0, 8.5) * mm, nodule_ry + rng.uniform(2.0, 3.5) * mm)
        cx = w * rng.uniform(0.4, 0.6)
    ry = min(ry, (h - gland_top) / 2 - 2)
    cy = gland_top + ry
    theta = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    wobble = 1 + sum(
        rng.uniform(0.02, 0.08) / k * 2 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        for k in (2, 3, 4)
    )
    # A capsule is not a smooth curve: small bumps where vessels and septa meet it.
    wobble += sum(
        rng.uniform(0.005, 0.015) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        for k in (7, 11, 17)
    )
    if g.transverse:
        # Cut across, a lobe is a rounded wedge: broad under the muscles, narrowing
        # to a deep edge a little toward the trachea.
        apex = math.atan2(1.0, 0.3 * g.sign)
        wobble += rng.uniform(0.06, 0.11) * np.cos(3 * (theta - apex))
    # A lobe is flatter above (under the muscles) than below.
    squash = np.where(np.sin(theta) < 0, 0.85, 1.0)
    lobe_pts = np.stack(
        [cx + rx * wobble * np.cos(theta), cy + ry * wobble * squash * np.sin(theta)], axis=1
    )
    return mask_polygon(h, w, lobe_pts), (cx, cy, rx, ry)


def _trachea(
    rng: np.random.Generator,
    g: _Grid,
    m: _Maps,
    lobe: tuple[float, float, float, float],
    gland_top: float,
) -> None:
    """An air ring beyond the medial pole, the isthmus over it (in place).

    Only the columns it can touch are computed (shadow and reverberation run down them).
    """
    (h, w), x, y, mm, sign = m.echo.shape, g.x, g.y, g.mm, g.sign
    cx, _, rx, _ = lobe
    tr_r = rng.uniform(6.5, 8.5) * mm
    tr_x = cx + sign * (rx + rng.uniform(0.5, 1.2) * tr_r)
    tr_top = gland_top + rng.uniform(2.0, 4.0) * mm
    isthmus_half = 0.5 * rng.uniform(2.0, 3.5) * mm
    _, c = window(h, w, tr_x, 0.0, 1.3 * tr_r, 0.0)
    xc = x[:, c]
    isthmus = (
        (np.abs(y - (tr_top - isthmus_half)) < isthmus_half)
        & ((xc - cx) * sign > 0)
        & (np.abs(xc - tr_x) < 1.1 * tr_r)
    )
    m.gland[:, c] = np.maximum(m.gland[:, c], isthmus)
    # The wall's front is an arch, broader than deep; only the part facing the probe
    # sends the beam back, so the bright line fades down the sides instead of closing
    # a dome, and it is brighter in some places than others.
    tr_ry = rng.uniform(0.7, 0.85) * tr_r
    tr_y = tr_top + tr_ry
    d = tr_r * np.sqrt(((xc - tr_x) / tr_r) ** 2 + ((y - tr_y) / tr_ry) ** 2)
    arc = (y < tr_y - 0.3 * tr_ry).astype(np.float32)
    facing = np.clip((tr_y - y) / tr_ry, 0, 1) ** 2 * (0.6 + 0.4 * g.breakup[:, c])
    ring = band(d, tr_r, 1.6) * arc
    m.specular[:, c] += 4.0 * ring * facing
    m.bright[:, c] += 2.0 * band(d, tr_r - 2.0, 2.5) * arc * facing
    # The wall stops the beam: the shadow below it comes from the attenuation.
    taper = np.clip((0.9 * tr_r - np.abs(xc - tr_x)) / (0.6 * tr_r), 0, 1)
    m.attenuation[:, c] += (_AIR_DB / 2.8) * ring * taper
    # Cartilage: a dark band just outside the bright air line.
    m.cartilage[:, c] = band(d, tr_r + 0.9 * mm, 0.6 * mm) * arc
    under = (np.abs(xc - tr_x) < 0.9 * tr_r) & (y > tr_top + 3)
    for k in (1, 2, 3):
        # Reverberation: fading, broken copies of the air line at multiples of its depth.
        shift = k * 0.8 * tr_top
        rd = tr_r * np.sqrt(((xc - tr_x) / tr_r) ** 2 + ((y - tr_y - shift) / tr_ry) ** 2)
        copy = band(rd, tr_r, 3.0) * (y < tr_y + shift - 0.3 * tr_ry)
        copy *= np.clip((tr_y + shift - y) / tr_ry, 0, 1)
        m.reverberation[:, c] += (0.45 / k) * copy * under * g.breakup[:, c] ** 2
    # Ring-down: closely spaced, fading echoes of the wall fill the top of the lumen
    # (the ladder real scans show under the air line).
    spacing = rng.uniform(0.8, 1.3) * mm
    for k in range(1, 7):
        centre = tr_y + k * spacing
        rd = tr_r * np.sqrt(((xc - tr_x) / tr_r) ** 2 + ((y - centre) / tr_ry) ** 2)
        copy = band(rd, tr_r, 1.2) * np.clip((centre - y) / tr_ry, 0, 1) ** 2 * under
        m.reverberation[:, c] += 1.2 * math.exp(-k / 2.5) * copy * g.breakup[:, c]
    m.reverberation[:, c] += 0.04 * under * np.exp(0.6 * g.blob_a[:, c])


def _vessels(
    rng: np.random.Generator, g: _Grid, m: _Maps, lobe: tuple[float, float, float, float]
) -> None:
    """Carotid (round) behind the lateral pole, jugular (flat) beside it (in place)."""
    (h, w), x, y, mm, sign = m.echo.shape, g.x, g.y, g.mm, g.sign
    cx, cy, rx, ry = lobe
    ca_r = rng.uniform(2.8, 3.8) * mm
    ca_x = cx - sign * (rx + rng.uniform(-0.2, 0.5) * ca_r)
    ca_y = cy + rng.uniform(0.0, 0.45) * ry
    # Not quite a circle: the probe presses it a little.
    ca_ry = ca_r * rng.uniform(0.85, 0.97)
    r, c = window(h, w, ca_x, ca_y, ca_r + 8, ca_r + 8)
    dc = ca_r * np.sqrt(((x[:, c] - ca_x) / ca_r) ** 2 + ((y[r] - ca_y) / ca_ry) ** 2)
    m.fluid[r, c] |= dc < ca_r
    # The arterial wall: a thick bright line, brightest where it faces the probe.
    wall = band(dc, ca_r + 1.2, 2.0) * (1.0 + 0.6 * (y[r] < ca_y))
    m.bright[r, c] += 1.3 * wall * g.breakup[r, c]
    if rng.random() < 0.75:
        # The jugular: flatter, beside and in front of the carotid, its own thin wall.
        ju_rx, ju_ry = rng.uniform(3.5, 6.0) * mm, rng.uniform(1.2, 2.6) * mm
        ju_x = ca_x - sign * (ca_r + rng.uniform(0.9, 1.2) * ju_rx)
        ju_y = ca_y - rng.uniform(0.2, 0.7) * ca_r
        r, c = window(h, w, ju_x, ju_y, ju_rx + 4, ju_ry + 4)
        dj = np.sqrt(((x[:, c] - ju_x) / ju_rx) ** 2 + ((y[r] - ju_y) / ju_ry) ** 2)
        m.fluid[r, c] |= dj < 1
        m.bright[r, c] += 0.8 * band(dj, 1.0 + 1.0 / ju_ry, 1.0 / ju_ry) * g.breakup[r, c]


def _longus_colli(
    rng: np.random.Generator,
    g: _Grid,
    m: _Maps,
    muscle: np.ndarray,
    lobe: tuple[float, float, float, float],
) -> None:
    """A dark muscle behind the lobe: medial half (transverse) or a band (longitudinal)."""
    (h, w), x, y, mm = m.echo.shape, g.x, g.y, g.mm
    cx, cy, rx, ry = lobe
    if g.transverse:
        lc_x, lc_y, lc_rx, lc_ry = cx + g.sign * 0.3 * rx, cy + ry + 3 * mm, 0.8 * rx, 2.5 * mm
        r, c = window(h, w, lc_x, lc_y, lc_rx, lc_ry)
        lc = ((x[:, c] - lc_x) / lc_rx) ** 2 + ((y[r] - lc_y) / lc_ry) ** 2 < 1
    else:
        top, bottom = cy + ry + 1.0 * mm, cy + ry + rng.uniform(4.0, 6.0) * mm
        r, c = window(h, w, w / 2, (top + bottom) / 2, w, (bottom - top) / 2)
        lc = np.ones((r.stop - r.start, w), dtype=bool)
    m.echo[r, c] = np.where(lc, muscle[r, c], m.echo[r, c])


def anatomy(
    rng: np.random.Generator,
    h: int,
    w: int,
    px_per_mm: float,
    panel: Panel,
    nodule_rx: float,
    nodule_ry: float,
) -> Anatomy:
    """Neck layers, thyroid lobe, trachea and vessels for one panel of ``(h, w)`` pixels."""
    g = _grid(rng, h, w, px_per_mm, panel)
    mm, x, y = px_per_mm, g.x, g.y
    echo, muscle, skin, fat_bottom, muscle_bottom = _layers(rng, g, w)
    gland_top = float(np.median(muscle_bottom)) + rng.uniform(0.3, 1.0) * mm
    gland, lobe = _lobe(rng, g, h, w, gland_top, (nodule_rx, nodule_ry))
    m = _Maps(
        echo=echo,
        attenuation=np.full((h, w), TISSUE_DB_PER_MM / mm, dtype=np.float32),
        specular=np.zeros((h, w), dtype=np.float32),
        reverberation=np.zeros((h, w), dtype=np.float32),
        gland=gland,
        fluid=np.zeros((h, w), dtype=bool),
        bright=np.zeros((h, w), dtype=np.float32),
        cartilage=np.zeros((h, w), dtype=np.float32),
    )
    if g.transverse:
        _trachea(rng, g, m, lobe, gland_top)
        _vessels(rng, g, m, lobe)
    _longus_colli(rng, g, m, muscle, lobe)

    cx, cy, rx, ry = lobe
    parenchyma = _GLAND * np.exp(0.14 * g.blob_b)
    soft_gland = blur(gland, 2.5)
    echo = m.echo * (1 - soft_gland) + parenchyma * soft_gland
    echo *= 1 - 0.7 * m.cartilage
    # Bright interfaces: fascia between layers, thyroid capsule, prevertebral fascia.
    bright = m.bright
    bright += 1.6 * band(y, fat_bottom, 1.0) * g.breakup
    bright += 1.8 * band(y, muscle_bottom, 1.2) * g.breakup
    capsule = np.clip(1 - np.abs(blur(gland, 1.2) - 0.5) / 0.35, 0, 1)
    bright += 1.1 * capsule * g.breakup
    prevertebral = curve(rng, x, cy + ry + rng.uniform(5.0, 8.0) * mm, 1.2 * mm, w * 1.3)
    bright += 1.8 * band(y, prevertebral, 1.4) * g.breakup
    echo = np.maximum(echo, bright)
    echo = np.where(m.fluid, FLUID, echo)
    attenuation = np.where(m.fluid, m.attenuation * FLUID_ATTENUATION, m.attenuation)
    specular = m.specular
    specular += 1.8 * band(y, skin, 0.8)
    # Scattered strong reflectors (fibrous septa, small vessel walls) around the gland.
    count = w * h // 1200
    dot_y, dot_x = rng.integers(0, h, count), rng.integers(0, w, count)
    strength = rng.uniform(0.8, 2.5, count) * (gland[dot_y, dot_x] < 0.5)
    np.add.at(specular, (dot_y, dot_x), strength.astype(np.float32))
    return Anatomy(echo, attenuation, specular, m.reverberation, gland, lobe)


def _attenuation_above(attenuation: np.ndarray, tissue: float) -> np.ndarray:
    """Two-way attenuation (h, w) accumulated above each pixel, in dB.

    What a strong reflector or a fluid space adds to the tissue's own ``tissue`` dB
    per pixel spreads sideways as it goes down: the beam has a width, so a shadow
    (or an enhancement) is sharp just under its cause and softens with depth instead
    of running down as a straight-sided column.
    """
    h, w = attenuation.shape
    excess = attenuation - np.float32(tissue)
    above = np.empty_like(attenuation)
    carried = np.zeros(w, dtype=np.float32)
    for row in range(h):
        above[row] = carried
        padded = np.pad(carried, 1, mode="edge")
        carried = carried + _SPREAD * (padded[:-2] + padded[2:] - 2 * carried) + excess[row]
    return above + np.float32(tissue) * np.arange(h, dtype=np.float32)[:, None]


def speckle_gray(
    rng: np.random.Generator,
    layout: Layout,
    maps: Anatomy,
    nodule: np.ndarray,
    px_per_mm: float,
) -> np.ndarray:
    """Display gray levels (h, w) in [0, 255] of the panel whose maps are ``maps``.

    Args:
        rng: the random source (consumed: the scatterers).
        layout: the frame's gain, dynamic range, TGC and point-spread function.
        maps: the anatomy with the nodule drawn in.
        nodule: the nodule mask (h, w) in [0, 1]; the gland around it sets the gain.
        px_per_mm: pixels per millimetre of depth.
    """
    h, w = maps.echo.shape
    # Two-way attenuation accumulated above each pixel, partly undone by the TGC.
    y = np.arange(h, dtype=np.float32)[:, None]
    above = _attenuation_above(maps.attenuation, TISSUE_DB_PER_MM / px_per_mm)
    tgc = layout.tgc * (TISSUE_DB_PER_MM / px_per_mm) * y
    tgc = tgc + 3.0 * band(y, 0.45 * h, 0.25 * h)  # brighter around the focal zone
    beam = np.exp((tgc - above) * np.float32(math.log(10.0) / 20.0))

    # Scatterers: complex Gaussian amplitudes scaled by the echo map; coherent
    # reflectors keep most of their amplitude; reverberation is not shadowed.
    shape = fft_shape(h, w)
    white = rng.standard_normal((2, h, w), dtype=np.float32)
    noise = white[0] + 1j * white[1]
    specular = beam * maps.specular
    # 0.01: the receiver's own noise floor, ~40 dB under the gland.
    diffuse = beam * maps.echo + 0.25 * specular + maps.reverberation + 0.01
    source = np.zeros(shape, dtype=np.complex128)
    source[:h, :w] = noise * diffuse + 0.75 * specular
    field = np.fft.ifft2(np.fft.fft2(source) * lowpass(shape, *layout.psf))[:h, :w]
    db = 10.0 * np.log10((field.real**2 + field.imag**2).astype(np.float32) + 1e-12)
    region = db[(maps.gland > 0.5) & (nodule < 0.5)]
    reference = float(np.median(region[::4])) if region.size else float(np.median(db))
    gray = _GLAND_GRAY + 255.0 * (db - reference + layout.gain_db) / layout.dynamic_range_db
    # Scanners smooth the log image a little before display.
    return blur(np.clip(gray, 0, 255) / 255.0, 0.8) * 255.0
