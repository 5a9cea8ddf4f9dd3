"""Decode a path, bytes, a file object or a PIL image into an 8-bit RGB frame.

DICOM is recognised by content (see :mod:`thyrocam.imaging.dicom`), whatever the
file is called; everything else goes to Pillow.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from thyrocam.errors import DicomFrameError, ImageError, ImageTooLargeError
from thyrocam.imaging.dicom import DICOM_PREAMBLE, check_pixel_count, looks_like_dicom, read_dicom
from thyrocam.imaging.geometry import Box

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "Frame", "load_frame", "load_image"]

# 40 Mpx: far above any ultrasound frame (DDTI is 0.2 Mpx), far below what a
# decompression bomb expands to.
DEFAULT_MAX_PIXELS = 40_000_000
ImageSource = str | os.PathLike | bytes | bytearray | IO[bytes] | Image.Image


@dataclass(frozen=True)
class Frame:
    """A decoded frame and what its file says about it.

    Attributes:
        image: the whole frame, 8-bit RGB (EXIF orientation applied).
        index: the DICOM frame number, ``None`` for an ordinary image file.
        frames: how many frames the source holds (1 for an ordinary image).
        region: the ultrasound tissue region the network should see,
            ``(x0, y0, x1, y1)`` in frame pixels, or ``None`` (the whole frame).
        spacing_mm: ``(dx, dy)`` mm per pixel, ``None`` when unknown.
        dicom: the DICOM header without pixel data (``None`` otherwise). It holds
            the patient's identity: never log or return it (``repr`` leaves it out).
    """

    image: Image.Image
    index: int | None = None
    frames: int = 1
    region: Box | None = None
    spacing_mm: tuple[float, float] | None = None
    dicom: Any = field(default=None, repr=False, compare=False)

    @property
    def is_dicom(self) -> bool:
        return self.dicom is not None


def load_frame(src: ImageSource, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """Decode ``src`` (any image file or DICOM, told apart by content) into a :class:`Frame`.

    Args:
        src: a path, bytes, a binary file object or a PIL image.
        frame: which frame of a multi-frame DICOM (0-based); an ordinary image has only 0.
        max_pixels: refuse frames with more pixels (checked before decoding).

    Raises:
        ImageError: not a decodable image or DICOM (``DicomError`` for DICOM problems).
        DicomFrameError: ``frame`` out of range, zero frames, a region outside the image.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    if not isinstance(src, Image.Image):
        dicom_src = _dicom_source(src)
        if dicom_src is not None:
            got = read_dicom(dicom_src, frame=frame, max_pixels=max_pixels)
            return Frame(
                image=got.image,
                index=got.index,
                frames=got.frames,
                region=got.region,
                spacing_mm=got.spacing_mm,
                dicom=got.header,
            )
    if isinstance(frame, bool) or frame != 0:
        raise DicomFrameError(
            f"frame: got {frame!r}; allowed: 0 (an ordinary image holds one frame)",
            field="frame",
            value=frame,
            allowed="0",
        )
    return Frame(image=_load_pil(src, max_pixels=max_pixels))


def load_image(
    src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, frame: int = 0
) -> Image.Image:
    """Decode ``src`` into an 8-bit RGB PIL image, EXIF orientation applied.

    Accepts a path, bytes, a binary file object or a PIL image; DICOM (by content)
    as well as PNG, JPEG, BMP, TIFF, GIF, WebP. Grayscale, palette, RGBA
    (composited on black) and 16-bit images are converted. For DICOM this is the
    whole frame; :func:`load_frame` also gives its ultrasound region and spacing.

    Raises:
        ImageError: not a decodable image (or the path does not exist).
        ImageTooLargeError: more than ``max_pixels`` pixels (checked before decoding).
    """
    return load_frame(src, frame=frame, max_pixels=max_pixels).image


def _dicom_source(src: ImageSource) -> str | IO[bytes] | None:
    """``src`` as something pydicom reads, when its first bytes are DICOM; else ``None``."""
    if isinstance(src, (bytes, bytearray)):
        head = bytes(src[: DICOM_PREAMBLE + 4])
        return io.BytesIO(bytes(src)) if looks_like_dicom(head) else None
    if isinstance(src, (str, os.PathLike)):
        try:
            with open(src, "rb") as fh:
                head = fh.read(DICOM_PREAMBLE + 4)
        except OSError:
            return None  # Pillow's branch reports the missing file
        return os.fspath(src) if looks_like_dicom(head) else None  # type: ignore[return-value]
    if hasattr(src, "read") and hasattr(src, "seek"):
        start = src.tell()
        head = src.read(DICOM_PREAMBLE + 4)
        src.seek(start)
        return src if looks_like_dicom(head) else None
    return None


def _load_pil(src: ImageSource, *, max_pixels: int) -> Image.Image:
    if isinstance(src, Image.Image):
        img = src
    else:
        try:
            if isinstance(src, (bytes, bytearray)):
                fp: IO[bytes] | str | os.PathLike = io.BytesIO(bytes(src))
            else:
                fp = src
            with warnings.catch_warnings():
                # Pillow warns between its limit and twice it; the explicit pixel
                # check below decides instead (with a clear error), so silence it.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                # Damaged TIFF/EXIF metadata only warns; the pixels below decode or raise.
                warnings.simplefilter("ignore", UserWarning)
                img = Image.open(fp)
        except FileNotFoundError:
            raise ImageError(
                f"image: file not found: {os.fspath(src)!s}",  # type: ignore[arg-type]
                field="image",
                value=str(src),
                allowed="an existing image file",
            ) from None
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                f"image: too many pixels ({exc}); allowed: at most {max_pixels} pixels",
                field="image",
                value=None,
                allowed=f"<= {max_pixels} pixels",
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            # Name the file when there is one; uploaded bytes are described by size only.
            what = (
                f"{len(src)} bytes"
                if isinstance(src, (bytes, bytearray))
                else str(getattr(src, "name", None) or os.fspath(src))
                if isinstance(src, (str, os.PathLike)) or hasattr(src, "name")
                else "the data"
            )
            raise ImageError(
                f"image: got {what}, which is not a decodable image "
                f"({exc.__class__.__name__}); allowed: PNG, JPEG, BMP, TIFF, GIF, WebP or DICOM",
                field="image",
                value=what,
                allowed="PNG, JPEG, BMP, TIFF, GIF, WebP, DICOM",
            ) from None
    width, height = img.size
    # The header is read lazily, so the size is known before any pixel is decoded.
    check_pixel_count(width=width, height=height, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF: orientation unknown
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(
            f"image: the data is truncated or corrupt ({exc}); allowed: a complete image file",
            field="image",
            value=None,
            allowed="a complete image file",
        ) from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float scans: stretch the used range to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.round().astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")
