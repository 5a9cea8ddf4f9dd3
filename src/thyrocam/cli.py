"""The ``thyrocam`` command line: a thin shell over the package's functions.

A user's mistake ends with a one-line message on stderr and a non-zero exit
status (2), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from thyrocam import __version__
from thyrocam.errors import InputError, ThyrocamError

__all__ = ["main", "build_parser"]

log = logging.getLogger("thyrocam")


def _parse_clinical(pairs: Sequence[str] | None) -> dict[str, str]:
    from thyrocam.clinical import FIELDS

    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().lower()
        if not sep or key not in FIELDS:
            raise InputError(
                f"--clinical: got {pair!r}; allowed: FIELD=VALUE, FIELD one of {', '.join(FIELDS)}",
                field="clinical",
                value=pair,
                allowed=FIELDS,
            )
        out[key] = value
    return out


def _cmd_synth(args: argparse.Namespace) -> int:
    from thyrocam.data import make_synthetic_ddti

    out = make_synthetic_ddti(args.out, cases=args.cases, seed=args.seed)
    print(f"wrote {args.cases} synthetic cases to {out}")
    return 0


def _train_config(args: argparse.Namespace):
    from thyrocam.train import PRESETS, TrainConfig

    values: dict = dict(PRESETS[args.preset]) if args.preset else {}
    names = {f.name for f in fields(TrainConfig)}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if args.no_progress:
        values["progress"] = False
    return TrainConfig(**values)


def _cmd_train(args: argparse.Namespace) -> int:
    from thyrocam.train import train

    config = _train_config(args)
    metrics = train(args.data, out=args.out, config=config)
    summary = {
        "run": str(args.out),
        "best_epoch": metrics["best_epoch"],
        "train_seconds": round(metrics["train_seconds"], 1),
        "validation_auc": metrics["validation"]["auc"],
        "test": {k: metrics["test"][k] for k in ("auc", "sensitivity", "specificity", "accuracy")},
        "label_definition": metrics["label_definition"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from thyrocam.evaluate import evaluate
    from thyrocam.explain import get_cam_class
    from thyrocam.report import REPORT_METHODS, parse_ablation, write_report

    if not args.report and (args.ablation or args.methods):
        raise InputError(
            "--ablation/--methods: given without --report; allowed: with --report DIR",
            field="report",
            value=None,
        )
    # Option mistakes fail before the minutes of scoring.
    ablation = parse_ablation(args.ablation)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else REPORT_METHODS
    for method in methods:
        get_cam_class(method)
    result = evaluate(args.run, args.data, device=args.device, label_source=args.label_source)
    if args.report:
        path = write_report(
            args.run,
            args.data,
            out=args.report,
            device=args.device,
            ablation=ablation,
            methods=methods,
            max_cases=args.report_cases,
            label_source=args.label_source,
        )
        result["report"] = str(path)
    print(json.dumps(result, indent=2))
    return 0


def _load_predictor(args: argparse.Namespace):
    from thyrocam.predictor import Predictor

    return Predictor.load(args.run, device=args.device)


def _cmd_predict(args: argparse.Namespace) -> int:
    from thyrocam.imaging import parse_box

    predictor = _load_predictor(args)
    pred = predictor.predict(args.image, _parse_clinical(args.clinical), roi=parse_box(args.roi))
    print(json.dumps(pred.to_dict(), indent=2))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from thyrocam.imaging import parse_box

    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError(f"--out: folder {out.parent} does not exist", field="out", value=str(out))
    predictor = _load_predictor(args)
    exp = predictor.explain(
        args.image,
        _parse_clinical(args.clinical),
        roi=parse_box(args.roi),
        method=args.method,
        target=args.target,
        alpha=args.alpha,
    )
    tmp = out.with_name(out.name + ".tmp")
    exp.overlay.save(tmp, format="PNG")
    os.replace(tmp, out)
    summary = exp.prediction.to_dict()
    summary.update(
        {
            "overlay": str(out),
            "method": exp.method,
            "target": exp.target,
            "used_class_idx": exp.used_idx,
            "cam_all_zero": exp.all_zero,
        }
    )
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from thyrocam.web.serve import serve

    return serve(
        checkpoint=args.checkpoint,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        dev=args.dev,
        examples=args.examples,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thyrocam",
        description="Thyroid-nodule classification on ultrasound with Grad-CAM explanations.",
    )
    parser.add_argument("--version", action="version", version=f"thyrocam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic DDTI-format data set")
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--cases", type=int, default=400, help="number of cases (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train a model on a DDTI folder or CSV manifest")
    p.add_argument("data", help="DDTI folder (N.xml + N_V.jpg) or CSV manifest")
    p.add_argument("--out", required=True, help="run folder to write")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=("resnet18", "resnet50"))
    g.add_argument(
        "--modalities",
        choices=("both", "image", "clinical"),
        help="inputs the model may use (ablation); default both",
    )
    g.add_argument("--weights", help="'imagenet' (only if on disk), a state-dict path, or 'none'")
    g = p.add_argument_group("input")
    g.add_argument("--image-size", dest="image_size", type=int)
    g.add_argument("--preprocess", choices=("center_crop", "letterbox", "roi"))
    g.add_argument("--roi-margin", dest="roi_margin", type=float)
    g.add_argument("--label-source", dest="label_source", choices=("auto", "labels", "tirads"))
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", dest="batch_size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument(
        "--max-minutes",
        dest="max_minutes",
        type=float,
        help="time budget: run fewer epochs if the first shows they will not fit",
    )
    g.add_argument("--preset", choices=("demo", "tiny"), help="a named set of defaults")
    g.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate", help="score a run on a data set (its test split if trained on it)"
    )
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--report", help="also write report.html and metrics.json into this folder")
    g = p.add_argument_group("report")
    g.add_argument(
        "--ablation",
        nargs="*",
        metavar="KIND=RUN",
        help="single-modality runs trained on the same data and seed (--modalities image / "
        "clinical): image=RUN clinical=RUN",
    )
    g.add_argument(
        "--methods",
        help="comma-separated CAM methods to measure (default: gradcam, gradcam++, hirescam, "
        "layercam, layercam-fused)",
    )
    g.add_argument(
        "--report-cases",
        dest="report_cases",
        type=int,
        default=60,
        help="outlined held-out images whose explanations are measured (default 60)",
    )
    p.add_argument(
        "--label-source", dest="label_source", default="auto", choices=("auto", "labels", "tirads")
    )
    p.add_argument("--device")
    p.set_defaults(func=_cmd_evaluate)

    for name, helptext in (
        ("predict", "P(malignant) for one image, as JSON"),
        ("explain", "write a Grad-CAM overlay PNG for one image"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run")
        p.add_argument("image")
        p.add_argument(
            "--clinical",
            nargs="*",
            metavar="FIELD=VALUE",
            help="descriptors, e.g. composition=solid age=59",
        )
        p.add_argument("--roi", help="nodule box x0,y0,x1,y1 in frame pixels")
        p.add_argument("--device")
        if name == "explain":
            p.add_argument("--out", required=True, help="overlay PNG to write")
            p.add_argument("--alpha", type=float, default=0.35, help="heatmap opacity 0..1")
            p.add_argument("--target", choices=("malignant", "benign"), default="malignant")
            p.add_argument(
                "--method",
                default="gradcam",
                help="gradcam, gradcam++, hirescam, layercam, layercam-fused",
            )
            p.set_defaults(func=_cmd_explain)
        else:
            p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("serve", help="run the web app (gunicorn; --dev for Flask's server)")
    p.add_argument("--checkpoint", help="run folder (default: $THYROCAM_CHECKPOINT)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--examples", help="a DDTI folder whose cases the page offers as examples")
    p.add_argument("--dev", action="store_true", help="Flask's development server")
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except ThyrocamError as exc:
        print(f"thyrocam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
