"""Regenerate the README's pictures: synthetic frames beside real DDTI frames, and overlays.

    python docs/make_figures.py --synthetic .demo/synthetic --run .demo/run \
        [--ddti ../shared/ddti] [--ddti-run RUN] --out docs/img

Real frames are read from ``--ddti`` at run time and only small, downscaled
composites are written (the data set itself never enters the repository).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from thyrocam import Predictor
from thyrocam.data import read_ddti
from thyrocam.data.samples import cases_to_samples
from thyrocam.imaging import load_image, nodule_box

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--ddti", type=Path, default=Path("../shared/ddti"))
    parser.add_argument("--ddti-run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

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
    print(f"wrote figures to {args.out}")


if __name__ == "__main__":
    main()
