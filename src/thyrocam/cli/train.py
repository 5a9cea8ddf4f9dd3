"""``thyrocam train`` and ``thyrocam evaluate``."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import fields
from typing import get_args

from thyrocam.data.samples import LabelSource
from thyrocam.errors import InputError
from thyrocam.imaging import PREPROCESS_MODES
from thyrocam.model import ARCHS, DECODERS, MODALITIES, POOLS

__all__ = ["register", "add_train_options", "train_config"]

LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)


def train_config(args: argparse.Namespace):
    """A ``TrainConfig`` from a preset and the options given (given options win)."""
    from thyrocam.train import PRESETS, TrainConfig

    values: dict = dict(PRESETS[args.preset]) if args.preset else {}
    names = {f.name for f in fields(TrainConfig)}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if args.no_progress:
        values["progress"] = False
    if values.get("locator") == "none":  # the option's way to say None
        values["locator"] = None
    return TrainConfig(**values)


def _at_least(bound: float) -> Callable[[str], float]:
    """An argparse type: a number ``>= bound`` (NaN and text refused, naming the bound)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= bound:  # also NaN
            raise argparse.ArgumentTypeError(f"{text!r}: allowed is a number >= {bound:g}")
        return value

    return parse


_non_negative = _at_least(0.0)
# The ROI jitter scales the box by 0.85 up to --roi-zoom.
_zoom = _at_least(0.85)


def _share(text: str) -> float:
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed is a number from 0 to 1")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from thyrocam.train import train

    config = train_config(args)
    metrics = train(args.data, out=args.out, config=config)
    summary = {
        "run": str(args.out),
        "best_epoch": metrics["best_epoch"],
        "kept_epoch": metrics["kept_epoch"],
        "train_seconds": round(metrics["train_seconds"], 1),
        "validation_auc": metrics["validation"]["auc"],
        "test": {k: metrics["test"][k] for k in ("auc", "sensitivity", "specificity", "accuracy")},
        "label_definition": metrics["label_definition"],
    }
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary (rank 0's)
        print(json.dumps(summary, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from thyrocam.evaluate import record_evaluation, score_run
    from thyrocam.report import (
        REPORT_METHODS,
        ReportOptions,
        build_report,
        parse_ablation,
        save_report,
    )

    if not args.report and (args.ablation or args.methods):
        raise InputError(
            "--ablation/--methods: given without --report; allowed: with --report DIR",
            field="report",
            value=None,
        )
    # Option mistakes (ReportOptions checks the methods) fail before the minutes of scoring.
    ablation = parse_ablation(args.ablation)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else REPORT_METHODS
    options = None
    if args.report:
        options = ReportOptions(
            device=args.device,
            ablation=ablation,
            methods=methods,
            max_cases=args.report_cases,
            label_source=args.label_source,
        )
    # One scoring: the report reuses these probabilities and metrics.json gets the same numbers.
    scored = score_run(args.run, args.data, device=args.device, label_source=args.label_source)
    report = build_report(args.run, args.data, options=options, scored=scored) if options else None
    result = record_evaluation(scored)
    if report is not None:
        result["report"] = str(save_report(report, out=args.report))
    print(json.dumps(result, indent=2))
    return 0


def _heads(text: str) -> tuple[str, ...]:
    from thyrocam.model import HEADS

    heads = tuple(h.strip() for h in text.split(",") if h.strip())
    bad = [h for h in heads if h not in HEADS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"got {bad[0]!r}; allowed: a comma-separated list of {', '.join(HEADS)}"
        )
    return heads


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of ``train`` (also taken by commands that train, such as ``cv``)."""
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=ARCHS)
    g.add_argument(
        "--modalities", choices=MODALITIES, help="inputs the model may use (ablation); default both"
    )
    g.add_argument(
        "--weights",
        help="backbone weights: 'imagenet' (only if on disk), a local state dict "
        "(.pth/.pt, read with weights_only=True) or .safetensors of the torchvision ResNet, "
        "or 'none'",
    )
    g.add_argument(
        "--heads",
        type=_heads,
        help="comma-separated heads besides malignancy: outline, descriptors "
        "(default: every head the data supports, none for --modalities clinical; "
        "'malignancy' for none)",
    )
    g.add_argument(
        "--pool",
        choices=POOLS,
        help="image features: layer4's 'mean' (default), or its mean weighted by the "
        "model's own predicted 'outline' (a run without the outline head averages)",
    )
    g.add_argument(
        "--decoder",
        choices=DECODERS,
        help="the outline head's decoder: 'fpn' (default: one convolution after the "
        "top-down merge) or 'unet' (64 channels, a convolution after every merge, trained "
        "beside an auxiliary 'fpn' head: finds the nodule on whole frames more often, "
        "trains about 2x slower)",
    )
    g.add_argument(
        "--locator",
        choices=(*DECODERS, "none"),
        help="also train a separate image-only network that only finds the nodule for the "
        "automatic box, with this outline decoder and the unlabelled cases' outlines too "
        "('none': the model's own outline head finds it; --preset ddti: 'unet')",
    )
    g.add_argument(
        "--fusion",
        choices=("joint", "stacked"),
        help="how a 'both' model joins image and descriptors: 'joint' (default: one network "
        "trained end to end) or 'stacked' (the descriptor regression plus a weight on the "
        "image-only network's logit, fitted on cross-fitted logits; --preset ddti)",
    )
    g.add_argument("--init-from", dest="init_from", help="start from this run's weights")
    g.add_argument(
        "--pretrain-synthetic",
        dest="pretrain_synthetic",
        type=int,
        metavar="N",
        help="first fit on N synthetic cases (true descriptors and outlines)",
    )
    _add_input_options(p)
    _add_optimisation_options(p)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--image-size", dest="image_size", type=int)
    g.add_argument("--preprocess", choices=PREPROCESS_MODES)
    g.add_argument("--roi-margin", dest="roi_margin", type=float)
    g.add_argument(
        "--roi-min-side",
        dest="roi_min_side",
        type=float,
        help="smallest ROI crop side in frame pixels, so nodule size stays visible",
    )
    g.add_argument(
        "--roi-shift",
        dest="roi_shift",
        type=_non_negative,
        help="training jitter: the ROI box's centre moves up to this share of its side",
    )
    g.add_argument(
        "--roi-zoom",
        dest="roi_zoom",
        type=_zoom,
        help="training jitter: the ROI box's side is scaled by 0.85 to this",
    )
    g.add_argument("--label-source", dest="label_source", choices=LABEL_SOURCES)
    g.add_argument("--augmentation", choices=("basic", "ultrasound"))
    g.add_argument(
        "--outline-size",
        dest="outline_size",
        type=int,
        help="side of the whole-frame input the outline head learns (default: --image-size)",
    )
    g.add_argument(
        "--outline-box-weight",
        dest="outline_box_weight",
        type=_non_negative,
        metavar="W",
        help="weight of the outline's box term: Dice of the mask's row and column maxima "
        "(0: none; --preset ddti uses it)",
    )
    g.add_argument(
        "--outline-frame-share",
        dest="outline_frame_share",
        type=_share,
        metavar="F",
        help="the whole frames' share of the outline loss, the crops having the rest "
        "(default 0.5)",
    )
    g.add_argument(
        "--unlabelled-outlines",
        dest="unlabelled_outlines",
        action=argparse.BooleanOptionalAction,
        help="also train the outline head on the outlined frames of cases without a label "
        "(never scored): finds the nodule on whole frames a little more often",
    )


def _add_optimisation_options(p: argparse.ArgumentParser) -> None:
    from thyrocam.train import PRESETS

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", dest="batch_size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument(
        "--max-minutes",
        dest="max_minutes",
        type=float,
        help="a time cap on the main network's epochs: stop early (and say so in "
        "metrics.json) if they will not fit; pretraining, half networks and the locator "
        "are not capped",
    )
    g.add_argument("--preset", choices=tuple(PRESETS), help="a named set of defaults")
    g.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    from thyrocam.explain.methods import METHOD_NAMES

    p = sub.add_parser("train", help="train a model on a DDTI folder or CSV manifest")
    p.add_argument("data", help="DDTI folder (N.xml + N_V.jpg) or CSV manifest")
    p.add_argument("--out", required=True, help="run folder to write")
    add_train_options(p)
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
        help=f"comma-separated CAM methods to measure (default: {', '.join(METHOD_NAMES)})",
    )
    g.add_argument(
        "--report-cases",
        dest="report_cases",
        type=int,
        default=60,
        help="outlined held-out images whose explanations are measured (default 60)",
    )
    p.add_argument("--label-source", dest="label_source", default="auto", choices=LABEL_SOURCES)
    p.add_argument("--device")
    p.set_defaults(func=_cmd_evaluate)
