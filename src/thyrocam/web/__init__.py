"""The web app: a Flask application factory serving the page and the HTTP API.

Run it with ``thyrocam serve`` (gunicorn) or any WSGI server::

    gunicorn --threads 4 'thyrocam.web:create_app()'

Configuration comes from :data:`DEFAULTS`, then the environment
(:data:`ENVIRONMENT`), then ``test_config``. The :class:`~thyrocam.Predictor` is
loaded once per process, here; its threads share it. Without a usable
checkpoint the app still starts: ``/health`` says why and the model endpoints
answer 503.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request

from thyrocam.errors import CheckpointError, InputError
from thyrocam.imaging import DEFAULT_MAX_PIXELS
from thyrocam.predictor import Predictor
from thyrocam.web.errors import register_error_handlers
from thyrocam.web.examples import load_examples
from thyrocam.web.state import WebState, get_state
from thyrocam.web.views import bp

__all__ = ["create_app", "WebState", "DEFAULTS", "ENVIRONMENT", "get_state"]

log = logging.getLogger(__name__)

#: Every configuration key, with its default.
DEFAULTS: dict[str, Any] = {
    # A run folder (or its model.safetensors); None: no model, model endpoints answer 503.
    "CHECKPOINT": None,
    # Where store=1 keeps uploads and `filename` reads them; None: ./uploads at start-up.
    "UPLOAD_DIR": None,
    # Request size limit in bytes (413 above it).
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # Decoded image size limit in pixels (413 above it; checked before decoding).
    "MAX_PIXELS": DEFAULT_MAX_PIXELS,
    # A DDTI-format folder whose cases the page offers as examples.
    "EXAMPLES": None,
    # How many example cases to offer.
    "EXAMPLES_LIMIT": 8,
    # torch device for the model; None: CUDA when present, else CPU.
    "DEVICE": None,
}


def _mebibytes(name: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 4096:
        raise InputError(
            f"{name}: got {text!r}; allowed: a number of megabytes from 0 to 4096",
            field=name,
            value=text,
            allowed="(0, 4096]",
        )
    return int(value * 1024 * 1024)


def _pixels(name: str, text: str) -> int:
    if not text.strip().isdecimal() or int(text) < 1:
        raise InputError(
            f"{name}: got {text!r}; allowed: a positive whole number of pixels",
            field=name,
            value=text,
            allowed="a positive integer",
        )
    return int(text)


def _text(_name: str, text: str) -> str | None:
    return text.strip() or None


#: Environment variable -> (configuration key, parser).
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "THYROCAM_CHECKPOINT": ("CHECKPOINT", _text),
    "THYROCAM_UPLOAD_DIR": ("UPLOAD_DIR", _text),
    "THYROCAM_MAX_UPLOAD_MB": ("MAX_CONTENT_LENGTH", _mebibytes),
    "THYROCAM_MAX_PIXELS": ("MAX_PIXELS", _pixels),
    "THYROCAM_EXAMPLES": ("EXAMPLES", _text),
    "THYROCAM_DEVICE": ("DEVICE", _text),
}


class _InMemoryRequest(Request):
    """Keeps file uploads in memory (``MAX_CONTENT_LENGTH`` bounds them), never in a temp file."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def _load_predictor(config: Mapping[str, Any]) -> tuple[Predictor | None, str | None]:
    checkpoint = config["CHECKPOINT"]
    if not checkpoint:
        return None, "no checkpoint configured (set THYROCAM_CHECKPOINT or --checkpoint)"
    try:
        predictor = Predictor.load(checkpoint, device=config["DEVICE"])
    except (CheckpointError, InputError, OSError) as exc:
        log.error("no model: %s", exc)
        return None, f"checkpoint {checkpoint}: {exc}"
    predictor.max_pixels = int(config["MAX_PIXELS"])
    log.info("model loaded from %s on %s", checkpoint, predictor.device)
    return predictor, None


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: configuration, model, examples, the blueprint and JSON errors.

    Args:
        test_config: overrides applied last (keys of :data:`DEFAULTS`, or any Flask key).

    Raises:
        InputError: an environment variable that cannot be parsed (it names the variable).
    """
    app = Flask(__name__)
    app.request_class = _InMemoryRequest
    app.config.from_mapping(DEFAULTS)
    for var, (key, parse) in ENVIRONMENT.items():
        if os.environ.get(var):
            app.config[key] = parse(var, os.environ[var])
    if test_config:
        app.config.from_mapping(test_config)
    upload_dir = Path(app.config["UPLOAD_DIR"] or Path.cwd() / "uploads").resolve()
    predictor, reason = _load_predictor(app.config)
    app.extensions["thyrocam"] = WebState(
        predictor=predictor,
        reason=reason,
        checkpoint=str(app.config["CHECKPOINT"]) if app.config["CHECKPOINT"] else None,
        upload_dir=upload_dir,
        examples=load_examples(app.config["EXAMPLES"], limit=int(app.config["EXAMPLES_LIMIT"])),
    )
    app.register_blueprint(bp)
    register_error_handlers(app)
    return app
