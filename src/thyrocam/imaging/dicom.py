"""DICOM frames: recognition, pixel decoding, colour spaces, frames, ultrasound regions.

A DICOM file is recognised by its content (``DICM`` at byte 128, or a bare
dataset that starts with a group 0002/0008 element), never by its name. Pixel
data is decoded with pydicom's decoders (native, RLE, and through the
pylibjpeg / python-gdcm plugins JPEG baseline/extended/lossless, JPEG-LS and
JPEG 2000); one frame is decoded, not the whole cine loop.

The result is the 8-bit RGB frame the rest of thyrocam works on, plus what the
header says about it: the largest tissue region of
``SequenceOfUltrasoundRegions`` (the network sees only that region, so the
scanner's burnt-in text and UI are cut away) and the pixel spacing in mm.

Patient data: the header is kept (the DICOM results must be filed in the
source's study), but nothing here logs it or puts any of its values in an
error message; pydicom's own warnings, which may quote header values, are
caught and only counted.

pydicom is imported inside the functions: users of PNG/JPEG never pay for it.
"""

from __future__ import annotations

import logging
import struct
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from PIL import Image

from thyrocam.errors import DicomError, DicomFrameError, ImageTooLargeError
from thyrocam.imaging.geometry import Box

__all__ = ["DICOM_PREAMBLE", "DicomFrame", "check_pixel_count", "looks_like_dicom", "read_dicom"]

log = logging.getLogger(__name__)

DICOM_PREAMBLE = 128  # bytes before the "DICM" magic in a Part 10 file
_EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_TISSUE = 1  # RegionDataType: tissue
_CM = 3  # PhysicalUnitsX/YDirection: centimetres


@dataclass(frozen=True)
class DicomFrame:
    """One decoded DICOM frame.

    Attributes:
        image: the whole frame, 8-bit RGB.
        index: the frame number decoded (0-based).
        frames: how many frames the object holds.
        region: the largest tissue region ``(x0, y0, x1, y1)`` (exclusive ends) in
            frame pixels, or ``None`` without ``SequenceOfUltrasoundRegions``.
        spacing_mm: ``(dx, dy)`` mm per pixel, or ``None`` when the header does not say.
        header: the dataset without its pixel data. It holds the patient's identity:
            never log it or return it (``repr`` leaves it out).
    """

    image: Image.Image
    index: int
    frames: int
    region: Box | None
    spacing_mm: tuple[float, float] | None
    header: Any = field(default=None, repr=False, compare=False)


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first bytes (at least 132 when available) are a DICOM file's."""
    if head[DICOM_PREAMBLE : DICOM_PREAMBLE + 4] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # A dataset written without preamble and meta header starts with its lowest
    # tag, which in an image is (0002,xxxx) or (0008,xxxx); no PNG/JPEG/GIF/BMP/TIFF
    # signature decodes to such a tag in either byte order.
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0100:
            continue
        if head[4:6] in _EXPLICIT_VRS:
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if length < 1024:  # implicit VR: a short element value
            return True
    return False


def check_pixel_count(*, width: int, height: int, max_pixels: int) -> None:
    """Raise ``ImageTooLargeError`` for a ``width x height`` frame over ``max_pixels``.

    Every decoder (PIL's and DICOM's) calls it from the header, before any pixel
    is decoded, so a decompression bomb never reaches memory.
    """
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image: {width}x{height} = {width * height} pixels; allowed: at most {max_pixels}",
            field="image",
            value=f"{width}x{height}",
            allowed=f"<= {max_pixels} pixels",
        )


def read_dicom(src: str | IO[bytes], *, frame: int = 0, max_pixels: int) -> DicomFrame:
    """Decode frame ``frame`` of a DICOM file (a path or a binary file object).

    Raises:
        DicomError: truncated or unreadable, no pixel data, a transfer syntax no
            installed decoder handles (HTTP 415).
        DicomFrameError: zero frames, ``frame`` out of range, a tissue region
            outside the image (HTTP 422).
        ImageTooLargeError: more than ``max_pixels`` pixels per frame.
    """
    ds = _read_dataset(src)
    rows, cols, frames = _geometry(ds)
    check_pixel_count(width=cols, height=rows, max_pixels=max_pixels)
    is_int = isinstance(frame, (int, np.integer)) and not isinstance(frame, bool)
    if not is_int or not 0 <= frame < frames:
        raise DicomFrameError(
            f"frame: got {frame!r}; allowed: an integer from 0 to {frames - 1} "
            f"(the file holds {frames} frame{'s' if frames > 1 else ''})",
            field="frame",
            value=frame,
            allowed=f"0..{frames - 1}",
        )
    region, spacing = _region_and_spacing(ds, cols, rows)
    rgb = _to_rgb8(ds, _decode(ds, int(frame)))
    header = _without_pixels(ds)
    return DicomFrame(
        image=Image.fromarray(rgb),
        index=int(frame),
        frames=frames,
        region=region,
        spacing_mm=spacing,
        header=header,
    )


def _read_dataset(src: str | IO[bytes]) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # force: a bare dataset (no preamble) was already recognised by its first tag.
            ds = pydicom.dcmread(src, force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, struct.error) as exc:
            raise DicomError(
                f"dicom: the file is truncated or corrupt ({exc.__class__.__name__}); "
                "allowed: a complete DICOM file",
                field="image",
                value=None,
                allowed="a complete DICOM file",
            ) from None
    if caught:
        # pydicom's warnings can quote header values (names included): count them only.
        log.debug("dicom: %d reader warning(s) while parsing the header", len(caught))
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise DicomError(
            "dicom: PixelData: the file holds no pixel data (not an image object); "
            "allowed: a DICOM image with PixelData",
            field="PixelData",
            value=None,
            allowed="a DICOM image with PixelData",
        )
    if "PixelData" not in ds:
        raise DicomError(
            "dicom: PixelData: float pixel data (parametric maps) is not an ultrasound frame; "
            "allowed: integer PixelData",
            field="PixelData",
            value="FloatPixelData",
            allowed="integer PixelData",
        )
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Any) -> None:
    """Name the transfer syntax of a dataset read without a meta header; check a decoder exists."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        # A bare dataset: the encoding pydicom detected while reading is the syntax.
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    uid = UID(str(meta.TransferSyntaxUID))
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise DicomError(
            f"dicom: TransferSyntaxUID: got {uid} ({uid.name}); allowed: native (uncompressed), "
            "RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, deflated",
            field="TransferSyntaxUID",
            value=str(uid),
            allowed="native, RLE, JPEG, JPEG-LS, JPEG 2000, deflated",
        )


def _geometry(ds: Any) -> tuple[int, int, int]:
    """``(rows, cols, frames)``, each checked."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        raw_frames = ds.get("NumberOfFrames")
        frames = 1 if raw_frames in (None, "") else int(raw_frames)
        int(ds.SamplesPerPixel), int(ds.BitsAllocated), str(ds.PhotometricInterpretation)
    except (AttributeError, TypeError, ValueError):
        raise DicomError(
            "dicom: the image pixel module is incomplete (Rows, Columns, SamplesPerPixel, "
            "BitsAllocated, PhotometricInterpretation); allowed: a DICOM image with all of them",
            field="ImagePixelModule",
            value=None,
            allowed="Rows, Columns, SamplesPerPixel, BitsAllocated, PhotometricInterpretation",
        ) from None
    if frames < 1:
        raise DicomFrameError(
            f"dicom: NumberOfFrames: got {frames}; allowed: at least 1",
            field="NumberOfFrames",
            value=frames,
            allowed=">= 1",
        )
    if rows < 1 or cols < 1:
        raise DicomError(
            f"dicom: Rows x Columns: got {rows}x{cols}; allowed: at least 1x1",
            field="Rows",
            value=f"{rows}x{cols}",
            allowed=">= 1",
        )
    return rows, cols, frames


def _region_and_spacing(
    ds: Any, cols: int, rows: int
) -> tuple[Box | None, tuple[float, float] | None]:
    """The largest tissue region (first on a tie) and mm per pixel."""
    best: tuple[Box, Any] | None = None
    best_area = 0
    for item in ds.get("SequenceOfUltrasoundRegions") or []:
        if int(item.get("RegionDataType", 0) or 0) != _TISSUE:
            continue
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            x0 = y0 = x1 = y1 = -1
        # Exports that shrink a frame often keep the scanner's regions, which then
        # reach past the image: such a region is clipped. One with no pixel in the
        # image, or with its corners swapped, is an error.
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cols - 1), min(y1, rows - 1)
        if not (x0 <= x1 and y0 <= y1 and cx0 <= cx1 and cy0 <= cy1):
            raise DicomFrameError(
                f"dicom: SequenceOfUltrasoundRegions: tissue region ({x0}, {y0})-({x1}, {y1}) "
                f"lies outside the {cols}x{rows} image; allowed: a region inside the image",
                field="SequenceOfUltrasoundRegions",
                value=[x0, y0, x1, y1],
                allowed=f"min <= max, overlapping 0..{cols - 1} x 0..{rows - 1}",
            )
        x0, y0, x1, y1 = cx0, cy0, cx1, cy1
        area = (x1 - x0 + 1) * (y1 - y0 + 1)
        if area > best_area:  # strictly larger: the first region wins a tie
            best, best_area = ((float(x0), float(y0), float(x1 + 1), float(y1 + 1)), item), area
    if best is not None:
        box, item = best
        units = (item.get("PhysicalUnitsXDirection"), item.get("PhysicalUnitsYDirection"))
        deltas = (item.get("PhysicalDeltaX"), item.get("PhysicalDeltaY"))
        if units == (_CM, _CM) and all(d not in (None, 0) for d in deltas):
            return box, (abs(float(deltas[0])) * 10.0, abs(float(deltas[1])) * 10.0)
        return box, None
    spacing = ds.get("PixelSpacing")  # (row spacing, column spacing) in mm
    if spacing is not None and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
        return None, (float(spacing[1]), float(spacing[0]))
    return None, None


def _decode(ds: Any, index: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # as_rgb: YBR_FULL / YBR_FULL_422 (and the decoders' YBR_ICT/RCT) come out RGB.
            arr = pixel_array(ds, index=index, as_rgb=True)
        except (ValueError, RuntimeError, EOFError, OSError, IndexError, AttributeError) as exc:
            raise DicomError(
                f"dicom: PixelData: cannot decode frame {index} ({exc.__class__.__name__}: "
                "truncated or corrupt); allowed: complete pixel data",
                field="PixelData",
                value=None,
                allowed="complete pixel data",
            ) from None
    if caught:
        log.debug("dicom: %d decoder warning(s)", len(caught))
    return arr


def _to_rgb8(ds: Any, arr: np.ndarray) -> np.ndarray:
    """Decoded pixels -> uint8 ``(H, W, 3)``, by photometric interpretation."""
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        # Palette entries are 8 or 16 bits (the descriptor's third value).
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return _scale_to_8(rgb, bits) if bits > 8 else rgb.astype(np.uint8)
    if arr.ndim == 3:  # RGB after as_rgb (YBR converted by pydicom or the decoder)
        bits = int(ds.get("BitsStored", ds.BitsAllocated))
        return _scale_to_8(arr, bits) if bits > 8 else arr.astype(np.uint8)
    gray = _monochrome_to_8(ds, arr)
    if photometric == "MONOCHROME1":  # minimum is white
        gray = 255 - gray
    return np.repeat(gray[:, :, None], 3, axis=2)


def _scale_to_8(arr: np.ndarray, bits: int) -> np.ndarray:
    scaled = arr.astype(np.float64) * 255.0 / float(2**bits - 1)
    return np.round(scaled).clip(0, 255).astype(np.uint8)


def _monochrome_to_8(ds: Any, arr: np.ndarray) -> np.ndarray:
    """A grey frame -> uint8: rescale, then the first VOI window if any, else the used range.

    8-bit data without a window is kept exactly as stored.
    """
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if bits <= 8 and "WindowCenter" not in ds and (slope, intercept) == (1.0, 0.0):
        return arr.astype(np.uint8) if bits == 8 else _scale_to_8(arr, bits)
    values = arr.astype(np.float64) * slope + intercept
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        # PS3.3 C.11.2.1.2.1, the linear VOI function (first window when several).
        c = float(center[0] if _is_multi(center) else center)
        w = float(width[0] if _is_multi(width) else width)
        if w >= 1:
            scaled = ((values - (c - 0.5)) / (w - 1) + 0.5).clip(0, 1) * 255.0
            return np.round(scaled).astype(np.uint8)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - lo) / (hi - lo) * 255.0).astype(np.uint8)


def _is_multi(value: Any) -> bool:
    return not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__")


def _without_pixels(ds: Any) -> Any:
    """A copy of the header without the pixel data (kept for filing results in the study)."""
    from pydicom.dataset import Dataset

    header = Dataset()
    for elem in ds:
        if elem.keyword not in _PIXEL_TAGS:
            header.add(elem)
    header.file_meta = ds.file_meta
    return header
