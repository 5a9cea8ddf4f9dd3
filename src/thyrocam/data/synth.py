"""Synthetic B-mode thyroid ultrasound in DDTI's on-disk format.

A latent benign/malignant truth drives the nodule's true features (composition,
echogenicity, margins, calcifications, taller-than-wide shape, size); the frame
is rendered from those true features (speckle, attenuation, anatomy, burnt-in
marks) and the XML carries a noisy, partly blank copy of them, the way a
radiologist's report does. So an ideal image reader beats the descriptors, and
descriptors plus sex and age (which the image does not show) beat the image.

Example:
    >>> from thyrocam.data.synth import make_synthetic_ddti
    >>> folder = make_synthetic_ddti("/tmp/synth", cases=20, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from thyrocam.errors import DataError

__all__ = [
    "COMPOSITIONS",
    "ECHOGENICITIES",
    "MARGINS",
    "CALCIFICATIONS",
    "LABELS_HEADER",
    "SynthConfig",
    "NoduleFeatures",
    "sample_case_features",
    "render_case",
    "make_synthetic_ddti",
]

logger = logging.getLogger(__name__)

# Canonical vocabulary, each ordered from least to most suspicious so that a
# "neighbouring category" (reader disagreement) is one step along the tuple.
COMPOSITIONS = (
    "cystic",
    "predominantly cystic",
    "spongiform",
    "predominantly solid",
    "solid",
    "dense",
)
ECHOGENICITIES = (
    "hyperechogenicity",
    "isoechogenicity",
    "hypoechogenicity",
    "marked hypoechogenicity",
)
MARGINS = (
    "well defined smooth",
    "well defined",
    "ill defined",
    "macrolobulated",
    "microlobulated",
    "spiculated",
)
CALCIFICATIONS = ("non", "macrocalcifications", "microcalcifications")

LABELS_HEADER = (
    "number",
    "label",
    "label_name",
    "composition",
    "echogenicity",
    "margins",
    "calcifications",
    "taller_than_wide",
    "size_mm",
)

# DDTI's tag order (as in its 67.xml); marks follow.
_XML_TAGS = (
    "number",
    "age",
    "sex",
    "composition",
    "echogenicity",
    "margins",
    "calcifications",
    "tirads",
    "reportbacaf",
    "reporteco",
)

# Spellings found in the real set, written now and then so readers normalise them.
_RAW_SPELLINGS = {
    "spongiform": "spongiform appareance",
    "marked hypoechogenicity": "marked hypoechogenecity",
    "ill defined": "ill- defined",
    "microcalcifications": "microcalcification",
    "macrocalcifications": "macrocalcification",
}

# Class-conditional tables P(feature | y), y = 0 benign, 1 malignant. They
# overlap on purpose: no single feature decides, the combination does.
_P_COMPOSITION = {
    0: (0.135, 0.185, 0.18, 0.21, 0.27, 0.02),
    1: (0.015, 0.04, 0.015, 0.165, 0.71, 0.055),
}
_P_ECHOGENICITY = {
    0: (0.20, 0.48, 0.28, 0.04),
    1: (0.04, 0.14, 0.50, 0.32),
}
_P_MARGINS = {
    0: (0.385, 0.34, 0.15, 0.075, 0.035, 0.015),
    1: (0.05, 0.075, 0.165, 0.14, 0.245, 0.325),
}
_P_CALCIFICATIONS = {
    0: (0.71, 0.22, 0.07),
    1: (0.375, 0.11, 0.515),
}
_P_TALLER_THAN_WIDE = {0: 0.03, 1: 0.60}
# Median nodule size (mm); malignant nodules here tend to be found smaller.
_SIZE_MEDIAN_MM = {0: 18.5, 1: 12.0}
_P_MALE = {0: 0.08, 1: 0.27}
# Readers agree most on composition and least on margins (Hoang et al., AJR 2018),
# so the reader-disagreement rate is scaled per descriptor.
_NOISE_SCALE = {"composition": 0.6, "echogenicity": 1.0, "margins": 1.5, "calcifications": 0.8}


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic DDTI generator.

    Every rate is a probability in [0, 1]. Defaults mimic the public DDTI set.
    """

    width: int = 560
    height: int = 360  # DDTI frames are 560x360
    malignant_rate: float = 0.45  # near-balanced classes keep small sets trainable
    two_panel_rate: float = 0.30  # DDTI: ~40% of its views outline a nodule in 2 panels
    second_view_rate: float = 0.15  # about 1 case in 6 in DDTI has an N_2.jpg
    caliper_rate: float = 0.50  # calipers are common in DDTI; half marks neither class
    # Reader disagreement: a descriptor moves one category with this probability,
    # scaled per descriptor (composition 0.18, echogenicity 0.30, margins 0.45,
    # calcifications 0.24), so the descriptors alone stay clearly below the image.
    descriptor_noise: float = 0.30
    missing_composition_echogenicity: float = 0.40  # DDTI: about half lack both
    missing_margins_calcifications: float = 0.20  # these two are blank less often
    missing_sex_age: float = 0.20  # DDTI: ~55 of 260 cases lack age and sex
    unknown_sex_rate: float = 0.05  # DDTI writes "u" for some recorded cases
    raw_spelling_rate: float = 0.15  # real misspellings, so readers must normalise
    missing_tirads: float = 0.25  # about a quarter of DDTI's sample has no grade
    tirads_noise: float = 0.15  # the grade moves one step, as graders disagree
    jpeg_quality: int = 90  # DDTI's quantisation tables are close to quality 85-90

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("width", "height"):
                low = 160 if f.name == "width" else 120
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise DataError(
                        f"{f.name}: got {value!r}; allowed: an integer >= {low}",
                        field=f.name,
                        value=value,
                        allowed=f">= {low}",
                    )
            elif f.name == "jpeg_quality":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 95:
                    raise DataError(
                        f"jpeg_quality: got {value!r}; allowed: an integer in 1..95",
                        field=f.name,
                        value=value,
                        allowed="1..95",
                    )
            elif (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= 1.0
            ):
                raise DataError(
                    f"{f.name}: got {value!r}; allowed: a probability in [0, 1]",
                    field=f.name,
                    value=value,
                    allowed="[0, 1]",
                )


@dataclass(frozen=True)
class NoduleFeatures:
    """The true features of one nodule (what the frame shows).

    Attributes:
        composition: one of :data:`COMPOSITIONS`.
        echogenicity: one of :data:`ECHOGENICITIES` (of the solid part).
        margins: one of :data:`MARGINS`.
        calcifications: one of :data:`CALCIFICATIONS`.
        taller_than_wide: deeper than broad.
        size_mm: largest diameter in millimetres, 5..30.
    """

    composition: str
    echogenicity: str
    margins: str
    calcifications: str
    taller_than_wide: bool
    size_mm: float

    def __post_init__(self) -> None:
        for name, allowed in (
            ("composition", COMPOSITIONS),
            ("echogenicity", ECHOGENICITIES),
            ("margins", MARGINS),
            ("calcifications", CALCIFICATIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise DataError(
                    f"{name}: got {value!r}; allowed: {', '.join(allowed)}",
                    field=name,
                    value=value,
                    allowed=allowed,
                )
        if not isinstance(self.taller_than_wide, bool):
            raise DataError(
                f"taller_than_wide: got {self.taller_than_wide!r}; allowed: True, False",
                field="taller_than_wide",
                value=self.taller_than_wide,
                allowed=(True, False),
            )
        size = self.size_mm
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 5 <= size <= 30:
            raise DataError(
                f"size_mm: got {self.size_mm!r}; allowed: 5 to 30",
                field="size_mm",
                value=self.size_mm,
                allowed="5..30",
            )


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: tuple[float, ...]) -> str:
    return options[int(rng.choice(len(options), p=np.asarray(p) / sum(p)))]


def _neighbour(rng: np.random.Generator, value: str, options: tuple[str, ...]) -> str:
    i = options.index(value)
    step = -1 if rng.random() < 0.5 else 1
    if not 0 <= i + step < len(options):
        step = -step
    return options[i + step]


def _grade(descriptors: dict[str, str]) -> str:
    """Kwak-style TI-RADS grade (DDTI's 2/3/4a/4b/4c/5) from canonical descriptors."""
    composition = descriptors["composition"]
    suspicious = (
        int(composition in ("solid", "dense"))
        + int(descriptors["echogenicity"] in ECHOGENICITIES[2:])
        + int(descriptors["margins"] in ("ill defined", "microlobulated", "spiculated"))
        + int(descriptors["calcifications"] == "microcalcifications")
    )
    if suspicious == 0:
        return "2" if composition in ("cystic", "spongiform") else "3"
    return ("4a", "4b", "4c", "5")[suspicious - 1]


_GRADES = ("2", "3", "4a", "4b", "4c", "5")


def sample_case_features(
    rng: np.random.Generator, config: SynthConfig
) -> tuple[NoduleFeatures, dict[str, str], int]:
    """Draw one case: latent label, true nodule features and the XML's descriptors.

    Args:
        rng: the random source (consumed).
        config: rates of malignancy, reader noise, blank tags and raw spellings.

    Returns:
        ``(features, xml, y)``: the true :class:`NoduleFeatures`; the text of each
        XML tag (``age``, ``sex``, ``composition``, ``echogenicity``, ``margins``,
        ``calcifications``, ``tirads``; ``""`` where the tag is empty, DDTI's raw
        spellings included); the label, 1 malignant and 0 benign.
    """
    y = int(rng.random() < config.malignant_rate)
    size = float(np.clip(_SIZE_MEDIAN_MM[y] * math.exp(0.35 * rng.standard_normal()), 5, 30))
    features = NoduleFeatures(
        composition=_choice(rng, COMPOSITIONS, _P_COMPOSITION[y]),
        echogenicity=_choice(rng, ECHOGENICITIES, _P_ECHOGENICITY[y]),
        margins=_choice(rng, MARGINS, _P_MARGINS[y]),
        calcifications=_choice(rng, CALCIFICATIONS, _P_CALCIFICATIONS[y]),
        taller_than_wide=bool(rng.random() < _P_TALLER_THAN_WIDE[y]),
        size_mm=round(size, 1),
    )
    sex = "M" if rng.random() < _P_MALE[y] else "F"
    # Malignancy is likelier at both ends of life here: benign ages cluster mid-life.
    if y:
        age = rng.normal(33.0, 8.0) if rng.random() < 0.5 else rng.normal(66.0, 8.0)
    else:
        age = rng.normal(50.0, 9.0)
    age = int(np.clip(round(age), 15, 90))

    read = {}
    for name, options in (
        ("composition", COMPOSITIONS),
        ("echogenicity", ECHOGENICITIES),
        ("margins", MARGINS),
        ("calcifications", CALCIFICATIONS),
    ):
        value = getattr(features, name)
        noise = config.descriptor_noise * _NOISE_SCALE[name]
        read[name] = _neighbour(rng, value, options) if rng.random() < noise else value
    grade_index = _GRADES.index(_grade(read))
    if rng.random() < config.tirads_noise:
        grade_index = int(np.clip(grade_index + (1 if rng.random() < 0.5 else -1), 0, 5))
    xml = {
        "age": str(age),
        "sex": "u" if rng.random() < config.unknown_sex_rate else sex,
        **read,
        "tirads": _GRADES[grade_index],
    }
    if rng.random() < config.missing_composition_echogenicity:
        xml["composition"] = xml["echogenicity"] = ""
    for name in ("margins", "calcifications"):
        if rng.random() < config.missing_margins_calcifications:
            xml[name] = ""
    if rng.random() < config.missing_sex_age:
        xml["sex"] = xml["age"] = ""
    if rng.random() < config.missing_tirads:
        xml["tirads"] = ""
    for name in ("composition", "echogenicity", "margins", "calcifications"):
        if xml[name] in _RAW_SPELLINGS and rng.random() < config.raw_spelling_rate:
            xml[name] = _RAW_SPELLINGS[xml[name]]
    return features, xml, y


# ---------------------------------------------------------------------------
# Rendering: an echo-amplitude map and an attenuation map per panel, turned into
# speckle by a point-spread function, then log-compressed for display.
# ---------------------------------------------------------------------------

# Scatter amplitude relative to the thyroid parenchyma (1.0). Strap muscles sit
# about 10 dB below the gland, so "marked" hypoechogenicity must go lower still.
_GLAND = 1.0
_FAT = 0.6
_MUSCLE = 0.32
_DEEP = 0.5
_FLUID = 0.02
_SOLID_LEVEL = {
    "hyperechogenicity": 1.7,
    "isoechogenicity": 0.95,
    "hypoechogenicity": 0.42,
    "marked hypoechogenicity": 0.17,
}
# Share of the nodule's interior that is fluid, by composition (low, high).
_FLUID_SHARE = {
    "cystic": (0.85, 0.95),
    "predominantly cystic": (0.55, 0.75),
    "spongiform": (0.35, 0.5),
    "predominantly solid": (0.1, 0.3),
    "solid": (0.0, 0.0),
    "dense": (0.0, 0.0),
}
# Tissue attenuation, two-way, in dB per mm (about 0.5 dB/cm/MHz at ~10 MHz).
_TISSUE_DB_PER_MM = 1.0
_FLUID_ATTENUATION = 0.3  # relative to tissue: what makes posterior enhancement
_CALC_DB = 10.0  # under a coarse calcification: a clear but not black shadow
_AIR_DB = 28.0  # through the tracheal wall: little comes back from below
_GLAND_GRAY = 105.0  # display level of the parenchyma before the per-frame gain


class _Panel(NamedTuple):
    """Feature-independent choices for one ultrasound panel."""

    view: str  # "transverse" or "longitudinal"
    medial_right: bool  # trachea to the right of the lobe (a right lobe, image-left)
    calipers: bool


class _Layout(NamedTuple):
    """Everything burnt into a frame that is drawn before the nodule is known.

    Drawn only from the random source and the config, never from the features,
    so benign and malignant frames carry the same marks at the same rates.
    """

    two_panel: bool
    same_view_twice: bool
    panels: tuple[_Panel, ...]
    field: tuple[int, int, int, int]  # x0, y0, width, height of all panels together
    depth_mm: float
    gain_db: float
    dynamic_range_db: float
    tgc: float  # share of the tissue attenuation the time-gain compensation undoes
    psf: tuple[float, float]  # speckle grain sigma (lateral, axial), pixels
    side_text: str
    settings: tuple[str, ...]
    scale_left: bool
    gray_bar: bool
    body_mark: bool
    orientation_mark: bool


# Side labels as DDTI's Spanish-language scanners write them; True: a right lobe.
_SIDES = {"DER": True, "IZQ": False, "LOBULO DER": True, "LOBULO IZQ": False, "ITSMO DER": True}


def _draw_layout(rng: np.random.Generator, config: SynthConfig) -> _Layout:
    """Draw a frame's layout and marks; it never sees the nodule's features."""
    W, H = config.width, config.height
    two_panel = bool(rng.random() < config.two_panel_rate)
    same_view_twice = two_panel and bool(rng.random() < 0.5)
    side_text = str(rng.choice(list(_SIDES)))
    medial_right = _SIDES[side_text]
    # The field leaves the text column (right ~8%) and the gray bar (left ~4%) free.
    if two_panel:
        fw = 2 * int(round(W * rng.uniform(0.4, 0.435)))
        x0 = int(round(rng.uniform(0.045, max(0.046, 1 - fw / W - 0.08)) * W))
        first = "transverse" if rng.random() < 0.7 else "longitudinal"
        other = "longitudinal" if first == "transverse" else "transverse"
        second = first if same_view_twice else other
        if same_view_twice:
            # The same view with and without calipers, as DDTI shows it.
            marked = int(rng.integers(2))
            calipers = (marked == 0, marked == 1)
        else:
            both = bool(rng.random() < config.caliper_rate)
            calipers = (both, both)
        panels = (
            _Panel(first, medial_right, calipers[0]),
            _Panel(second, medial_right, calipers[1]),
        )
    else:
        fw = int(round(W * rng.uniform(0.6, 0.8)))
        x0 = int(round(rng.uniform(0.045, max(0.046, 1 - fw / W - 0.085)) * W))
        view = "transverse" if rng.random() < 0.7 else "longitudinal"
        panels = (_Panel(view, medial_right, bool(rng.random() < config.caliper_rate)),)
    fh = int(round(H * rng.uniform(0.78, 0.86)))
    y0 = int(round(H * rng.uniform(0.012, 0.025)))
    settings = (
        "P100",
        "12L6",
        str(rng.choice(["9.0", "12.0", "10.0"])),
        f"{int(rng.choice([21, 27, 31, 34]))}fps",
        f"DR{int(rng.choice([60, 65, 70]))}",
        "2DG",
        str(int(rng.choice([84, 88, 92, 96]))),
    )
    return _Layout(
        two_panel=two_panel,
        same_view_twice=same_view_twice,
        panels=panels,
        field=(x0, y0, fw, fh),
        depth_mm=float(rng.uniform(36.0, 46.0)),
        gain_db=float(rng.uniform(-4.0, 5.0)),
        dynamic_range_db=float(rng.uniform(46.0, 56.0)),
        tgc=float(rng.uniform(0.45, 0.75)),
        psf=(float(rng.uniform(1.6, 2.2)), float(rng.uniform(0.75, 0.95))),
        side_text=side_text,
        settings=settings,
        scale_left=bool(rng.random() < 0.3),
        gray_bar=bool(rng.random() < 0.85),
        body_mark=bool(rng.random() < 0.8),
        orientation_mark=bool(rng.random() < 0.9),
    )


def _fast_len(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3 and 5 (fast for the FFT)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _fft_shape(h: int, w: int) -> tuple[int, int]:
    # The margin keeps the circular convolution from wrapping the skin line onto
    # the bottom row.
    return _fast_len(h + 12), _fast_len(w + 12)


def _lowpass(shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Gaussian transfer function (shape) of a blur with sigmas sx (lateral), sy (axial)."""
    ky = np.fft.fftfreq(shape[0])
    kx = np.fft.fftfreq(shape[1])
    return np.outer(
        np.exp(-2.0 * np.pi**2 * sy**2 * ky**2), np.exp(-2.0 * np.pi**2 * sx**2 * kx**2)
    )


def _smooth_fields(
    rng: np.random.Generator, h: int, w: int, sx: float, sy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent smooth Gaussian fields (h, w), unit variance.

    Made on a grid coarser by up to 4x where the blur allows, then resized up:
    the result is the same kind of field at a fraction of the cost.
    """
    fx, fy = max(1, min(4, int(sx / 1.5))), max(1, min(4, int(sy / 1.5)))
    sh, sw = -(-h // fy) + 1, -(-w // fx) + 1
    shape = _fft_shape(sh, sw)
    white = rng.standard_normal((2, *shape))
    field = np.fft.ifft2(np.fft.fft2(white[0] + 1j * white[1]) * _lowpass(shape, sx / fx, sy / fy))
    field = field[:sh, :sw] * (np.sqrt(2.0) / max(float(np.std(field[:sh, :sw])), 1e-12))
    out = []
    for part in (field.real, field.imag):
        img = Image.fromarray(part.astype(np.float32), "F")
        img = img.resize((w, h), Image.Resampling.BILINEAR, box=(0, 0, w / fx, h / fy))
        out.append(np.asarray(img, dtype=np.float32))
    return out[0], out[1]


def _blur(mask: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian-blurred copy of a [0, 1] mask (h, w), 8-bit precision; sigma: px or (x, y)."""
    img = Image.fromarray(np.rint(np.clip(mask, 0, 1) * 255).astype(np.uint8), "L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0


def _curve(
    rng: np.random.Generator, x: np.ndarray, base: float, amp: float, period: float
) -> np.ndarray:
    """A gently undulating depth y(x) (pixels) for a tissue boundary."""
    phase = rng.uniform(0, 2 * np.pi, size=2)
    k = rng.uniform(0.7, 1.3)
    return (
        base
        + amp * np.sin(2 * np.pi * x / (period * k) + phase[0])
        + 0.4 * amp * np.sin(2 * np.pi * x / (0.37 * period * k) + phase[1])
    ).astype(np.float32)


def _band(y: np.ndarray, centre: np.ndarray | float, width: float) -> np.ndarray:
    return np.exp(-(((y - centre) / width) ** 2))


def _window(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice]:
    """Row and column slices of the box cx +- rx, cy +- ry, clipped to (h, w)."""
    rows = slice(min(h, max(0, int(cy - ry))), min(h, max(0, int(cy + ry) + 2)))
    cols = slice(min(w, max(0, int(cx - rx))), min(w, max(0, int(cx + rx) + 2)))
    return rows, cols


def _mask_polygon(h: int, w: int, points: np.ndarray) -> np.ndarray:
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _outline(
    rng: np.random.Generator, margins: str, rx: float, ry: float, n: int = 360
) -> np.ndarray:
    """Nodule outline (n, 2) in pixels around (0, 0); the margin type shapes it."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3):
        r += rng.uniform(0.02, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if margins == "well defined":
        r += rng.uniform(0.02, 0.04) * np.cos(5 * theta + rng.uniform(0, 2 * np.pi))
    elif margins == "ill defined":
        for k in (5, 7, 9):
            r += rng.uniform(0.02, 0.04) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    elif margins == "macrolobulated":
        k = int(rng.integers(3, 6))
        r += rng.uniform(0.14, 0.22) * np.abs(np.cos(k * theta / 2 + rng.uniform(0, np.pi)))
    elif margins == "microlobulated":
        k = int(rng.integers(10, 17))
        r += rng.uniform(0.06, 0.09) * np.abs(np.cos(k * theta / 2 + rng.uniform(0, np.pi)))
        r += 0.03 * np.cos(7 * theta + rng.uniform(0, 2 * np.pi))
    elif margins == "spiculated":
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


class _Anatomy(NamedTuple):
    echo: np.ndarray  # (h, w) diffuse scatter amplitude
    attenuation: np.ndarray  # (h, w) two-way dB per pixel
    specular: np.ndarray  # (h, w) coherent reflector amplitude
    reverberation: np.ndarray  # (h, w) artefact amplitude, not shadowed
    gland: np.ndarray  # (h, w) thyroid mask
    lobe: tuple[float, float, float, float]  # cx, cy, rx, ry of the lobe, pixels


def _anatomy(
    rng: np.random.Generator,
    h: int,
    w: int,
    px_per_mm: float,
    panel: _Panel,
    nodule_rx: float,
    nodule_ry: float,
) -> _Anatomy:
    """Neck layers, thyroid lobe, trachea and vessels for one panel."""
    mm = px_per_mm
    x = np.arange(w, dtype=np.float32)[None, :]
    y = np.arange(h, dtype=np.float32)[:, None]
    streak_a, streak_b = _smooth_fields(rng, h, w, 22.0, 1.0)
    blob_a, blob_b = _smooth_fields(rng, h, w, 12.0, 4.5)
    breakup = np.clip(0.55 + 0.7 * streak_b, 0.0, 2.0)
    transverse = panel.view == "transverse"
    sign = 1.0 if panel.medial_right else -1.0

    skin = rng.uniform(0.4, 0.9) * mm
    fat_bottom = _curve(rng, x, skin + rng.uniform(2.0, 4.0) * mm, 0.5 * mm, w * 0.9)
    # The sternocleidomastoid thickens the muscle layer laterally in a transverse view.
    lateral = np.clip(-sign * (x - w / 2) / w, 0, None) if transverse else 0.0
    muscle_bottom = fat_bottom + _curve(rng, x, rng.uniform(3.0, 5.0) * mm, 0.8 * mm, w * 1.1)
    muscle_bottom = muscle_bottom + rng.uniform(0.0, 8.0) * mm * lateral
    strands = np.clip(streak_a - 1.2, 0, None)
    echo = _DEEP * np.exp(0.45 * blob_a) * (1 + 2.5 * strands)
    muscle = _MUSCLE * np.exp(0.25 * streak_b) * (1 + 2.0 * strands)
    fat = _FAT * np.exp(0.35 * blob_b) * (1 + 3.0 * strands)
    echo = np.where(y < muscle_bottom, muscle, echo)
    echo = np.where(y < fat_bottom, fat, echo)
    echo = np.where(y < skin + 0.8 * mm, 0.9, echo)

    # The lobe: big enough to hold the nodule with some parenchyma around it.
    gland_top = float(np.median(muscle_bottom)) + rng.uniform(0.3, 1.0) * mm
    if transverse:
        rx = max(rng.uniform(10.0, 15.0) * mm, nodule_rx + rng.uniform(2.5, 5.0) * mm)
        ry = max(rng.uniform(7.0, 10.0) * mm, nodule_ry + rng.uniform(2.0, 3.5) * mm)
        # Medial side toward the trachea; the lobe sits off-centre.
        shift = rng.uniform(0.0, 0.18) * w
        cx = w * 0.5 - sign * shift
    else:
        rx = max(rng.uniform(25.0, 35.0) * mm, nodule_rx + 6.0 * mm)
        ry = max(rng.uniform(6.0, 8.5) * mm, nodule_ry + rng.uniform(2.0, 3.5) * mm)
        cx = w * rng.uniform(0.4, 0.6)
    ry = min(ry, (h - gland_top) / 2 - 2)
    cy = gland_top + ry
    theta = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    wobble = 1 + sum(
        rng.uniform(0.02, 0.08) / k * 2 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        for k in (2, 3, 4)
    )
    # A lobe is flatter above (under the muscles) than below.
    squash = np.where(np.sin(theta) < 0, 0.85, 1.0)
    lobe_pts = np.stack(
        [cx + rx * wobble * np.cos(theta), cy + ry * wobble * squash * np.sin(theta)], axis=1
    )
    gland = _mask_polygon(h, w, lobe_pts)
    specular = np.zeros((h, w), dtype=np.float32)
    reverberation = np.zeros((h, w), dtype=np.float32)
    attenuation = np.full((h, w), _TISSUE_DB_PER_MM / mm, dtype=np.float32)
    fluid = np.zeros((h, w), dtype=bool)
    bright = np.zeros((h, w), dtype=np.float32)  # incoherent bright interfaces

    cartilage = np.zeros((h, w), dtype=np.float32)
    if transverse:
        # Trachea: an air ring beyond the medial pole, the isthmus over it. Only the
        # columns it can touch are computed (shadow and reverberation run down them).
        tr_r = rng.uniform(6.5, 8.5) * mm
        tr_x = cx + sign * (rx + rng.uniform(0.5, 1.2) * tr_r)
        tr_top = gland_top + rng.uniform(2.0, 4.0) * mm
        tr_y = tr_top + tr_r
        isthmus_half = 0.5 * rng.uniform(2.0, 3.5) * mm
        _, c = _window(h, w, tr_x, 0.0, 1.3 * tr_r, 0.0)
        xc = x[:, c]
        isthmus = (
            (np.abs(y - (tr_top - isthmus_half)) < isthmus_half)
            & ((xc - cx) * sign > 0)
            & (np.abs(xc - tr_x) < 1.1 * tr_r)
        )
        gland[:, c] = np.maximum(gland[:, c], isthmus)
        d = np.sqrt((xc - tr_x) ** 2 + (y - tr_y) ** 2)
        arc = (y < tr_y - 0.3 * tr_r).astype(np.float32)
        ring = _band(d, tr_r, 1.3) * arc
        specular[:, c] += 4.0 * ring
        bright[:, c] += 2.0 * _band(d, tr_r - 2.0, 2.5) * arc
        # The wall stops the beam: the shadow below it comes from the attenuation.
        taper = np.clip((0.95 * tr_r - np.abs(xc - tr_x)) / (0.35 * tr_r), 0, 1)
        attenuation[:, c] += (_AIR_DB / 2.3) * ring * taper
        # Cartilage: a dark band just outside the bright air line.
        cartilage[:, c] = _band(d, tr_r + 0.9 * mm, 0.6 * mm) * arc
        under = (np.abs(xc - tr_x) < 0.9 * tr_r) & (y > tr_top + 3)
        for k in (1, 2, 3):
            # Reverberation: fading copies of the air line at multiples of its depth.
            rd = np.sqrt((xc - tr_x) ** 2 + (y - tr_y - k * 0.8 * tr_top) ** 2)
            copy = _band(rd, tr_r, 3.0) * (y < tr_y + k * 0.8 * tr_top - 0.3 * tr_r)
            reverberation[:, c] += (0.35 / k) * copy * under * breakup[:, c]
        reverberation[:, c] += 0.04 * under * np.exp(0.6 * blob_a[:, c])
        # Carotid (round) behind the lateral pole, jugular (flat) beside it.
        ca_r = rng.uniform(2.8, 3.8) * mm
        ca_x = cx - sign * (rx + rng.uniform(-0.2, 0.5) * ca_r)
        ca_y = cy + rng.uniform(0.0, 0.45) * ry
        r, c = _window(h, w, ca_x, ca_y, ca_r + 8, ca_r + 8)
        dc = np.sqrt((x[:, c] - ca_x) ** 2 + (y[r] - ca_y) ** 2)
        fluid[r, c] |= dc < ca_r
        bright[r, c] += 1.0 * _band(dc, ca_r + 1.0, 1.5) * breakup[r, c]
        if rng.random() < 0.75:
            ju_rx, ju_ry = rng.uniform(3.5, 6.0) * mm, rng.uniform(1.2, 2.6) * mm
            ju_x = ca_x - sign * rng.uniform(0.6, 1.2) * ca_r
            ju_y = ca_y - ca_r - rng.uniform(0.0, 0.6) * ju_ry
            r, c = _window(h, w, ju_x, ju_y, ju_rx, ju_ry)
            fluid[r, c] |= ((x[:, c] - ju_x) / ju_rx) ** 2 + ((y[r] - ju_y) / ju_ry) ** 2 < 1
        # Longus colli: a dark muscle behind the medial half of the lobe.
        lc_x, lc_y, lc_rx, lc_ry = cx + sign * 0.3 * rx, cy + ry + 3 * mm, 0.8 * rx, 2.5 * mm
        r, c = _window(h, w, lc_x, lc_y, lc_rx, lc_ry)
        lc = ((x[:, c] - lc_x) / lc_rx) ** 2 + ((y[r] - lc_y) / lc_ry) ** 2 < 1
    else:
        top, bottom = cy + ry + 1.0 * mm, cy + ry + rng.uniform(4.0, 6.0) * mm
        r, c = _window(h, w, w / 2, (top + bottom) / 2, w, (bottom - top) / 2)
        lc = np.ones((r.stop - r.start, w), dtype=bool)
    echo[r, c] = np.where(lc, muscle[r, c], echo[r, c])

    parenchyma = _GLAND * np.exp(0.14 * blob_b)
    soft_gland = _blur(gland, 2.5)
    echo = echo * (1 - soft_gland) + parenchyma * soft_gland
    echo *= 1 - 0.7 * cartilage
    # Bright interfaces: fascia between layers, thyroid capsule, prevertebral fascia.
    bright += 1.6 * _band(y, fat_bottom, 1.0) * breakup
    bright += 1.8 * _band(y, muscle_bottom, 1.2) * breakup
    capsule = np.clip(1 - np.abs(_blur(gland, 1.2) - 0.5) / 0.35, 0, 1)
    bright += 0.7 * capsule * breakup
    prevertebral = _curve(rng, x, cy + ry + rng.uniform(5.0, 8.0) * mm, 1.2 * mm, w * 1.3)
    bright += 1.8 * _band(y, prevertebral, 1.4) * breakup
    echo = np.maximum(echo, bright)
    echo = np.where(fluid, _FLUID, echo)
    attenuation = np.where(fluid, attenuation * _FLUID_ATTENUATION, attenuation)
    specular += 1.8 * _band(y, skin, 0.8)
    # Scattered strong reflectors (fibrous septa, small vessel walls) around the gland.
    count = w * h // 1200
    dot_y, dot_x = rng.integers(0, h, count), rng.integers(0, w, count)
    strength = rng.uniform(0.8, 2.5, count) * (gland[dot_y, dot_x] < 0.5)
    np.add.at(specular, (dot_y, dot_x), strength.astype(np.float32))
    return _Anatomy(echo, attenuation, specular, reverberation, gland, (cx, cy, rx, ry))


def _nodule_radii(
    rng: np.random.Generator, features: NoduleFeatures, px_per_mm: float, w: int, h: int
) -> tuple[float, float]:
    half = 0.5 * features.size_mm * px_per_mm
    if features.taller_than_wide:
        ry, rx = half, half / rng.uniform(1.15, 1.45)
    else:
        rx, ry = half, half * rng.uniform(0.6, 0.88)
    # A nodule bigger than the field is drawn at the field's size, as a scanner crops it.
    scale = min(1.0, (0.4 * w) / rx, (0.3 * h) / ry)
    return rx * scale, ry * scale


def _render_nodule(
    rng: np.random.Generator,
    features: NoduleFeatures,
    anatomy: _Anatomy,
    radii: tuple[float, float],
    px_per_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the nodule into the anatomy's maps (in place).

    Returns:
        The outline, (n, 2) pixels (x, y), and the nodule mask, (h, w) in [0, 1].
    """
    echo, attenuation, specular = anatomy.echo, anatomy.attenuation, anatomy.specular
    h, w = echo.shape
    cx, cy, lrx, lry = anatomy.lobe
    rx, ry = radii
    mm = px_per_mm
    nx = cx + rng.uniform(-1, 1) * max(0.0, lrx - rx - 1.5 * mm) * 0.8
    ny = cy + rng.uniform(-1, 1) * max(0.0, lry - ry - 1.5 * mm) * 0.7
    reach = 1.35  # spikes and lobes reach beyond the body radius
    nx = float(np.clip(nx, reach * rx + 4, w - reach * rx - 4))
    ny = float(np.clip(ny, reach * ry + 4, h - reach * ry - 4))
    shape = _outline(rng, features.margins, rx, ry)
    outline = shape + (nx, ny)
    # From here on, work in a box around the nodule (views into the panel's maps):
    # nothing below reaches further than a blurred halo.
    low, high = outline.min(axis=0) - 16, outline.max(axis=0) + 16
    rows, cols = _window(h, w, *(low + high) / 2, *(high - low) / 2)
    echo, attenuation, specular = echo[rows, cols], attenuation[rows, cols], specular[rows, cols]
    panel_shape = (h, w)
    h, w = echo.shape
    nx, ny = nx - cols.start, ny - rows.start
    mask = _mask_polygon(h, w, shape + (nx, ny))
    small = min(rx, ry)
    if features.composition in ("cystic", "predominantly cystic"):
        # Fluid keeps a smooth lining; an irregular margin belongs to the wall.
        lining = _outline(rng, "well defined smooth", 0.85 * rx, 0.85 * ry)
        inner = _mask_polygon(h, w, lining + (nx, ny)) * mask
    else:
        inner = _mask_polygon(h, w, shape * (1 - 2.5 / small) + (nx, ny))

    heterogeneity = 0.35 if features.composition == "dense" else 0.18
    texture, debris = _smooth_fields(rng, h, w, 3.0, 2.2)
    solid = _SOLID_LEVEL[features.echogenicity] * np.exp(heterogeneity * texture)

    least, most = _FLUID_SHARE[features.composition]
    share = rng.uniform(least, most) if most > 0 else 0.0
    area = float(inner.sum())
    fluid = np.zeros((h, w), dtype=np.float32)
    if features.composition == "cystic":
        fluid = inner
    elif features.composition == "predominantly cystic":
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
        spongy = features.composition == "spongiform"
        radius = (1.6, 3.6) if spongy else (0.18 * small, 0.4 * small)
        mean_area = math.pi * (0.5 * sum(radius)) ** 2 * 0.7
        count = max(1, int(share * area / mean_area * (1.6 if spongy else 1.0)))
        fluid = _ellipses(rng, h, w, inner, count, radius) * inner
    fluid = _blur(fluid, 0.7)
    nodule_echo = solid * (1 - fluid) + _FLUID * np.exp(0.8 * debris) * fluid

    soft = _blur(mask, rng.uniform(3.0, 5.0) if features.margins == "ill defined" else 0.8)
    halo_p = {"well defined smooth": 0.75, "well defined": 0.45}.get(features.margins, 0.0)
    if features.echogenicity == "isoechogenicity" or rng.random() < halo_p:
        # A thin dark rim (halo) straddling the border.
        ring = np.clip(1 - np.abs(_blur(mask, rng.uniform(1.0, 1.6)) - 0.5) / 0.3, 0, 1)
        dim = 1 - rng.uniform(0.6, 0.8) * ring
        echo *= dim
        nodule_echo = nodule_echo * dim
    echo[:] = echo * (1 - soft) + nodule_echo * soft
    if features.composition == "dense":
        attenuation *= 1 + 0.8 * mask
    attenuation *= 1 - (1 - _FLUID_ATTENUATION) * fluid

    solid_inside = np.clip(mask - fluid, 0, 1)
    ys, xs = np.nonzero(solid_inside > 0.5)
    if features.calcifications == "microcalcifications" and len(xs):
        count = int(rng.integers(4, 9) + (rx * ry) / 400)
        for i in rng.integers(len(xs), size=count):
            specular[ys[i], xs[i]] += rng.uniform(3.0, 6.0)
    elif features.calcifications == "macrocalcifications" and len(xs):
        arcs = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(arcs)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(len(xs)))
            r = rng.uniform(0.25, 0.45) * small + 3
            # A cap facing the probe (PIL's angles run clockwise from 3 o'clock).
            span = rng.uniform(60, 120)
            start = 270 - span / 2 + rng.uniform(-20, 20)
            draw.arc(
                (xs[i] - r, ys[i] - r, xs[i] + r, ys[i] + r),
                start=start,
                end=start + span,
                fill=255,
                width=int(rng.integers(2, 4)),
            )
        arc = _blur(np.asarray(arcs, dtype=np.float32) / 255.0, 0.8)
        specular += 6.0 * arc
        echo += 5.0 * arc
        # The shadow is as deep under the arc's thin ends as under its middle, and
        # a little wider than the arc (blurred sideways only, so it starts under
        # the arc): its edges are soft on real scans.
        cover = np.clip(np.cumsum(_blur(arc, (4.0, 0.0)), axis=0) / 1.5, 0, 1)
        attenuation += _CALC_DB * np.diff(cover, axis=0, prepend=0)
    panel_mask = np.zeros(panel_shape, dtype=np.float32)
    panel_mask[rows, cols] = mask
    return outline, panel_mask


def _render_panel(
    rng: np.random.Generator,
    layout: _Layout,
    panel: _Panel,
    features: NoduleFeatures,
    w: int,
    h: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One panel as display gray levels (h, w) in [0, 255] and its nodule outline (n, 2)."""
    px_per_mm = h / layout.depth_mm
    radii = _nodule_radii(rng, features, px_per_mm, w, h)
    anatomy = _anatomy(rng, h, w, px_per_mm, panel, *radii)
    outline, nodule = _render_nodule(rng, features, anatomy, radii, px_per_mm)

    # Two-way attenuation accumulated above each pixel, partly undone by the TGC.
    y = np.arange(h, dtype=np.float32)[:, None]
    above = np.cumsum(anatomy.attenuation, axis=0) - anatomy.attenuation
    tgc = layout.tgc * (_TISSUE_DB_PER_MM / px_per_mm) * y
    tgc = tgc + 3.0 * _band(y, 0.45 * h, 0.25 * h)  # brighter around the focal zone
    beam = np.exp((tgc - above) * np.float32(math.log(10.0) / 20.0))

    # Scatterers: complex Gaussian amplitudes scaled by the echo map; coherent
    # reflectors keep most of their amplitude; reverberation is not shadowed.
    shape = _fft_shape(h, w)
    white = rng.standard_normal((2, h, w), dtype=np.float32)
    noise = white[0] + 1j * white[1]
    specular = beam * anatomy.specular
    # 0.01: the receiver's own noise floor, ~40 dB under the gland.
    diffuse = beam * anatomy.echo + 0.25 * specular + anatomy.reverberation + 0.01
    source = np.zeros(shape, dtype=np.complex128)
    source[:h, :w] = noise * diffuse + 0.75 * specular
    field = np.fft.ifft2(np.fft.fft2(source) * _lowpass(shape, *layout.psf))[:h, :w]
    db = 10.0 * np.log10((field.real**2 + field.imag**2).astype(np.float32) + 1e-12)
    region = db[(anatomy.gland > 0.5) & (nodule < 0.5)]
    reference = float(np.median(region[::4])) if region.size else float(np.median(db))
    gray = _GLAND_GRAY + 255.0 * (db - reference + layout.gain_db) / layout.dynamic_range_db
    # Scanners smooth the log image a little before display.
    gray = _blur(np.clip(gray, 0, 255) / 255.0, 0.8) * 255.0
    return gray, outline


def _annotate(
    rng: np.random.Generator, outline: np.ndarray, dx: int, W: int, H: int
) -> list[tuple[int, int]]:
    """A hand-drawn-like polygon: 30-70 integer points along the outline, in frame pixels."""
    n = int(rng.integers(30, 71))
    picks = np.linspace(0, len(outline), n, endpoint=False).astype(int)
    start = int(rng.integers(len(outline)))
    pts = outline[(picks + start) % len(outline)] + rng.normal(0, 0.6, size=(n, 2))
    if rng.random() < 0.5:
        pts = pts[::-1]
    xs = np.clip(np.rint(pts[:, 0] + dx), 0, W - 1).astype(int)
    ys = np.clip(np.rint(pts[:, 1]), 0, H - 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(xs, ys, strict=True)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_marks(img: Image.Image, layout: _Layout, W: int, H: int) -> None:
    """Burn in the scanner's marks: settings, depth scale, side text, bar, body mark."""
    draw = ImageDraw.Draw(img)
    x0, y0, fw, fh = layout.field
    s = H / 360.0
    font = _font(max(7, round(10 * s)))
    text_gray = (205, 205, 205)
    # Settings column in the top-right corner; dual frames list both probes.
    tx = int(W - 32 * W / 560)
    lines = layout.settings
    if layout.two_panel:
        lines = ("P100", "R", *lines[1:], "L", *lines[1:])
    for i, line in enumerate(lines):
        draw.text((tx, y0 + i * 10.5 * s), line, fill=text_gray, font=font)
    # Depth scale: a dot every 5 mm, a bigger one every centimetre.
    sx = x0 - 4 if layout.scale_left else x0 + fw + 3
    step = fh / layout.depth_mm * 5
    k = 0
    while k * step <= fh:
        yy = y0 + k * step
        r = 1.2 if k % 2 == 0 else 0.6
        draw.ellipse((sx - r, yy - r, sx + r, yy + r), fill=(235, 235, 235))
        k += 1
    draw.text((sx - 3 * s, max(0, y0 - 6 * s)), "0", fill=text_gray, font=font)
    draw.text(
        (sx + (-10 if layout.scale_left else 3) * s, y0 + fh - 8 * s),
        str(int(layout.depth_mm // 10)),
        fill=text_gray,
        font=font,
    )
    focus = y0 + fh * 0.45
    fx = x0 - 5 if not layout.scale_left else x0 - 9
    draw.polygon(
        [(fx, focus - 2.5 * s), (fx, focus + 2.5 * s), (fx + 4 * s, focus)], fill=text_gray
    )
    if layout.orientation_mark:
        draw.text((x0 + fw - 16 * s, y0 + 4 * s), "T", fill=(230, 230, 230), font=font)
    if layout.gray_bar:
        top, bottom = int(0.27 * H), int(0.53 * H)
        for yy in range(top, bottom):
            v = int(255 * (bottom - yy) / (bottom - top))
            draw.line((int(0.012 * W), yy, int(0.024 * W), yy), fill=(v, v, v))
    big = _font(max(8, round(11 * s)))
    draw.text((x0 + 0.04 * W, y0 + fh + 0.03 * H), layout.side_text, fill=text_gray, font=big)
    if layout.body_mark:
        bx, by = W - 0.1 * W, H - 0.075 * H
        draw.ellipse((bx - 14 * s, by - 9 * s, bx + 14 * s, by + 9 * s), outline=text_gray, width=1)
        draw.ellipse((bx - 4 * s, by - 6 * s, bx + 4 * s, by + 2 * s), outline=text_gray, width=1)
        draw.ellipse((bx - 2 * s, by + 4 * s, bx + 2 * s, by + 8 * s), outline=text_gray, width=1)
        probe_x = bx + (-8 if _SIDES[layout.side_text] else 8) * s
        draw.line(
            (probe_x - 6 * s, by - 12 * s, probe_x + 6 * s, by - 12 * s),
            fill=(250, 250, 250),
            width=2,
        )


def _draw_calipers(
    img: Image.Image, rng: np.random.Generator, outline: np.ndarray, dx: int, H: int
) -> None:
    """Caliper crosses at the ends of the nodule's width (and often its depth)."""
    draw = ImageDraw.Draw(img)
    arm = max(2, round(4 * H / 360))
    cx, cy = outline.mean(axis=0)
    left = outline[np.argmin(np.abs(outline[:, 1] - cy) + 1e3 * (outline[:, 0] > cx))]
    right = outline[np.argmin(np.abs(outline[:, 1] - cy) + 1e3 * (outline[:, 0] < cx))]
    points = [left, right]
    if rng.random() < 0.6:
        top = outline[np.argmin(np.abs(outline[:, 0] - cx) + 1e3 * (outline[:, 1] > cy))]
        bottom = outline[np.argmin(np.abs(outline[:, 0] - cx) + 1e3 * (outline[:, 1] < cy))]
        points += [top, bottom]
    color = (int(rng.integers(200, 256)),) * 3
    for px, py in points:
        px, py = float(px) + dx, float(py)
        draw.line((px - arm, py, px + arm, py), fill=color, width=1)
        draw.line((px, py - arm, px, py + arm), fill=color, width=1)


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
    layout = _draw_layout(rng, config)
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
    _draw_marks(img, layout, W, H)
    polygons = []
    for outline, dx, calipers in outlines:
        if calipers:
            _draw_calipers(img, rng, outline, dx, H)
        polygons.append(_annotate(rng, outline, dx, W, H))
    return img, polygons


_CASE_FILE = re.compile(r"^[1-9][0-9]*(\.xml|_[1-9][0-9]*\.jpg)$")
_LABELS_FILE = "labels.csv"


def _xml_text(number: int, xml: dict[str, str], marks: list[tuple[int, list]]) -> str:
    values = {"number": str(number), "reportbacaf": "", "reporteco": "", **xml}
    parts = ["<case>"]
    parts += [f"<{tag}>{escape(values[tag])}</{tag}>" for tag in _XML_TAGS]
    for view, polygons in marks:
        regions = [
            {
                "points": [{"x": x, "y": y} for x, y in polygon],
                "annotation": {},
                "regionType": "freehand",
            }
            for polygon in polygons
        ]
        parts.append(f"<mark><image>{view}</image><svg>{escape(json.dumps(regions))}</svg></mark>")
    parts.append("</case>")
    return "".join(parts)


def _prepare_folder(out: Path) -> None:
    """Make `out` ready: new, empty, or a previous synthetic set (whose files go)."""
    if out.exists() and not out.is_dir():
        raise DataError(
            f"out: got {str(out)!r}, which is a file; allowed: a new or empty folder, "
            "or one make_synthetic_ddti wrote before",
            field="out",
            value=str(out),
            allowed="folder",
        )
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(out.iterdir())
    if not entries:
        return
    labels = out / _LABELS_FILE
    header = ""
    if labels.is_file():
        with labels.open(encoding="utf-8") as fh:
            header = fh.readline().strip()
    strays = [e.name for e in entries if e.name != _LABELS_FILE and not _CASE_FILE.match(e.name)]
    if header != ",".join(LABELS_HEADER) or strays:
        why = f"it holds {strays[0]!r}" if strays else f"it has no synthetic {_LABELS_FILE}"
        raise DataError(
            f"out: got {str(out)!r}, a non-empty folder that is not a synthetic DDTI set "
            f"({why}); allowed: a new or empty folder, or one make_synthetic_ddti wrote before",
            field="out",
            value=str(out),
            allowed="new, empty or synthetic folder",
        )
    for entry in entries:
        if not entry.is_file():
            raise DataError(
                f"out: got {str(out)!r}, which holds the folder {entry.name!r}; allowed: a "
                "new or empty folder, or one make_synthetic_ddti wrote before",
                field="out",
                value=str(out),
                allowed="new, empty or synthetic folder",
            )
    for entry in entries:
        entry.unlink()


def make_synthetic_ddti(
    out: str | os.PathLike[str],
    *,
    cases: int,
    seed: int = 0,
    config: SynthConfig | None = None,
) -> Path:
    """Write a synthetic data set in DDTI's format.

    Writes ``N.xml`` and ``N_V.jpg`` for N = 1..cases, and ``labels.csv`` with the
    latent label and the true features (:data:`LABELS_HEADER`). The same seed
    gives byte-identical files. A folder written before by this function is
    emptied first; any other non-empty folder is refused.

    Args:
        out: the folder to write (created when missing).
        cases: number of cases, >= 1.
        seed: the random seed, >= 0.
        config: generator settings; defaults to :class:`SynthConfig`.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: bad ``cases`` or ``seed``, or ``out`` is not a usable folder.
    """
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise DataError(
            f"cases: got {cases!r}; allowed: an integer >= 1",
            field="cases",
            value=cases,
            allowed=">= 1",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(
            f"seed: got {seed!r}; allowed: an integer >= 0",
            field="seed",
            value=seed,
            allowed=">= 0",
        )
    config = config or SynthConfig()
    folder = Path(out)
    _prepare_folder(folder)
    rows: list[list[Any]] = []
    frames = 0
    for number, child in enumerate(np.random.SeedSequence(seed).spawn(cases), start=1):
        # Separate streams: the descriptors never shift the pictures, nor the reverse.
        feature_seed, image_seed = child.spawn(2)
        features, xml, y = sample_case_features(np.random.default_rng(feature_seed), config)
        rng = np.random.default_rng(image_seed)
        views = 2 if rng.random() < config.second_view_rate else 1
        marks = []
        for view in range(1, views + 1):
            image, polygons = render_case(rng, features=features, config=config)
            image.save(folder / f"{number}_{view}.jpg", quality=config.jpeg_quality)
            marks.append((view, polygons))
        frames += views
        (folder / f"{number}.xml").write_text(_xml_text(number, xml, marks), encoding="utf-8")
        rows.append(
            [
                number,
                y,
                "malignant" if y else "benign",
                features.composition,
                features.echogenicity,
                features.margins,
                features.calcifications,
                int(features.taller_than_wide),
                f"{features.size_mm:.1f}",
            ]
        )
    with (folder / _LABELS_FILE).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(LABELS_HEADER)
        writer.writerows(rows)
    logger.info("wrote %d synthetic cases (%d frames) to %s", cases, frames, folder)
    return folder
