"""Regenerate the README's pictures: synthetic frames beside real DDTI frames, and overlays.

    python docs/make_figures.py --synthetic .demo/synthetic --run .demo/run \
        [--ddti ../shared/ddti] [--ddti-run RUN] [--heads-run RUN] --out docs/img

``--heads-run`` alone draws only heads_ddti.png: a real-data run's outline, automatic
box, malignancy and descriptor Grad-CAM on frames of its own test split.

Real frames are read from ``--ddti`` at run time and only small, downscaled
composites are written (the data set itself never enters the repository).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from thyrocam import Predictor
from thyrocam.data import Sample, read_ddti
from thyrocam.data.samples import cases_to_samples
from thyrocam.imaging import load_image, nodule_box, outline_boxes
from thyrocam.predictor import Explanation
from thyrocam.predictor.autobox import autobox_ious

TILE = (280, 180)  # half of a 560x360 DDTI frame


def _tile(img: Image.Image, caption: str) -> Image.Image:
    tile = img.convert("RGB").resize(TILE, Image.BILINEAR)
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, TILE[1] - 16, TILE[0], TILE[1]), fill=(0, 0, 0))
    draw.text((4, TILE[1] - 14), caption, fill=(255, 255, 120))
    return tile


def _grid(tiles: list[Image.Image], cols: int) -> Image.Image:
    rows = (len(tiles) + cols - 1) // cols
    out = Image.new(
        "RGB", (cols * TILE[0] + (cols - 1) * 4, rows * TILE[1] + (rows - 1) * 4), "white"
    )
    for i, tile in enumerate(tiles):
        out.paste(tile, ((i % cols) * (TILE[0] + 4), (i // cols) * (TILE[1] + 4)))
    return out


def _samples(folder: Path, n: int, *, label_source: str = "auto") -> list:
    cases, _ = read_ddti(folder)
    samples, _ = cases_to_samples(cases, label_source=label_source)
    benign = [s for s in samples if s.label == 0 and s.polygons][: n // 2]
    malignant = [s for s in samples if s.label == 1 and s.polygons][: n - len(benign)]
    return [s for pair in zip(benign, malignant, strict=False) for s in pair]


def _overlays(predictor: Predictor, samples: list, prefix: str) -> list[Image.Image]:
    tiles = []
    for s in samples:
        roi = nodule_box(s.polygons) if predictor.preprocessing.mode == "roi" else None
        exp = predictor.explain(s.image_path, s.clinical, roi=roi)
        label = "malignant" if s.label else "benign"
        caption = f"{prefix} {s.case_id}: {label}, p={exp.prediction.probability:.2f}"
        overlay = exp.overlay
        draw = ImageDraw.Draw(overlay)
        for poly in s.polygons:  # the reader's outline, to judge where the map falls
            draw.line([*poly, poly[0]], fill=(255, 255, 255), width=2)
        tiles.append(_tile(overlay, caption))
    return tiles


# -- the heads of a real-data run on held-out frames (--heads-run) ------------------------
HEAD_ROW = 240  # px: README width (~900 px) fits a 560x360 frame at 373 px and two squares
READER = (255, 255, 255)  # the radiologist's outline
MODEL = (0, 230, 255)  # the outline head's mask (p >= 0.5)
AUTOBOX = (255, 200, 0)  # the automatic box, dashed


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (no system font needed)."""
    return ImageFont.load_default(size=size)


def _heads_samples(folder: Path, run: Path, n: int) -> list[Sample]:
    """``n`` test frames of ``run`` with an outline, chosen by rule, not by result.

    The run's split.json names its test cases (never trained on). Frames are sorted
    by (case number, view) and the first ``n // 2`` benign and first ``n - n // 2``
    malignant are taken (the test split is ~80 % malignant: on ddti_run, seed 0, the
    first 10 frames are all malignant), then shown in case order. The rule was fixed
    before the figure was first drawn; no frame was swapped after seeing a result.
    """
    test = set(json.loads((run / "split.json").read_text(encoding="utf-8"))["test"])
    cases, _ = read_ddti(folder)
    samples, _ = cases_to_samples(cases, label_source="tirads")
    held = [s for s in samples if s.case_id in test and s.polygons]
    held.sort(key=lambda s: (int(s.case_id), s.image_path.name))
    benign = [s for s in held if s.label == 0][: n // 2]
    malignant = [s for s in held if s.label == 1][: n - len(benign)]
    return sorted(benign + malignant, key=lambda s: (int(s.case_id), s.image_path.name))


def _dashed_box(draw: ImageDraw.ImageDraw, box: tuple[float, ...], *, dash: int = 7) -> None:
    """A dashed rectangle (PIL draws only solid ones)."""
    x0, y0, x1, y1 = box
    for (a, b), (c, d) in (
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ):
        length = max(abs(c - a), abs(d - b))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                (a + (c - a) * t0, b + (d - b) * t0, a + (c - a) * t1, b + (d - b) * t1),
                fill=AUTOBOX,
                width=2,
            )


def _paint_contour(img: Image.Image, prob: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Paint the edge of ``prob >= 0.5`` (resampled to ``img``'s size), 2 px wide, in place.

    Args:
        prob: float32 ``(H, W)`` probabilities over the same area as ``img``.
    """
    small = Image.fromarray((np.clip(prob, 0, 1) * 255).astype(np.uint8)).resize(img.size)
    mask = np.asarray(small) >= 128
    inner = mask.copy()
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
        inner &= np.roll(mask, shift, axis=axis)
    edge = mask & ~inner
    edge |= np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)
    pixels = np.asarray(img).copy()
    pixels[edge] = colour
    img.paste(Image.fromarray(pixels))


CAPTION = (255, 255, 150)
ALERT = (255, 120, 90)  # what a reader must not miss: a disagreement, an empty map


def _captioned(
    img: Image.Image, lines: list[tuple[str, tuple[int, int, int]]], *, size: int = 15
) -> Image.Image:
    """``img`` above a black strip holding ``lines`` (``(text, colour)``, one line each)."""
    height = len(lines) * (size + 4) + 6
    out = Image.new("RGB", (img.width, img.height + height), (0, 0, 0))
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, (line, colour) in enumerate(lines):
        draw.text((5, img.height + 3 + i * (size + 4)), line, fill=colour, font=_font(size))
    return out


SHORT = {"microcalcifications": "micro", "macrocalcifications": "macro", "non": "none"}


def _frame_tile(exp: Explanation, sample: Sample, width: int) -> Image.Image:
    """The whole frame: the reader's outline, the model's outline, the automatic box."""
    frame = exp.image.convert("RGB")
    scale = min(width / frame.width, HEAD_ROW / frame.height)
    size = (round(frame.width * scale), round(frame.height * scale))
    img = frame.resize(size, Image.BILINEAR)
    if exp.mask_frame is not None:
        _paint_contour(img, exp.mask_frame, MODEL)
    draw = ImageDraw.Draw(img)
    for poly in sample.polygons:
        draw.line([(x * scale, y * scale) for x, y in [*poly, poly[0]]], fill=READER, width=2)
    if exp.prediction.roi is not None:
        _dashed_box(draw, tuple(v * scale for v in exp.prediction.roi))
    tile = Image.new("RGB", (width, HEAD_ROW), (0, 0, 0))
    tile.paste(img, ((width - size[0]) // 2, (HEAD_ROW - size[1]) // 2))
    return tile


def _cam_tile(exp: Explanation, sample: Sample) -> Image.Image:
    """The map over what the network saw (its input crop), with the reader's outline."""
    x0, y0, x1, y1 = exp.mapping.box
    crop = exp.overlay.crop((round(x0), round(y0), round(x1), round(y1)))
    tile = crop.resize((HEAD_ROW, HEAD_ROW), Image.BILINEAR)
    draw = ImageDraw.Draw(tile)
    sx, sy = HEAD_ROW / (x1 - x0), HEAD_ROW / (y1 - y0)
    for poly in sample.polygons:
        points = [((x - x0) * sx, (y - y0) * sy) for x, y in [*poly, poly[0]]]
        draw.line(points, fill=READER, width=2)
    return tile


def _heads_row(predictor: Predictor, sample: Sample, width: int) -> tuple[list[Image.Image], str]:
    """One frame's three captioned tiles and a line for the log, all with no box given.

    P(malignant) is given the case's descriptors as the radiologist entered them (the
    run's intended use); "image alone" is the same frame with every descriptor missing,
    or for a stacked fusion its image network's own probability (and Grad-CAM's map is
    that network's, as the page shows it).
    """
    pred = predictor.predict(sample.image_path, sample.clinical)
    alone = predictor.predict(sample.image_path, None).probability
    weight = predictor.image_weight
    if weight is not None:
        # A stacked fusion: "image alone" is its image network's own probability (with
        # every descriptor missing the fused model gives the regression's constant).
        _, x, _, _ = predictor.prepare_image(sample.image_path, roi=pred.roi)
        with torch.no_grad():
            alone = float(torch.sigmoid(predictor.model.forward_heads(x)["image"])[0, 0])
    alone_text = "image alone" if weight is None else f"image network (weight {weight:.2f})"
    calc = (pred.estimated or {})["calcifications"]
    # (b) the predicted class's evidence; (c) where the calcification head sees its answer.
    mal = predictor.explain(sample.image_path, sample.clinical, target=pred.label)
    desc = predictor.explain(
        sample.image_path, sample.clinical, target=f"calcifications:{calc['value']}"
    )
    # Either panel's outline counts (a two-panel frame outlines the nodule in each), as in
    # `thyrocam cv`'s box hit rate.
    outlines = outline_boxes(sample.polygons)
    iou = autobox_ious(pred.roi if pred.roi_source == "auto" else None, outlines)[0]
    name = f"DDTI {sample.image_path.stem}"
    truth = "malignant" if sample.label else "benign"
    box = f"box IoU {iou:.2f}" if pred.roi_source == "auto" else "no nodule found"
    reader = SHORT.get(
        str(sample.clinical.get("calcifications")), sample.clinical.get("calcifications")
    )
    guess = SHORT.get(calc["value"], calc["value"])
    agrees, thr = pred.label == truth, pred.threshold
    tiles = [
        _captioned(
            _frame_tile(mal, sample, width),
            [
                (f"{name}: TI-RADS {sample.tirads} ({truth})", CAPTION),
                (f"P(malignant) {pred.probability:.2f} -> {pred.label} (thr. {thr:.2f})", CAPTION),
                (f"{alone_text}: P {alone:.2f} | {box}", CAPTION),
            ],
        ),
        _captioned(
            _cam_tile(mal, sample),
            [
                (f"Grad-CAM: {pred.label} (predicted)", CAPTION),
                ("agrees with TI-RADS", CAPTION) if agrees else ("DISAGREES with TI-RADS", ALERT),
                ("map all zero: no evidence", ALERT)
                if mal.all_zero
                else ("", CAPTION)
                if weight is None
                else ("the image network's map", CAPTION),
            ],
        ),
        _captioned(
            _cam_tile(desc, sample),
            [
                ("Grad-CAM: calcifications", CAPTION),
                (f"estimated: {guess}, p {calc['probability']:.2f}", CAPTION),
                (f"radiologist: {reader}", CAPTION),
            ],
        ),
    ]
    est = ", ".join(f"{f} {v['value']} {v['probability']:.2f}" for f, v in pred.estimated.items())
    log = (
        f"{name} ({truth}, TI-RADS {sample.tirads}): P {pred.probability:.3f} "
        f"({alone_text} {alone:.3f}) -> {pred.label}; {pred.roi_source} box IoU {iou:.2f}; {est}"
    )
    return tiles, log


def _legend(width: int) -> Image.Image:
    """A black strip naming the three marks of column (a), each beside a sample of it."""
    strip = Image.new("RGB", (width, 28), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    font = _font(16)
    text = "Held-out DDTI test frames, no box given:"
    draw.text((6, 5), text, fill=(235, 235, 235), font=font)
    x = 14 + int(draw.textlength(text, font=font))
    for colour, name in ((READER, "radiologist"), (MODEL, "model outline"), (AUTOBOX, "auto box")):
        if colour == AUTOBOX:
            _dashed_box(draw, (x, 14, x + 26, 14), dash=5)
        else:
            draw.line((x, 14, x + 26, 14), fill=colour, width=3)
        draw.text((x + 32, 5), name, fill=colour, font=font)
        x += 46 + int(draw.textlength(name, font=font))
    return strip


def _headings(widths: tuple[int, ...], gap: int) -> Image.Image:
    """Column headings: what each column shows."""
    texts = ("(a) whole frame", "(b) the crop the network saw", "(c) the same crop")
    strip = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), 24), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    x = 0
    for text, width in zip(texts, widths, strict=True):
        draw.text((x + 5, 3), text, fill=(235, 235, 235), font=_font(16))
        x += width + gap
    return strip


def _heads_figure(predictor: Predictor, samples: list) -> Image.Image:
    """Rows of (a) frame and outlines, (b) malignancy Grad-CAM, (c) calcification Grad-CAM."""
    width = round(HEAD_ROW * 560 / 360)  # a DDTI frame's aspect
    rows = []
    for s in samples:
        tiles, log = _heads_row(predictor, s, width)
        print(log)
        rows.append(tiles)
    gap = 4
    row_h = rows[0][0].height
    total_w = width + 2 * HEAD_ROW + 2 * gap
    top = [_legend(total_w), _headings((width, HEAD_ROW, HEAD_ROW), gap)]
    head_h = sum(strip.height for strip in top)
    out = Image.new("RGB", (total_w, head_h + len(rows) * (row_h + gap)), (255, 255, 255))
    out.paste(top[0], (0, 0))
    out.paste(top[1], (0, top[0].height))
    for r, tiles in enumerate(rows):
        y = head_h + r * (row_h + gap)
        for tile, x in zip(tiles, (0, width + gap, width + HEAD_ROW + 2 * gap), strict=True):
            out.paste(tile, (x, y))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--ddti", type=Path, default=Path("../shared/ddti"))
    parser.add_argument("--ddti-run", type=Path)
    parser.add_argument("--heads-run", type=Path, help="a real-data run: heads_ddti.png")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    if (args.synthetic is None) != (args.run is None):
        parser.error("--synthetic and --run go together")
    if args.synthetic is None and args.heads_run is None:
        parser.error("nothing to draw: give --synthetic and --run, or --heads-run")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.synthetic is not None:
        _synthetic_figures(args)
    if args.heads_run is not None:
        predictor = Predictor.load(args.heads_run, device="cpu")
        samples = _heads_samples(args.ddti, args.heads_run, 6)
        figure = _heads_figure(predictor, samples)
        # A 256-colour palette (no dithering) keeps it near the other PNGs' size
        # (~0.5 MB instead of 1.4 MB) with no visible loss at README width.
        palette = figure.quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        palette.save(args.out / "heads_ddti.png", optimize=True)
    print(f"wrote figures to {args.out}")


def _synthetic_figures(args: argparse.Namespace) -> None:
    """The first figures: synthetic beside real frames, and overlays of both."""
    synth = _samples(args.synthetic, 8)
    real = _samples(args.ddti, 8, label_source="tirads") if args.ddti.is_dir() else []
    tiles = [_tile(load_image(s.image_path), f"real DDTI {s.case_id}") for s in real]
    tiles += [_tile(load_image(s.image_path), f"synthetic {s.case_id}") for s in synth]
    _grid(tiles, 4).save(args.out / "synth_vs_real.png")

    predictor = Predictor.load(args.run, device="cpu")
    _grid(_overlays(predictor, synth[:8], "synthetic"), 4).save(args.out / "overlays_synthetic.png")
    if real and args.ddti_run:
        ddti_predictor = Predictor.load(args.ddti_run, device="cpu")
        _grid(_overlays(ddti_predictor, real[:8], "DDTI"), 4).save(args.out / "overlays_ddti.png")


if __name__ == "__main__":
    main()
