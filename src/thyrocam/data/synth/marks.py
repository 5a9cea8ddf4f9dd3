"""What the scanner and the reader burn into a frame: layout, depth scale, text, body mark,
calipers, and the reader's hand-drawn outline (DDTI's ``<mark>``).

The layout is drawn from the random source and the config only, never from the
nodule's features, so benign and malignant frames carry the same marks at the same
rates; the marks never write the label.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from thyrocam.data.synth.cases import SynthConfig

__all__ = ["Panel", "Layout", "draw_layout", "draw_marks", "draw_calipers", "annotate"]


class Panel(NamedTuple):
    """Feature-independent choices for one ultrasound panel."""

    view: str  # "transverse" or "longitudinal"
    medial_right: bool  # trachea to the right of the lobe (a right lobe, image-left)
    calipers: bool


class Layout(NamedTuple):
    """Everything burnt into a frame that is drawn before the nodule is known.

    Drawn only from the random source and the config, never from the features,
    so benign and malignant frames carry the same marks at the same rates.
    """

    two_panel: bool
    same_view_twice: bool
    panels: tuple[Panel, ...]
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


def draw_layout(rng: np.random.Generator, config: SynthConfig) -> Layout:
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
            Panel(first, medial_right, calipers[0]),
            Panel(second, medial_right, calipers[1]),
        )
    else:
        fw = int(round(W * rng.uniform(0.6, 0.8)))
        x0 = int(round(rng.uniform(0.045, max(0.046, 1 - fw / W - 0.085)) * W))
        view = "transverse" if rng.random() < 0.7 else "longitudinal"
        panels = (Panel(view, medial_right, bool(rng.random() < config.caliper_rate)),)
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
    return Layout(
        two_panel=two_panel,
        same_view_twice=same_view_twice,
        panels=panels,
        field=(x0, y0, fw, fh),
        depth_mm=float(rng.uniform(36.0, 46.0)),
        gain_db=float(rng.uniform(-4.0, 5.0)),
        dynamic_range_db=float(rng.uniform(46.0, 56.0)),
        tgc=float(rng.uniform(0.65, 0.85)),
        psf=(float(rng.uniform(1.6, 2.2)), float(rng.uniform(0.75, 0.95))),
        side_text=side_text,
        settings=settings,
        scale_left=bool(rng.random() < 0.3),
        gray_bar=bool(rng.random() < 0.85),
        body_mark=bool(rng.random() < 0.8),
        orientation_mark=bool(rng.random() < 0.9),
    )


def annotate(
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


def draw_marks(img: Image.Image, layout: Layout, W: int, H: int) -> None:
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


def draw_calipers(
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
