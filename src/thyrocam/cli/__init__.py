"""The ``thyrocam`` command line: a thin shell over the package's functions.

One module per command group, each with a ``register(subparsers)`` function;
:data:`COMMAND_MODULES` lists them in the order ``thyrocam --help`` shows.
A user's mistake ends with a one-line message on stderr and a non-zero exit
status (2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from thyrocam import __version__
from thyrocam.errors import ThyrocamError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

log = logging.getLogger("thyrocam")

#: Modules of this package that add sub-commands (``register(subparsers)``).
COMMAND_MODULES: tuple[str, ...] = (
    "data",
    "train",
    "image",
    "serve",
    "cv",
    "batch",
    "pacs",
)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (sub-commands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="thyrocam",
        description="Thyroid-nodule classification on ultrasound with Grad-CAM explanations.",
    )
    parser.add_argument("--version", action="version", version=f"thyrocam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and option errors: a status, not an exception
        return int(exc.code or 0)
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
