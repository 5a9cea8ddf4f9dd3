"""The multipart form of ``/predict`` and ``/explain``, read once, field by field.

Each reader returns a Python value or raises a :mod:`thyrocam.errors` class that
names the field, the value received and what is allowed; the error handler
turns it into JSON with the class's own HTTP status. Descriptor values and
images are validated by the layers that own them (``clinical``, ``imaging``).
"""

from __future__ import annotations

import math
import os

from flask import Request

from thyrocam.clinical import FIELDS
from thyrocam.errors import InputError
from thyrocam.explain.cam import TARGETS
from thyrocam.imaging import Box, parse_box
from thyrocam.web.errors import MissingImageError
from thyrocam.web.uploads import read_upload

__all__ = [
    "AUTO_TARGET",
    "DEFAULT_ALPHA",
    "DEFAULT_METHOD",
    "DEFAULT_TARGET",
    "TARGET_CHOICES",
    "flag",
    "image_bytes",
    "clinical",
    "roi",
    "frame",
    "alpha",
    "method",
    "target",
]

#: ``target=auto``: explain the predicted class (what the page sends).
AUTO_TARGET = "auto"
#: Without ``target`` the seed's default: evidence for malignant (the logit itself).
DEFAULT_TARGET = "malignant"
#: What ``target`` takes: the predicted class first (the page's default), then the classes.
TARGET_CHOICES: tuple[str, ...] = (AUTO_TARGET, *TARGETS)
DEFAULT_METHOD = "gradcam"
DEFAULT_ALPHA = 0.35

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("", "0", "false", "off", "no")


def flag(request: Request, name: str) -> bool:
    """A yes/no field: 1/0, true/false, on/off, yes/no; empty means no."""
    text = request.form.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(
        f"{name}: got {text!r}; allowed: 1 or 0 (also true/false, on/off, yes/no)",
        field=name,
        value=text,
        allowed=("1", "0"),
    )


def image_bytes(
    request: Request, *, upload_dir: str | os.PathLike, max_bytes: int
) -> tuple[bytes, str | None]:
    """The request's image -> ``(bytes, filename)``; ``filename`` only when it came by name.

    Raises:
        MissingImageError: neither ``file`` nor ``filename``, or both.
        FilenameError, UnknownFileError, ImageTooLargeError: see :func:`read_upload`.
    """
    upload = request.files.get("file")
    data = upload.read() if upload is not None else b""
    # A browser form with no file chosen still sends an empty, unnamed part.
    has_file = upload is not None and (bool(upload.filename) or bool(data))
    name = request.form.get("filename", "")
    if has_file and name:
        raise MissingImageError(
            "file/filename: got both; allowed: exactly one of them", field="file"
        )
    if has_file:
        return data, None
    if name:
        return read_upload(upload_dir, name, max_bytes=max_bytes), name
    raise MissingImageError(
        "file: got neither a file nor a filename; allowed: a multipart 'file' or a form "
        "'filename' from an earlier store=1 answer",
        field="file",
    )


def clinical(request: Request) -> dict[str, str] | None:
    """The six descriptors as sent when ``use_clinical`` is on, else ``None`` (all missing)."""
    if not flag(request, "use_clinical"):
        return None
    return {f: request.form.get(f, "") for f in FIELDS}


def roi(request: Request) -> Box | None:
    """``roi=x0,y0,x1,y1`` in frame pixels, or ``None``."""
    return parse_box(request.form.get("roi"))


def frame(request: Request) -> int:
    """``frame``: which frame of a multi-frame DICOM (from 0; default 0).

    The range is checked where the file is decoded (:mod:`thyrocam.imaging`, 422).
    """
    text = request.form.get("frame", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"frame: got {text!r}; allowed: a whole number from 0",
            field="frame",
            value=text,
            allowed="0, 1, 2, ...",
        ) from None


def alpha(request: Request) -> float:
    """The overlay opacity in [0, 1] (default :data:`DEFAULT_ALPHA`)."""
    text = request.form.get("alpha", "").strip()
    if not text:
        return DEFAULT_ALPHA
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(
            f"alpha: got {text!r}; allowed: a number from 0 to 1",
            field="alpha",
            value=text,
            allowed="0..1",
        )
    return value


def method(request: Request) -> str:
    """The CAM method as sent (the explain layer checks and canonicalises it)."""
    return request.form.get("method", "") or DEFAULT_METHOD


def target(request: Request) -> str:
    """The target as sent: :data:`AUTO_TARGET` (any case), or a name the explain layer checks."""
    text = request.form.get("target", "")
    if text.strip().lower() == AUTO_TARGET:
        return AUTO_TARGET
    return text or DEFAULT_TARGET
