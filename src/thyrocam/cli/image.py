"""``thyrocam predict`` and ``thyrocam explain``: one image at a time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thyrocam.cli._common import (
    add_method_option,
    check_out_folder,
    load_predictor,
    parse_clinical,
    replace_atomically,
)

__all__ = ["register"]


def _cmd_predict(args: argparse.Namespace) -> int:
    from thyrocam.imaging import parse_box

    predictor = load_predictor(args)
    pred = predictor.predict(
        args.image, parse_clinical(args.clinical), roi=parse_box(args.roi), frame=args.frame
    )
    print(json.dumps(pred.to_dict(), indent=2))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from thyrocam.imaging import parse_box

    out = Path(args.out)
    check_out_folder(out)
    predictor = load_predictor(args)
    exp = predictor.explain(
        args.image,
        parse_clinical(args.clinical),
        roi=parse_box(args.roi),
        method=args.method,
        target=args.target,
        alpha=args.alpha,
        frame=args.frame,
    )
    # Built before anything is written: a failure leaves no half set of outputs.
    results = exp.to_dicom() if args.dicom_out else None
    replace_atomically(out, lambda tmp: exp.overlay.save(tmp, format="PNG"))
    summary = exp.prediction.to_dict()
    summary.update(
        {
            "overlay": str(out),
            "method": exp.method,
            "target": exp.target,
            "used_class_idx": exp.used_idx,
            "cam_all_zero": exp.all_zero,
            # A stacked fusion: the map is the image network's; its weight in the probability.
            **({"image_weight": exp.image_weight} if exp.image_weight is not None else {}),
        }
    )
    if results is not None:
        summary["dicom"] = [str(p) for p in results.save(args.dicom_out)]
    print(json.dumps(summary, indent=2))
    return 0


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("image")
    p.add_argument(
        "--clinical",
        nargs="*",
        metavar="FIELD=VALUE",
        help="descriptors, e.g. composition=solid age=59",
    )
    p.add_argument("--roi", help="nodule box x0,y0,x1,y1 in frame pixels")
    p.add_argument("--frame", type=int, default=0, help="frame of a multi-frame DICOM (from 0)")
    p.add_argument("--device")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="P(malignant) for one image, as JSON")
    _add_image_options(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("explain", help="write a Grad-CAM overlay PNG for one image")
    _add_image_options(p)
    p.add_argument("--out", required=True, help="overlay PNG to write")
    p.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write the overlay (Secondary Capture) and result (Comprehensive SR) here",
    )
    p.add_argument("--alpha", type=float, default=0.35, help="heatmap opacity 0..1")
    p.add_argument(
        "--target",
        default="malignant",
        help="malignant (default), benign, or FIELD:VALUE for a run with descriptor heads "
        "(e.g. calcifications:microcalcifications)",
    )
    add_method_option(p)
    p.set_defaults(func=_cmd_explain)
