"""Today's single-task recipe vs the small-real-data recipe, 5-fold CV by case on DDTI.

Run from the project root (about 60 minutes on an idle 2-core machine)::

    python benchmarks/ddti_cv.py [--data ../shared/ddti] [--out bench-out/ddti_cv]

Both recipes are scored on the same folds (the same seed) by
:func:`thyrocam.cv.cross_validate`; the descriptor-only logistic regression is the
line the combined model must reach, and the logistic regression on plain statistics
inside the radiologist's outline (``outline_lr``) the line the image networks must
reach. Labels are DDTI's TI-RADS grade ({2,3} benign,
{4a,4b,4c,5} malignant): the radiologist's assessment, not pathology. Prints one
table (mean +- sd over folds) and the differences the issue's acceptance asks for.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from thyrocam.cv import CV_COLUMNS, cross_validate
from thyrocam.train import PRESETS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]

# Today's recipe: the demo preset's model and crops (resnet18 from scratch, 96 px
# ROI crops scaled to the nodule, flip + gain), malignancy loss only, 15 epochs (as measured).
OLD = dict(PRESETS["demo"], epochs=15, heads=("malignancy",), max_minutes=None, weights=None)
# The new recipe: the CV preset, the same recipe as --preset ddti (every head, synthetic
# pretraining done once for all folds, scale-preserving crops, narrow ResNet-10).
NEW = dict(PRESETS["ddti-cv"], weights=None)
RECIPES = {
    "old": (OLD, ("both", "image")),
    "new": (NEW, ("both", "image", "clinical", "descriptor_lr", "outline_lr")),
}


def _row(name: str, m: dict, key: str) -> str:
    mean, sd = m.get(f"{key}_mean"), m.get(f"{key}_sd")
    return "      -      " if mean is None else f"{mean:.3f} ± {sd:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "ddti"))
    p.add_argument("--out", default=str(ROOT / "bench-out" / "ddti_cv"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recipes", default="old,new", help=f"comma-separated, from {', '.join(RECIPES)}"
    )
    p.add_argument("--epochs-scale", type=float, default=1.0, help="scale both recipes' epochs")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = {}
    for name in args.recipes.split(","):
        recipe, models = RECIPES[name]
        epochs = max(1, round(recipe["epochs"] * args.epochs_scale))
        config = TrainConfig(**{**recipe, "epochs": epochs, "seed": args.seed, "progress": False})
        t0 = time.perf_counter()
        results[name] = cross_validate(
            args.data, out=Path(args.out) / name, folds=args.folds, config=config, models=models
        )
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    keys = [k for k in CV_COLUMNS if k not in ("sensitivity", "specificity", "seconds")]
    print(f"\n{'recipe/model':22s}" + "".join(f"{k[:21]:>22s}" for k in keys))
    for name, res in results.items():
        for model, m in res["models"].items():
            print(f"{name + '/' + model:22s}" + "".join(f"{_row(model, m, k):>22s}" for k in keys))
    summary: dict = {"seconds": {k: v["seconds"] for k, v in results.items()}}
    if "old" in results and "new" in results:
        old_img = results["old"]["models"]["image"]["auc_mean"]
        new = results["new"]["models"]
        summary.update(
            image_auc_gain=new["image"]["auc_mean"] - old_img,
            both_minus_descriptor_lr=new["both"]["auc_mean"] - new["descriptor_lr"]["auc_mean"],
            image_minus_outline_lr=new["image"]["auc_mean"] - new["outline_lr"]["auc_mean"],
            dice_image=new["image"].get("dice_mean"),
            autobox_hit_rate_image=new["image"].get("autobox_hit_rate_mean"),
            cam_energy_inside_image=new["image"].get("cam_energy_inside_mean"),
            centre_prior_inside_image=new["image"].get("centre_prior_inside_mean"),
            cam_empty_share_image=new["image"].get("cam_empty_share_mean"),
            cam_energy_over_area_image=(
                new["image"]["cam_energy_inside_mean"] / new["image"]["outline_area_share_mean"]
                if new["image"].get("outline_area_share_mean")
                else None
            ),
        )
    print("\n" + json.dumps(summary, indent=2))
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
