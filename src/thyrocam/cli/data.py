"""``thyrocam synth``: a synthetic DDTI-format data set."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_synth(args: argparse.Namespace) -> int:
    from thyrocam.data import make_synthetic_ddti

    out = make_synthetic_ddti(args.out, cases=args.cases, seed=args.seed)
    print(f"wrote {args.cases} synthetic cases to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic DDTI-format data set")
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--cases", type=int, default=400, help="number of cases (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)
