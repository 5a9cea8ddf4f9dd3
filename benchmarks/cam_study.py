"""Which CAM method's map of the malignant logit lies on the nodule, on real DDTI crops.

Run from the project root on the fold networks ``thyrocam cv --save-runs`` wrote
(nothing is trained; seconds on 2 cores)::

    thyrocam cv ../shared/ddti --folds 5 --preset ddti-cv --models image --save-runs --out CV
    python benchmarks/cam_study.py CV [--ddti ../shared/ddti] [--methods gradcam,hirescam]

Every fold network explains every outlined crop of its own held-out cases with each
method of :data:`thyrocam.explain.METHODS` (the page's and CLI's table), and the
share of each map's energy inside the radiologist's outline is printed beside the
outline's share of the crop and a centred Gaussian's share — the same measure as
``cv.json``'s Grad-CAM columns (:func:`thyrocam.cv.networks.cam_energy`), on all
test crops instead of the first 40 per fold. Means over folds; one run, all rows on
the same networks and crops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from thyrocam.checkpoint import load_run
from thyrocam.cv.networks import cam_energy, fold_test_samples
from thyrocam.data import ThyroidDataset
from thyrocam.data.samples import Sample, prepare_samples
from thyrocam.explain import METHODS

COLUMNS = (
    "cam_energy_inside",
    "outline_area_share",
    "cam_ratio",
    "centre_prior_inside",
    "cam_empty_share",
)


def study_run(run: Path, samples: list[Sample], methods: list[str]) -> dict:
    """``{method: cam_energy(...)}`` for one fold network on its held-out crops."""
    info = load_run(run)
    model = info.model.eval()
    ds = ThyroidDataset(
        fold_test_samples(run, samples),
        preprocessing=info.preprocessing,
        cat_maps=info.cat_maps,
        targets=True,
    )
    cpu = torch.device("cpu")
    return {m: cam_energy(model, ds, cpu, cam_cases=len(ds), method=m) for m in methods}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cv", type=Path, help="a `thyrocam cv --save-runs` output folder")
    p.add_argument("--ddti", default=str(Path(__file__).resolve().parents[2] / "shared" / "ddti"))
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    samples, _, _ = prepare_samples(args.ddti)
    runs = sorted((args.cv / "runs").glob("fold*-image"))
    if not runs:
        p.error(f"cv: no fold*-image runs under {args.cv / 'runs'}; run `thyrocam cv --save-runs`")
    folds = [study_run(run, samples, methods) for run in runs]
    print(f"{len(runs)} fold networks of {args.cv}")
    print(f"{'method':16s}" + "".join(f"{k:>22s}" for k in COLUMNS))
    for m in methods:
        cells = [np.mean([f[m].get(k, np.nan) for f in folds]) for k in COLUMNS]
        print(f"{m:16s}" + "".join(f"{c:22.3f}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
