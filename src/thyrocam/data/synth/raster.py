"""Raster helpers shared by the anatomy and the nodule: smooth random fields, blurs, masks.

All arrays are float32 ``(h, w)`` images, rows are depth (axial) and columns are
lateral position, in pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "fft_shape",
    "lowpass",
    "smooth_fields",
    "blur",
    "curve",
    "band",
    "window",
    "mask_polygon",
]


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


def fft_shape(h: int, w: int) -> tuple[int, int]:
    """FFT size for an (h, w) image: a little larger, with only 2, 3 and 5 as factors."""
    # The margin keeps the circular convolution from wrapping the skin line onto
    # the bottom row.
    return _fast_len(h + 12), _fast_len(w + 12)


def lowpass(shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Gaussian transfer function (shape) of a blur with sigmas sx (lateral), sy (axial)."""
    ky = np.fft.fftfreq(shape[0])
    kx = np.fft.fftfreq(shape[1])
    return np.outer(
        np.exp(-2.0 * np.pi**2 * sy**2 * ky**2), np.exp(-2.0 * np.pi**2 * sx**2 * kx**2)
    )


def smooth_fields(
    rng: np.random.Generator, h: int, w: int, sx: float, sy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent smooth Gaussian fields (h, w), unit variance.

    Made on a grid coarser by up to 4x where the blur allows, then resized up:
    the result is the same kind of field at a fraction of the cost.
    """
    fx, fy = max(1, min(4, int(sx / 1.5))), max(1, min(4, int(sy / 1.5)))
    sh, sw = -(-h // fy) + 1, -(-w // fx) + 1
    shape = fft_shape(sh, sw)
    white = rng.standard_normal((2, *shape))
    field = np.fft.ifft2(np.fft.fft2(white[0] + 1j * white[1]) * lowpass(shape, sx / fx, sy / fy))
    field = field[:sh, :sw] * (np.sqrt(2.0) / max(float(np.std(field[:sh, :sw])), 1e-12))
    out = []
    for part in (field.real, field.imag):
        img = Image.fromarray(part.astype(np.float32), "F")
        img = img.resize((w, h), Image.Resampling.BILINEAR, box=(0, 0, w / fx, h / fy))
        out.append(np.asarray(img, dtype=np.float32))
    return out[0], out[1]


def blur(mask: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian-blurred copy of a [0, 1] mask (h, w), 8-bit precision; sigma: px or (x, y)."""
    img = Image.fromarray(np.rint(np.clip(mask, 0, 1) * 255).astype(np.uint8), "L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0


def curve(
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


def band(y: np.ndarray, centre: np.ndarray | float, width: float) -> np.ndarray:
    """A soft line: 1 at ``centre``, falling off as a Gaussian of ``width`` (same units as y)."""
    return np.exp(-(((y - centre) / width) ** 2))


def window(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice]:
    """Row and column slices of the box cx +- rx, cy +- ry, clipped to (h, w)."""
    rows = slice(min(h, max(0, int(cy - ry))), min(h, max(0, int(cy + ry) + 2)))
    cols = slice(min(w, max(0, int(cx - rx))), min(w, max(0, int(cx + rx) + 2)))
    return rows, cols


def mask_polygon(h: int, w: int, points: np.ndarray) -> np.ndarray:
    """Mask (h, w) in {0, 1} of the polygon ``points`` (n, 2), (x, y) pixels."""
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0
