"""DICOM results of one explanation: a Secondary Capture and a Comprehensive SR.

* The **Secondary Capture** is the overlay (the CAM on the whole original
  frame), RGB, 8 bits.
* The **Comprehensive SR** holds P(malignant), the label and the threshold, the
  descriptors as entered (and as estimated, when the run estimates them), the
  ACR TI-RADS points and level, the CAM method and target, and the model's
  name, version and the SHA-256 of its ``model.safetensors``.

Both go in the source's study, in one new series, and reference the source
instance (and frame). A non-DICOM input gets a new study with no patient
identity (the Type 2 patient attributes are present and empty).

Concepts without a standard code use the private coding scheme ``99THYROCAM``
(declared in ``CodingSchemeIdentificationSequence``); the algorithm name and
version use DCM 111001/111003, units UCUM. Each probability is stored both as a
decimal string and as the exact float (``FloatingPointValue``), so reading the
SR back gives the JSON's numbers.

Built with highdicom; checked with ``dciodvfy`` in the tests.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from thyrocam.clinical import FIELDS

if TYPE_CHECKING:
    from thyrocam.predictor import Explanation

__all__ = ["DicomResults", "build_results", "SCHEME", "concept"]

log = logging.getLogger(__name__)

SCHEME = "99THYROCAM"  # private coding scheme: "99" prefix per PS3.16 8.2
MANUFACTURER = "thyrocam"
SERIES_NUMBER = 9001  # a number far above a scanner's series, so the results sort last
_UNITLESS = CodedConcept("1", "UCUM", "no units")
_MM = CodedConcept("mm", "UCUM", "millimeter")
_YEARS = CodedConcept("a", "UCUM", "year")
_POINTS = CodedConcept("{points}", "UCUM", "points")


def concept(value: str, meaning: str) -> CodedConcept:
    """A concept of the private ``99THYROCAM`` scheme."""
    return CodedConcept(value, SCHEME, meaning)


# Concept names; the SR's reader (and the tests) look items up by these meanings.
REPORT = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
P_MALIGNANT = concept("PMALIG", "Probability of malignancy")
LABEL = concept("LABEL", "Predicted class")
THRESHOLD = concept("THRESH", "Decision threshold")
ENTERED = concept("ENTERED", "Descriptors as entered")
ESTIMATED = concept("ESTIMATED", "Descriptors estimated from the image")
TIRADS_POINTS = concept("TRPOINTS", "ACR TI-RADS points")
TIRADS_LEVEL = concept("TRLEVEL", "ACR TI-RADS level")
CAM_METHOD = concept("CAM", "Class activation map method")
CAM_TARGET = concept("CAMTARGET", "Explained target")
ALGORITHM_NAME = CodedConcept("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = CodedConcept("111003", "DCM", "Algorithm Version")
WEIGHTS_SHA256 = concept("SHA256", "SHA-256 of model.safetensors")
SOURCE_IMAGE = concept("SOURCE", "Source image")
OVERLAY_IMAGE = concept("OVERLAY", "Class activation map overlay")
ROI_WIDTH = concept("ROIW", "Nodule box width")
ROI_HEIGHT = concept("ROIH", "Nodule box height")


@dataclass(frozen=True)
class DicomResults:
    """The two result objects (pydicom datasets built by highdicom)."""

    sc: Dataset
    sr: Dataset

    def files(self) -> dict[str, bytes]:
        """``{file name: Part 10 bytes}``: ``sc_<uid>.dcm`` and ``sr_<uid>.dcm``."""
        out = {}
        for prefix, ds in (("sc", self.sc), ("sr", self.sr)):
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            out[f"{prefix}_{ds.SOPInstanceUID}.dcm"] = buf.getvalue()
        return out

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write both files into ``out_dir`` (created if needed); returns their paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in self.files().items():
            path = folder / name
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # never a half-written file under the final name
            paths.append(path)
        return paths


def build_results(explanation: Explanation) -> DicomResults:
    """The SC and SR for one :class:`~thyrocam.predictor.Explanation`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _build(explanation)
    if caught:
        # highdicom's warnings quote header values (e.g. a person name it finds odd):
        # the patient's data stays out of logs, so only their number is logged.
        log.debug("dicom results: %d highdicom warning(s) while building", len(caught))
    return results


def _build(explanation: Explanation) -> DicomResults:
    source = explanation.source
    header = source.dicom if source is not None else None
    ref = header if header is not None else _new_study_reference()
    series_uid = generate_uid()
    sc = _secondary_capture(explanation, ref, series_uid=series_uid)
    if header is None:
        # The placeholder reference is not an instance anyone holds: the SR's
        # evidence is the overlay alone.
        evidence, source_item = [sc], None
    else:
        evidence = [header, sc]
        frame_number = (
            (source.index or 0) + 1 if int(header.get("NumberOfFrames", 1) or 1) > 1 else None
        )
        source_item = hd.sr.ImageContentItem(
            name=SOURCE_IMAGE,
            referenced_sop_class_uid=header.SOPClassUID,
            referenced_sop_instance_uid=header.SOPInstanceUID,
            referenced_frame_numbers=frame_number,
            relationship_type="CONTAINS",
        )
    content = _content(explanation, sc=sc, source_item=source_item)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=content,
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=2,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # an algorithm's output, not a verified clinical report
        is_verified=False,
        series_description="thyrocam result",
    )
    _declare_scheme(sr)
    return DicomResults(sc=sc, sr=sr)


def _new_study_reference() -> Dataset:
    """A new study for a non-DICOM input: its UID and date, no patient identity."""
    ref = Dataset()
    ref.StudyInstanceUID = generate_uid()
    now = datetime.now()
    ref.StudyDate = now.strftime("%Y%m%d")
    ref.StudyTime = now.strftime("%H%M%S")
    return ref


def _secondary_capture(explanation: Explanation, ref: Dataset, *, series_uid: str) -> Any:
    overlay = np.asarray(explanation.overlay.convert("RGB"), dtype=np.uint8)
    laterality = str(ref.get("Laterality", "") or "")
    kwargs: dict[str, Any] = dict(
        pixel_array=overlay,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        # highdicom wants a valid pair here; it is replaced below by the source's
        # value or left empty (Type 2C): nothing in a frame says the orientation.
        patient_orientation=("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description="thyrocam CAM overlay",
    )
    from_source = "SOPInstanceUID" in ref
    if from_source:
        sc = hd.sc.SCImage.from_ref_dataset(ref_dataset=ref, **kwargs)
    else:
        sc = hd.sc.SCImage(
            study_instance_uid=ref.StudyInstanceUID,
            patient_id=None,
            patient_name=None,
            study_date=ref.StudyDate,
            study_time=ref.StudyTime,
            **kwargs,
        )
    # Type 2C: required for a paired organ (the thyroid's lobes); empty when unknown.
    sc.Laterality = laterality if laterality in ("R", "L") else ""
    orientation = ref.get("PatientOrientation")
    sc.PatientOrientation = list(orientation) if orientation and len(orientation) == 2 else ""
    sc.BurnedInAnnotation = "YES"  # the source's burnt-in text is still in the frame
    sc.DerivationDescription = (
        f"{explanation.method} class activation map ({explanation.target}) "
        f"blended at alpha {explanation.alpha:g} on the source frame"
    )
    if from_source:
        source = Dataset()
        source.ReferencedSOPClassUID = ref.SOPClassUID
        source.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        if int(ref.get("NumberOfFrames", 1) or 1) > 1:
            source.ReferencedFrameNumber = (explanation.source.index or 0) + 1
        sc.SourceImageSequence = [source]
    return sc


def _content(explanation: Explanation, *, sc: Any, source_item: Any) -> Any:
    pred = explanation.prediction
    items: list[Any] = [
        hd.sr.NumContentItem(
            name=P_MALIGNANT, value=float(pred.probability), unit=_UNITLESS,
            relationship_type="CONTAINS",
        ),
        hd.sr.TextContentItem(name=LABEL, value=pred.label, relationship_type="CONTAINS"),
        hd.sr.NumContentItem(
            name=THRESHOLD, value=float(pred.threshold), unit=_UNITLESS,
            relationship_type="CONTAINS",
        ),
    ]  # fmt: skip
    items.append(_descriptors(ENTERED, pred.clinical))
    estimated = getattr(pred, "estimated", None)
    if estimated:
        items.append(_estimated(estimated))
    tirads = pred.tirads
    items.append(
        hd.sr.NumContentItem(
            name=TIRADS_POINTS, value=int(tirads.total), unit=_POINTS,
            relationship_type="CONTAINS",
        )
    )  # fmt: skip
    items.append(
        hd.sr.TextContentItem(name=TIRADS_LEVEL, value=tirads.level, relationship_type="CONTAINS")
    )
    roi_mm = pred.roi_mm() if hasattr(pred, "roi_mm") else None
    if roi_mm is not None:
        for name, size in ((ROI_WIDTH, roi_mm[2] - roi_mm[0]), (ROI_HEIGHT, roi_mm[3] - roi_mm[1])):
            items.append(
                hd.sr.NumContentItem(
                    name=name, value=float(size), unit=_MM, relationship_type="CONTAINS"
                )
            )
    model = dict(explanation.model or {})
    for name, value in (
        (CAM_METHOD, explanation.method),
        (CAM_TARGET, explanation.target),
        (ALGORITHM_NAME, model.get("name", "thyrocam")),
        (ALGORITHM_VERSION, model.get("version", "unknown")),
        (WEIGHTS_SHA256, model.get("sha256", "unknown")),
    ):
        items.append(
            hd.sr.TextContentItem(name=name, value=str(value), relationship_type="CONTAINS")
        )
    if source_item is not None:
        items.append(source_item)
    items.append(
        hd.sr.ImageContentItem(
            name=OVERLAY_IMAGE,
            referenced_sop_class_uid=sc.SOPClassUID,
            referenced_sop_instance_uid=sc.SOPInstanceUID,
            relationship_type="CONTAINS",
        )
    )
    root = hd.sr.ContainerContentItem(name=REPORT)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _descriptors(name: CodedConcept, clinical: dict[str, Any]) -> Any:
    """A container with one item per descriptor given (age as a number of years)."""
    children = []
    for field in FIELDS:
        value = clinical.get(field)
        if value is None:
            continue
        if field == "age":
            children.append(
                hd.sr.NumContentItem(
                    name=concept(field.upper()[:16], field), value=float(value), unit=_YEARS,
                    relationship_type="CONTAINS",
                )
            )  # fmt: skip
        else:
            children.append(
                hd.sr.TextContentItem(
                    name=concept(field.upper()[:16], field), value=str(value),
                    relationship_type="CONTAINS",
                )
            )  # fmt: skip
    container = hd.sr.ContainerContentItem(name=name, relationship_type="CONTAINS")
    if children:
        container.ContentSequence = hd.sr.ContentSequence(children)
    return container


def _estimated(estimated: dict[str, Any]) -> Any:
    """The descriptor heads' reading: value and its probability per field, and the head's
    held-out accuracy beside the commonest value's (with the frame count and whether it
    is better beyond chance) where the run recorded them."""
    children = []
    for field, guess in estimated.items():
        value = guess.get("value") if isinstance(guess, dict) else getattr(guess, "value", None)
        prob = (
            guess.get("probability")
            if isinstance(guess, dict)
            else getattr(guess, "probability", None)
        )
        code = concept(field.upper()[:16], field)
        children.append(
            hd.sr.TextContentItem(name=code, value=str(value), relationship_type="CONTAINS")
        )
        if prob is not None:
            children.append(
                hd.sr.NumContentItem(
                    name=concept(f"P{field.upper()}"[:16], f"{field} probability"),
                    value=float(prob), unit=_UNITLESS, relationship_type="CONTAINS",
                )
            )  # fmt: skip
        held_out = guess.get("held_out") if isinstance(guess, dict) else None
        if held_out:
            # How far to trust the reading: the head's accuracy on the run's held-out
            # frames beside always answering the commonest value (as on the page).
            for prefix, key, meaning in (
                ("A", "accuracy", "held-out accuracy"),
                ("B", "baseline", "commonest-value accuracy"),
            ):
                children.append(
                    hd.sr.NumContentItem(
                        name=concept(f"{prefix}{field.upper()}"[:16], f"{field} {meaning}"),
                        value=float(held_out[key]), unit=_UNITLESS, relationship_type="CONTAINS",
                    )
                )  # fmt: skip
            children.append(
                hd.sr.NumContentItem(
                    name=concept(f"N{field.upper()}"[:16], f"{field} held-out frames"),
                    value=int(held_out["n"]), unit=_UNITLESS, relationship_type="CONTAINS",
                )
            )  # fmt: skip
        if isinstance(guess, dict) and guess.get("beats_baseline") is not None:
            # Whether the reading counts (binomial test): a reader of the SR sees what the
            # page says and why a field was left out of the TI-RADS line from the image.
            children.append(
                hd.sr.TextContentItem(
                    name=concept(f"T{field.upper()}"[:16], f"{field} better than commonest value"),
                    value="yes" if guess["beats_baseline"] else "no",
                    relationship_type="CONTAINS",
                )
            )  # fmt: skip
    container = hd.sr.ContainerContentItem(name=ESTIMATED, relationship_type="CONTAINS")
    if children:
        container.ContentSequence = hd.sr.ContentSequence(children)
    return container


def _declare_scheme(sr: Dataset) -> None:
    """PS3.3 C.12.1.1.3.1: a private coding scheme is named in the SOP Common module."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "thyrocam concepts"
    item.CodingSchemeResponsibleOrganization = "thyrocam"
    sr.CodingSchemeIdentificationSequence = [item]
