"""Where the automatic box is lost: the search on the whole frame, or the close-up crop.

Run from the project root on the fold networks ``thyrocam cv --save-runs`` wrote
(nothing is trained; about a minute on 2 cores for 231 frames)::

    thyrocam cv ../shared/ddti --folds 5 --preset ddti-cv --models image --save-runs --out CV
    python benchmarks/autobox_study.py CV [--ddti ../shared/ddti]

Every fold network boxes its own held-out frames. Besides the box the predictor
proposes (search, then close-up), it cuts the close-up crop around the
radiologist's outline box instead of the search's core, moved off centre by a
share of the box's side (in one random direction per frame) and grown about its
centre: the share of frames the close-up still boxes (IoU >= 0.5) says how far
off the search's core may be before the close-up can no longer recover the
nodule. The printed table is one run, all rows on the same networks and frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from thyrocam.checkpoint import load_run
from thyrocam.cv.networks import fold_test_samples
from thyrocam.data.samples import Sample, prepare_samples
from thyrocam.imaging import Box, Preprocessing, load_frame, to_tensor
from thyrocam.predictor.autobox import (
    REFINE_CONTEXT,
    REFINE_THRESHOLD,
    autobox_ious,
    find_nodule,
    frame_outline,
    grown_box,
    nodule_box_from_mask,
    panel_seam,
    sample_outline_boxes,
    search_core,
)

SHIFTS = (0.0, 0.25, 0.5, 0.75)  # the crop's centre off the outline box's, share of its side
GROWTH = (1.0, 1.5, 2.0)  # the outline box grown about its centre before the context


def _offset(core: Box | None, outlines: list[Box]) -> float:
    """How far the core's centre is from the nearest outline box's, as a share of that
    box's side (the larger of the two axes); inf without a core."""
    if core is None:
        return float("inf")
    cx, cy = (core[0] + core[2]) / 2, (core[1] + core[3]) / 2
    return min(
        max(
            abs(cx - (o[0] + o[2]) / 2) / (o[2] - o[0]),
            abs(cy - (o[1] + o[3]) / 2) / (o[3] - o[1]),
        )
        for o in outlines
    )


@torch.no_grad()
def study_run(run: Path, samples: list[Sample], rng: np.random.Generator) -> dict:
    """``{"product": [IoU per frame], (shift, growth): [IoU per frame], ...}`` for one fold."""
    info = load_run(run)
    info = info.locator or info  # a run with a locator boxes with it (as the predictor does)
    model = info.model.eval()
    crop = info.preprocessing
    search = Preprocessing.from_dict(info.meta["outline_input"])
    # Frames in split.json's case order: each draws its shift direction from ``rng`` in turn.
    frames = fold_test_samples(run, samples)
    out: dict = {"product": [], "core_offset": []} | {(d, g): [] for d in SHIFTS for g in GROWTH}
    for sample in frames:
        outlines = sample_outline_boxes(sample)
        if not outlines:
            continue
        frame = load_frame(sample.image_path)
        image, region = frame.image, frame.region
        box, _ = find_nodule(model, image, clin=None, search=search, crop=crop, region=region)
        out["product"].append(autobox_ious(box, outlines)[0])
        seam = panel_seam(image, region=region)
        seams = () if seam is None else (float(seam),)
        # The search's core before the close-up (find_nodule returns only the final box).
        inp, mapping = search.apply(image, region=region)
        prob = frame_outline(model, to_tensor(inp)[None])[0, 0].cpu().numpy()
        out["core_offset"].append(_offset(search_core(prob, mapping, seams=seams), outlines))
        x0, y0, x1, y1 = outlines[0]
        w, h = x1 - x0, y1 - y0
        angle = rng.uniform(0.0, 2.0 * np.pi)
        for d in SHIFTS:
            dx, dy = d * w * np.cos(angle), d * h * np.sin(angle)
            for g in GROWTH:
                core = grown_box((x0 + dx, y0 + dy, x1 + dx, y1 + dy), g)
                roi = grown_box(core, REFINE_CONTEXT)
                close, mapping = crop.apply(image, roi=roi, region=region)
                prob = frame_outline(model, to_tensor(close)[None])[0, 0].cpu().numpy()
                refined = nodule_box_from_mask(
                    prob, mapping, threshold=REFINE_THRESHOLD, near=core, seams=seams
                )
                out[(d, g)].append(autobox_ious(refined, outlines)[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path, help="a `thyrocam cv --save-runs` output folder")
    parser.add_argument("--ddti", default="../shared/ddti", help="the data the folds came from")
    parser.add_argument("--seed", type=int, default=0, help="seeds the shift directions")
    args = parser.parse_args(argv)
    runs = sorted((args.cv / "runs").glob("fold*-image"))
    if not runs:
        parser.error(f"{args.cv}/runs: no fold*-image run; run thyrocam cv --save-runs first")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    samples, _, _ = prepare_samples(args.ddti)
    rng = np.random.default_rng(args.seed)
    total: dict = {}
    for run in runs:
        for key, values in study_run(run, samples, rng).items():
            total.setdefault(key, []).extend(values)
    n = len(total["product"])
    print(f"{len(runs)} fold networks, {n} held-out frames with an outline")
    print("| close-up crop | box hit (IoU >= 0.5) | mean IoU |")
    print("|---|---:|---:|")
    rows = [("the predictor's (search, then close-up)", total["product"])]
    rows += [
        (f"outline box moved {d:.2f} of its side, grown {g:.1f}x", total[(d, g)])
        for d in SHIFTS
        for g in GROWTH
    ]
    for name, values in rows:
        v = np.asarray(values)
        print(f"| {name} | {np.mean(v >= 0.5):.3f} | {np.mean(v):.3f} |")
    offset = np.asarray(total["core_offset"])
    hits = np.asarray(total["product"]) >= 0.5
    print("\n| the search's core: centre off the nearest outline box's | frames | box hit |")
    print("|---|---:|---:|")
    bands = [(0.0, 0.25), (0.25, 0.5), (0.5, np.inf)]
    for lo, hi in bands:
        sel = (offset >= lo) & (offset < hi) & np.isfinite(offset)
        rate = f"{np.mean(hits[sel]):.3f}" if sel.any() else "-"
        print(f"| {lo:.2f}-{hi:.2f} of its side | {np.mean(sel):.3f} | {rate} |")
    print(f"| no core | {np.mean(np.isinf(offset)):.3f} | - |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
