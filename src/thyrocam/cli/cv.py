"""``thyrocam cv``: K-fold cross-validation by case of the modalities and the descriptor line."""

from __future__ import annotations

import argparse
import json

from thyrocam.cli.train import add_train_options, train_config

__all__ = ["register"]


def _cmd_cv(args: argparse.Namespace) -> int:
    from thyrocam.cv import cross_validate

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    result = cross_validate(
        args.data,
        out=args.out,
        folds=args.folds,
        config=train_config(args),
        models=models,
        cam_cases=args.cam_cases,
        save_runs=args.save_runs,
    )
    summary = {
        name: {
            key: m.get(f"{key}_mean")
            for key in ("auc", "sensitivity", "specificity", "dice", "descriptor_accuracy")
            if f"{key}_mean" in m
        }
        | {"auc_sd": m.get("auc_sd")}
        for name, m in result["models"].items()
    }
    print(json.dumps({"out": str(args.out), "folds": result["folds"], "models": summary}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from thyrocam.cv import CV_MODELS

    p = sub.add_parser(
        "cv",
        help="K-fold cross-validation by case: both / image / clinical and a descriptor "
        "logistic regression on the same folds (cv.json, cv.html)",
    )
    p.add_argument("data", help="DDTI folder (N.xml + N_V.jpg) or CSV manifest")
    p.add_argument("--out", required=True, help="folder for cv.json and cv.html")
    p.add_argument("--folds", type=int, default=5, help="K (default 5)")
    p.add_argument(
        "--models",
        default=",".join(CV_MODELS),
        help=f"comma-separated subset of {', '.join(CV_MODELS)} (default: all)",
    )
    p.add_argument(
        "--cam-cases",
        dest="cam_cases",
        type=int,
        default=40,
        help="test images per fold on which Grad-CAM energy is measured (default 40)",
    )
    p.add_argument(
        "--save-runs",
        dest="save_runs",
        action="store_true",
        help="also write each fold's networks as run folders (OUT/runs/fold<k>-<model>, "
        "split.json naming the fold's test cases) for thyrocam predict/explain",
    )
    add_train_options(p)
    p.set_defaults(func=_cmd_cv)
