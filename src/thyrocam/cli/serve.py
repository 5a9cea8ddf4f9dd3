"""``thyrocam serve``: the web app under gunicorn (or Flask's server with ``--dev``)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web app (gunicorn; --dev for Flask's server)")
    p.add_argument("--checkpoint", help="run folder (default: $THYROCAM_CHECKPOINT)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--examples", help="a DDTI folder whose cases the page offers as examples")
    p.add_argument("--dev", action="store_true", help="Flask's development server")
    p.set_defaults(func=_cmd_serve)
