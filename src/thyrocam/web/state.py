"""What one app process holds: the model (or why there is none), the upload folder, examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask

from thyrocam.predictor import Predictor
from thyrocam.web.examples import Example

__all__ = ["WebState", "get_state"]


@dataclass
class WebState:
    """What one process holds: the model (or why there is none) and the examples.

    Attributes:
        predictor: the loaded model, or ``None``.
        reason: why there is no model (``None`` when there is one).
        checkpoint: the configured checkpoint, as given.
        upload_dir: the upload folder (absolute; created only by ``store=1``).
        examples: the example cases offered by ``/examples``.
    """

    predictor: Predictor | None
    reason: str | None
    checkpoint: str | None
    upload_dir: Path
    examples: list[Example] = field(default_factory=list)


def get_state(app: Flask) -> WebState:
    """The :class:`WebState` that :func:`~thyrocam.web.create_app` attached to ``app``."""
    return app.extensions["thyrocam"]
