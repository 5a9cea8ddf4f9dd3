"""Ultrasound DICOM written from real DDTI frames, for the DICOM tests.

Each object is what a scanner export looks like: one canvas with the scanner's
UI around two image panels (each a tissue region in
``SequenceOfUltrasoundRegions``), a larger non-tissue region that must be
ignored, several frames, and the patient/institution attributes filled with
marker strings that must never leak out of thyrocam (logs, answers, files).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Every identifying attribute holds a string with this prefix; a test greps for it.
MARKER = "ZQXMARK"
IDENTIFYING = {
    "PatientName": f"{MARKER}NAME^PATIENT",
    "PatientID": f"{MARKER}ID",
    "PatientBirthDate": "19230405",
    "PatientSex": "F",
    "OtherPatientIDs": f"{MARKER}OTHERID",
    "InstitutionName": f"{MARKER}INSTITUTION",
    "InstitutionAddress": f"{MARKER}ADDRESS",
    "InstitutionalDepartmentName": f"{MARKER}DEPARTMENT",
    "ReferringPhysicianName": f"{MARKER}REFERRER",
    "PerformingPhysicianName": f"{MARKER}PERFORMER",
    "OperatorsName": f"{MARKER}OPERATOR",
    "StationName": f"{MARKER}STATION",
    "AccessionNumber": f"{MARKER}ACC",
    "StudyID": f"{MARKER}SID"[:16],
    "StudyDescription": f"{MARKER}STUDYDESC",
}
# The canvas: 800x480, panel 1 (the DDTI frame, 560x360) at (12, 60), panel 2 (a
# 200x150 copy) at (588, 60); (x0, y0, x1, y1) with inclusive ends, as DICOM has them.
CANVAS = (800, 480)
PANEL_1 = (12, 60, 12 + 560 - 1, 60 + 360 - 1)
PANEL_2 = (588, 60, 588 + 200 - 1, 60 + 150 - 1)
DELTA_CM = 0.0075  # cm per pixel: 4 cm of depth over ~530 pixels, like a linear probe

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def canvas_frames(frame_paths: Sequence[Path]) -> list[np.ndarray]:
    """One 800x480 RGB scanner canvas (uint8 ``(480, 800, 3)``) per DDTI frame."""
    out = []
    for i, path in enumerate(frame_paths):
        ddti = Image.open(path).convert("RGB").resize((560, 360))
        canvas = Image.new("RGB", CANVAS, (24, 28, 40))  # the scanner's UI colour
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, CANVAS[0], 40), fill=(60, 70, 90))
        draw.text((10, 12), f"THY  L12-5  GAIN {40 + i}  DR 60", fill=(230, 230, 230))
        draw.text((600, 300), "TIRADS ?", fill=(250, 250, 0))
        canvas.paste(ddti, PANEL_1[:2])
        canvas.paste(ddti.resize((200, 150)), PANEL_2[:2])
        out.append(np.asarray(canvas).copy())
    return out


def _region(box: tuple[int, int, int, int], data_type: int, delta_cm: float | None):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RegionSpatialFormat = 1  # 2D
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = box[0], box[1]
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box[2], box[3]
    item.PhysicalUnitsXDirection = 3 if delta_cm else 0  # 3 = cm
    item.PhysicalUnitsYDirection = 3 if delta_cm else 0
    item.PhysicalDeltaX = delta_cm or 0.0
    item.PhysicalDeltaY = delta_cm or 0.0
    item.ReferencePixelX0 = 0
    item.ReferencePixelY0 = 0
    return item


def ultrasound_dataset(
    frames: Sequence[np.ndarray],
    *,
    compression: str = "jpeg",
    regions: Sequence[tuple[tuple[int, int, int, int], int]] | None = None,
    study_uid: str | None = None,
    quality: int = 95,
):
    """A US (multi-frame) image from ``(H, W, 3)`` uint8 frames.

    Args:
        compression: ``"jpeg"`` (baseline, YBR_FULL_422, 4:2:2) or ``"none"``
            (native RGB, lossless).
        regions: ``((x0, y0, x1, y1), RegionDataType)``; default: the two panels
            (tissue) and a whole-canvas non-tissue region listed first.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    height, width = frames[0].shape[:2]
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME if len(frames) > 1 else US_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.StudyDate, ds.StudyTime = "20240102", "101500"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer = "thyrocam-tests"
    ds.Laterality = "R"
    for keyword, value in IDENTIFYING.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
        ds.FrameTime = 40.0
        ds.FrameIncrementPointer = 0x00181063  # FrameTime
    if regions is None:
        regions = [((0, 0, width - 1, height - 1), 0x0002), (PANEL_1, 1), (PANEL_2, 1)]
    ds.SequenceOfUltrasoundRegions = [
        _region(box, kind, DELTA_CM if kind == 1 else None) for box, kind in regions
    ]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if compression == "jpeg":
        encoded = []
        for arr in frames:
            buf = io.BytesIO()
            # subsampling=1 is 4:2:2: what YBR_FULL_422 says.
            Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=1)
            encoded.append(buf.getvalue())
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = np.stack(list(frames)).astype(np.uint8).tobytes()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def to_bytes(ds, *, preamble: bool = True) -> bytes:
    """The dataset as a Part 10 file, or (``preamble=False``, native data only) a bare
    dataset: no preamble, no ``DICM``, no meta header."""
    import copy

    import pydicom

    buf = io.BytesIO()
    if preamble:
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()
    bare = copy.deepcopy(ds)
    bare.preamble = None
    del bare.file_meta
    pydicom.dcmwrite(buf, bare, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def post(client, path: str, data: dict):
    """``client.post(path, data=data)``, closing the request body afterwards.

    Werkzeug's test client spools a multipart body over 500 kB (a DICOM upload) to
    a temporary file that it never closes; left to the garbage collector it shows
    up as a ResourceWarning in whichever test runs next.
    """
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method="POST", data=data)
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()
