"""``thyrocam explain-batch``: explain a whole archive, resumably, locally or on Ray."""

from __future__ import annotations

import argparse
import json

from thyrocam.cli._common import add_method_option

__all__ = ["register"]


def _cmd_explain_batch(args: argparse.Namespace) -> int:
    from thyrocam.batch import explain_batch

    summary = explain_batch(
        args.run,
        args.data,
        out=args.out,
        method=args.method,
        target=args.target,
        batch_size=args.batch_size,
        workers=args.workers,
        shard=args.shard,
        overlays=args.overlays,
        alpha=args.alpha,
        device=args.device,
        ray=args.ray is not None,
        ray_address=args.ray or None,
        progress=not args.no_progress,
    )
    print(
        json.dumps(
            {
                "index": str(summary.index),
                "images": summary.total,
                "already_done": summary.skipped,
                "explained": summary.computed,
                "unreadable": summary.failed,
                "data_problems": len(summary.problems),
            },
            indent=2,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain-batch",
        help="CAMs for every image of a data set into DIR (index.parquet, one .npy each)",
        description="Explain every image of DATA (a DDTI folder, a CSV manifest or a folder "
        "of images). Results are written per image as they come, so running the same "
        "command again resumes an interrupted job.",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("data", help="DDTI folder, CSV manifest or folder of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_method_option(p)
    p.add_argument("--target", choices=("malignant", "benign"), default="malignant")
    p.add_argument("--batch-size", type=int, default=16, metavar="B")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="W",
        help="local: image-decoding processes (default 0); with --ray: actors (default 2)",
    )
    p.add_argument("--shard", metavar="I/N", help="only shard I of N (0 <= I < N)")
    p.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    p.add_argument("--alpha", type=float, default=0.35, help="overlay opacity 0..1")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda[:N]")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: join the cluster at ADDRESS, or start a local one",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_explain_batch)
