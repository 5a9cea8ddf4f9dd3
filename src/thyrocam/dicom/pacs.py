"""A PACS round trip over DICOMweb: find a study's ultrasound, explain it, store the results.

QIDO-RS finds the study's US series and their instances, WADO-RS fetches each
instance, :class:`~thyrocam.predictor.Predictor` explains it, and (``store``)
STOW-RS sends the Secondary Capture and the Comprehensive SR back, filed in the
same study in a new series. Uses ``dicomweb-client``.

The fetched headers hold the patient's identity: nothing here logs them or
puts them in the returned summaries (UIDs only).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from dicomweb_client.api import DICOMwebClient

from thyrocam.errors import InputError

if TYPE_CHECKING:
    from thyrocam.predictor import Predictor

__all__ = ["InstanceResult", "find_ultrasound", "explain_study"]

log = logging.getLogger(__name__)

_UID = "0020000D", "0020000E", "00080018"  # Study, Series, SOP Instance UID (DICOM JSON keys)
_MODALITY = "00080060"


@dataclass(frozen=True)
class InstanceResult:
    """What happened to one ultrasound instance of the study."""

    series_uid: str
    sop_instance_uid: str
    frame: int
    prediction: dict[str, Any]
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs sent back

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.series_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "frame": self.frame,
            "prediction": self.prediction,
            "stored": list(self.stored),
        }


def _value(item: Mapping[str, Any], tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _client(url: str) -> DICOMwebClient:
    client = DICOMwebClient(url=url.rstrip("/"))
    # dicomweb-client's default retries every failure, a refused connection included,
    # five times with waits of 2, 4, 8 and 16 s: a mistyped URL took 35 s to report.
    # Three attempts 0.4 s and 0.8 s apart still ride out a busy server (429/503/504).
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=200)
    return client


def _call(url: str, what: str, fn, *args, **kwargs):
    """Run one DICOMweb request; a network or HTTP failure becomes an :class:`InputError`."""
    try:
        return fn(*args, **kwargs)
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise InputError(
            f"url: {what} at {url} answered HTTP {status}; allowed: a DICOMweb service "
            "(QIDO-RS, WADO-RS, STOW-RS) holding the study",
            field="url",
            value=url,
            allowed="a DICOMweb base URL",
        ) from None
    except requests.exceptions.RequestException as exc:
        raise InputError(
            f"url: cannot reach {url} ({exc.__class__.__name__}); allowed: a reachable "
            "DICOMweb service URL",
            field="url",
            value=url,
            allowed="a DICOMweb base URL",
        ) from None


def find_ultrasound(*, url: str, study_uid: str) -> list[tuple[str, str]]:
    """QIDO-RS: ``(series UID, SOP Instance UID)`` of every US instance in the study.

    Raises:
        InputError: the service is unreachable, or the study has no US instance.
    """
    client = _client(url)
    series = _call(
        url, "QIDO-RS", client.search_for_series,
        study_instance_uid=study_uid, search_filters={"Modality": "US"},
    )  # fmt: skip
    found = []
    for item in series:
        # Some archives ignore the filter: check the modality we were given back.
        if (_value(item, _MODALITY) or "US") != "US":
            continue
        series_uid = _value(item, _UID[1])
        instances = _call(
            url, "QIDO-RS", client.search_for_instances,
            study_instance_uid=study_uid, series_instance_uid=series_uid,
        )  # fmt: skip
        found += [(series_uid, _value(i, _UID[2])) for i in instances if _value(i, _UID[2])]
    if not found:
        raise InputError(
            f"study: no ultrasound (US) instance in study {study_uid} at {url}; "
            "allowed: a study holding US images",
            field="study",
            value=study_uid,
            allowed="a study with US images",
        )
    return found


def explain_study(
    *,
    url: str,
    study_uid: str,
    predictor: Predictor,
    store: bool = False,
    clinical: Mapping[str, object] | None = None,
    frame: int = 0,
    method: str = "gradcam",
    target: str = "malignant",
) -> list[InstanceResult]:
    """Explain every ultrasound instance of a study on a DICOMweb server.

    Args:
        url: the DICOMweb base URL (e.g. Orthanc's ``http://host:8042/dicom-web``).
        study_uid: StudyInstanceUID.
        predictor: the loaded run.
        store: send each SC and SR back with STOW-RS.
        clinical, frame, method, target: as for :meth:`Predictor.explain`.

    Returns:
        One :class:`InstanceResult` per instance, in QIDO order.
    """
    import pydicom

    client = _client(url)
    results = []
    for series_uid, sop_uid in find_ultrasound(url=url, study_uid=study_uid):
        ds = _call(
            url, "WADO-RS", client.retrieve_instance,
            study_instance_uid=study_uid, series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )  # fmt: skip
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        explanation = predictor.explain(
            buf.getvalue(), clinical, frame=frame, method=method, target=target
        )
        stored: list[str] = []
        if store:
            dicom = explanation.to_dicom()
            _call(url, "STOW-RS", client.store_instances, [dicom.sc, dicom.sr])
            stored = [str(dicom.sc.SOPInstanceUID), str(dicom.sr.SOPInstanceUID)]
        log.info("pacs: explained instance %s (frame %d)", sop_uid, frame)
        results.append(
            InstanceResult(
                series_uid=series_uid,
                sop_instance_uid=sop_uid,
                frame=frame,
                prediction=explanation.prediction.to_dict(),
                stored=stored,
            )
        )
    return results
