"""Helpers every command shares: descriptor pairs, the predictor, --method, atomic output."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from thyrocam.errors import InputError

__all__ = [
    "parse_clinical",
    "load_predictor",
    "add_method_option",
    "check_out_folder",
    "replace_atomically",
]


def parse_clinical(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["composition=solid", "age=59"]`` -> ``{"composition": "solid", "age": "59"}``."""
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


def load_predictor(args: argparse.Namespace):
    """The run named by ``args.run`` on ``args.device``."""
    from thyrocam.predictor import Predictor

    return Predictor.load(args.run, device=args.device)


def add_method_option(p: argparse.ArgumentParser) -> None:
    """``--method``: any spelling of a CAM method (lower-cased), default ``gradcam``."""
    from thyrocam.explain.methods import METHOD_CHOICES, METHOD_NAMES

    p.add_argument(
        "--method",
        default="gradcam",
        type=str.lower,
        choices=METHOD_CHOICES,
        metavar="METHOD",
        help=f"{', '.join(METHOD_NAMES)} (default gradcam)",
    )


def check_out_folder(out: Path, *, option: str = "out") -> None:
    """Fail before any work when the folder an output goes into does not exist."""
    if not out.parent.is_dir():
        raise InputError(
            f"--{option}: folder {out.parent} does not exist", field=option, value=str(out)
        )


def replace_atomically(out: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``out``: a reader never sees half a file."""
    tmp = out.with_name(out.name + ".tmp")
    write(tmp)
    os.replace(tmp, out)
