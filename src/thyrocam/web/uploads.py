"""The upload folder: read a named upload without ever leaving it, store one under a random name.

A ``filename`` is accepted only as one plain path component (letters, digits,
``.``, ``_``, ``-``; no ``..``, no separators, no ``%``), is opened with
``O_NOFOLLOW`` (a symbolic link is refused, wherever it points) and must be a
regular file whose folder resolves to the upload folder itself. Percent-encoded
names are never decoded again: ``..%2F..`` is rejected as it stands.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from thyrocam.errors import ImageTooLargeError
from thyrocam.web.errors import FilenameError, UnknownFileError

__all__ = ["FILENAME_PATTERN", "check_filename", "read_upload", "store_upload", "sniff_suffix"]

FILENAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ALLOWED = "a plain file name from a store=1 answer (letters, digits, '.', '_', '-'; no '..')"

# Only the extension of a stored upload comes from its content; the client's name is never used.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def check_filename(name: str) -> str:
    """Return ``name`` if it is one safe path component.

    Raises:
        FilenameError: anything else (``..``, ``/``, ``\\``, NUL, ``%``, absolute paths).
    """
    if not FILENAME_PATTERN.fullmatch(name) or ".." in name:
        raise FilenameError(
            f"filename: got {name!r}; allowed: {_ALLOWED}",
            field="filename",
            value=name,
            allowed=_ALLOWED,
        )
    return name


def read_upload(folder: str | os.PathLike, name: str, *, max_bytes: int) -> bytes:
    """Read an upload by name, never following a link or leaving ``folder``.

    Raises:
        FilenameError: ``name`` is not a plain file name.
        UnknownFileError: no regular file of that name directly in ``folder``.
        ImageTooLargeError: the file holds more than ``max_bytes`` bytes.
    """
    check_filename(name)
    root = Path(folder).resolve()
    path = root / name
    unknown = UnknownFileError(
        f"filename: got {name!r}; allowed: a file in the upload folder",
        field="filename",
        value=name,
        allowed="a stored upload",
    )
    try:
        # O_NONBLOCK: opening a FIFO planted in the folder must not hang the worker.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        # Missing, a symlink (ELOOP), unreadable: all look the same to the client.
        raise unknown from None
    # The name is one component, but the folder itself could have been swapped.
    if not stat.S_ISREG(os.fstat(fd).st_mode) or path.parent.resolve() != root:
        os.close(fd)
        raise unknown
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"filename: {name!r} holds more than {max_bytes} bytes; allowed: at most {max_bytes}",
            field="filename",
            value=name,
            allowed=f"<= {max_bytes} bytes",
        )
    return data


def sniff_suffix(data: bytes) -> str:
    """A file extension from the first bytes (``.img`` when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[128:132] == b"DICM":  # DICOM Part 10: the magic follows a 128-byte preamble
        return ".dcm"
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    return ".img"


def store_upload(folder: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` into ``folder`` under a new random name and return the name.

    The folder is created (mode 0700) if needed; the file is created exclusively
    (mode 0600), so an existing file is never overwritten.
    """
    root = Path(folder)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = secrets.token_hex(16) + sniff_suffix(data)
    fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name
