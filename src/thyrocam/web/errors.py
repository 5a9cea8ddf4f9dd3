"""HTTP errors: thyrocam's exceptions (and Werkzeug's) as JSON ``{"error", "code"}``.

Every error the service answers, routing errors included, is JSON with a
human-readable ``error`` (naming the field, the value and what is allowed) and
a machine-readable ``code``; ``field`` is added when one field is at fault.
The status is the exception class's own ``http_status``.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from thyrocam.errors import InputError, ThyrocamError

__all__ = [
    "FilenameError",
    "UnknownFileError",
    "UnknownExampleError",
    "MissingImageError",
    "ModelUnavailableError",
    "error_response",
    "register_error_handlers",
]

log = logging.getLogger(__name__)


# Each class says its own HTTP status (``http_status``, see thyrocam.errors); a class
# that says nothing answers like its parent.
class FilenameError(InputError):
    """A ``filename`` that is not a plain file name (separators, ``..``, NUL, ...)."""

    code = "invalid_filename"


class UnknownFileError(InputError):
    """A well-formed ``filename`` that is not a regular file in the upload folder."""

    code = "unknown_filename"
    http_status = 404


class UnknownExampleError(InputError):
    """An example case number that the page does not offer."""

    code = "unknown_example"
    http_status = 404


class MissingImageError(InputError):
    """Neither ``file`` nor ``filename`` (or both) in a request."""

    code = "missing_image"


class ModelUnavailableError(ThyrocamError):
    """A model endpoint was called but no usable checkpoint is loaded."""

    code = "no_model"
    http_status = 503


def error_response(
    message: str, code: str, status: int, *, field: str | None = None
) -> tuple[Response, int]:
    """The JSON error body ``{"error", "code"[, "field"]}`` and its status."""
    body: dict[str, str] = {"error": message, "code": code}
    if field:
        body["field"] = field
    return jsonify(body), status


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _thyrocam_error(exc: ThyrocamError) -> tuple[Response, int]:
    status = exc.http_status
    if status == 500:
        log.error("unexpected %s: %s", type(exc).__name__, exc)
    return error_response(str(exc), exc.code, status, field=getattr(exc, "field", None))


def _too_large_message(exc: HTTPException) -> str:
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    size = request.content_length
    if limit is not None and size is not None and size > limit:
        return f"request: got {size} bytes; allowed: at most {limit} bytes (THYROCAM_MAX_UPLOAD_MB)"
    # Chunked bodies have no length up front; form text fields have their own limit.
    return f"request: larger than the server accepts; {exc.description}"


def _http_error(exc: HTTPException) -> tuple[Response, int] | Response:
    status = exc.code or 500
    codes = {413: "request_too_large", 500: "internal_error"}
    message = exc.description or exc.name
    if status == 413:
        message = _too_large_message(exc)
    if isinstance(exc, InternalServerError) and exc.original_exception is not None:
        # The traceback goes to the log, never to the client.
        log.error("unhandled error", exc_info=exc.original_exception)
        message = "internal server error; the server log has the details"
    response, _ = error_response(message, codes.get(status, _snake(exc.name)), status)
    for key, value in exc.get_headers():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response, status


def register_error_handlers(app: Flask) -> None:
    """Answer thyrocam errors and every HTTP error (404, 405, 413, 500 ...) as JSON."""
    app.register_error_handler(ThyrocamError, _thyrocam_error)
    app.register_error_handler(HTTPException, _http_error)
