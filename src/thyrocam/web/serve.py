"""``thyrocam serve``: the app under gunicorn (threads share one model per worker), or Flask's
development server with ``dev=True``.

The configuration travels to the workers in the environment (``THYROCAM_*``,
see :data:`thyrocam.web.ENVIRONMENT`); each worker builds the app with
:func:`thyrocam.web.create_app` and loads the model once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from thyrocam.errors import InputError
from thyrocam.web import create_app

__all__ = ["serve", "gunicorn_options"]

log = logging.getLogger(__name__)


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            f"--{name}: got {value!r}; allowed: a whole number from {low} to {high}",
            field=name,
            value=value,
            allowed=f"{low}..{high}",
        )
    return value


def gunicorn_options(*, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings :func:`serve` uses (validated)."""
    _check_int("port", port, 0, 65535)
    _check_int("workers", workers, 1, 64)
    _check_int("threads", threads, 1, 256)
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        # gthread: the threads of one worker share its Predictor (the CAM engine is
        # thread-safe), so memory holds one model per worker, not per thread.
        "worker_class": "gthread",
        # A CPU explanation of a large model under load can take seconds; 30 s (the
        # default) would kill a worker that is merely busy.
        "timeout": 120,
        "graceful_timeout": 30,
        "accesslog": "-",
    }


def serve(
    *,
    checkpoint: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    threads: int = 4,
    dev: bool = False,
    examples: str | None = None,
) -> int:
    """Run the web app until interrupted.

    Args:
        checkpoint: run folder; ``None`` keeps ``$THYROCAM_CHECKPOINT`` (or no model).
        host, port: where to listen.
        workers: gunicorn worker processes (each loads the model once).
        threads: threads per worker, sharing that worker's model.
        dev: Flask's development server instead of gunicorn (one process, threaded).
        examples: a DDTI folder whose cases the page offers (``$THYROCAM_EXAMPLES``).

    Returns:
        The exit status (0 after a clean shutdown).

    Raises:
        InputError: a port, worker or thread count out of range.
    """
    options = gunicorn_options(host=host, port=port, workers=workers, threads=threads)
    if checkpoint:
        os.environ["THYROCAM_CHECKPOINT"] = os.fspath(checkpoint)
    if examples:
        os.environ["THYROCAM_EXAMPLES"] = os.fspath(examples)
    if dev:
        create_app().run(host=host, port=port, threaded=True, use_reloader=False)
        return 0
    return _run_gunicorn(options)


def _run_gunicorn(options: dict[str, Any]) -> int:
    # gunicorn does not import on Windows; --dev must work there without it.
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Called in each worker (no preload): every worker loads its own model.
            return create_app()

    try:
        _App().run()
    except SystemExit as exc:
        # gunicorn's arbiter ends with sys.exit(); the CLI wants the status back.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
