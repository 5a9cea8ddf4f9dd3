"""Exception types shared by every layer.

Every error a user can cause is an :class:`InputError` (a ``ValueError``) whose
message names the field, the value received and what is allowed, and whose
``code`` is a short machine-readable string the CLI and HTTP layers pass on.
Each class also carries ``http_status``, the status the web app answers it with
(inherited, so a new subclass answers like its parent unless it says otherwise).
:func:`check_choice` raises the one message every "value from a fixed list" check uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ThyrocamError",
    "InputError",
    "ClinicalValueError",
    "ImageError",
    "ImageTooLargeError",
    "DicomError",
    "DicomFrameError",
    "CheckpointError",
    "DataError",
    "TargetError",
    "check_choice",
]


class ThyrocamError(Exception):
    """Base class of every error raised on purpose by thyrocam."""

    code: str = "error"
    #: No user can cause a bare ThyrocamError: a server fault.
    http_status: int = 500


class InputError(ThyrocamError, ValueError):
    """A value supplied by the user is not acceptable.

    Args:
        message: full sentence naming the field, the value and what is allowed.
        field: the name of the offending field, when there is one.
        value: the value received.
        allowed: a short description (or tuple) of what is allowed.
    """

    code = "invalid_input"
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        allowed: Any = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = allowed


class ClinicalValueError(InputError):
    """A clinical descriptor outside its vocabulary or range."""

    code = "invalid_descriptor"
    http_status = 422


class ImageError(InputError):
    """Bytes or a file that cannot be decoded as an image."""

    code = "invalid_image"
    #: Unsupported Media Type: the bytes are not an image we can decode.
    http_status = 415


class ImageTooLargeError(ImageError):
    """An image over the pixel or byte limit (decompression bombs included)."""

    code = "image_too_large"
    http_status = 413


class DicomError(ImageError):
    """A DICOM file that cannot be decoded: truncated, no pixel data, a transfer syntax
    no installed decoder reads (415, like any undecodable image)."""

    code = "invalid_dicom"


class DicomFrameError(InputError):
    """A DICOM file that decodes but does not fit the request: zero frames, a frame
    index out of range, an ultrasound region outside the image."""

    code = "invalid_dicom_frame"
    http_status = 422


class DataError(InputError):
    """A data set (folder, manifest) that cannot be used."""

    code = "invalid_data"


class TargetError(InputError):
    """An explanation target naming an unknown field or value, or a head the run lacks.

    A well-formed ``"field:value"`` the run cannot explain is unprocessable (422); text
    that is not a target at all (neither a class nor ``field:value``) stays a plain
    :class:`InputError` (400).
    """

    code = "unknown_target"
    http_status = 422


class CheckpointError(ThyrocamError, ValueError):
    """A run folder or checkpoint that is missing, corrupt or mismatched."""

    code = "bad_checkpoint"


def check_choice(
    value: Any,
    *,
    field: str,
    allowed: Sequence[str],
    label: str | None = None,
    error: type[InputError] = InputError,
) -> None:
    """Raise ``error`` unless ``value`` is one of ``allowed``.

    The message reads ``"<label>: got <value!r>; allowed: a, b, c"`` (``label``
    defaults to ``field``); ``allowed`` is passed on unchanged as the error's
    ``allowed``, so the CLI and HTTP layers list the same choices.
    """
    if value not in allowed:
        raise error(
            f"{label or field}: got {value!r}; allowed: {', '.join(allowed)}",
            field=field,
            value=value,
            allowed=allowed,
        )
