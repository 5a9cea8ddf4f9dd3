"""DICOM through the HTTP API: uploads, frames, dicom=1 downloads, bad DICOM as JSON errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_samples import canvas_frames, post, to_bytes, ultrasound_dataset
from test_dicom import BAD_CASES, _bad
from test_dicom_results import sr_values
from thyrocam.web import create_app

pytestmark = pytest.mark.usefixtures("load_predictors_once")


@pytest.fixture(scope="module")
def us_frames(ddti_sample):
    return canvas_frames(sorted(ddti_sample.glob("*_1.jpg"))[7:10])


@pytest.fixture(scope="module")
def us_bytes(us_frames) -> bytes:
    return to_bytes(ultrasound_dataset(us_frames))


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def client(tiny_run: Path, upload_dir: Path):
    app = create_app({"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(upload_dir)})
    return app.test_client()


def _form(data: bytes, **fields) -> dict:
    # A neutral name without extension: DICOM is recognised by content.
    return {"file": (io.BytesIO(data), "upload"), **fields}


def test_predict_a_dicom_frame(client, us_bytes) -> None:
    answer = post(client, "/predict", _form(us_bytes, frame="2"))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["frame"] == 2 and body["spacing_mm"] == pytest.approx([0.075, 0.075])
    assert body["region"] == [12.0, 60.0, 572.0, 420.0]
    plain = post(client, "/predict", _form(us_bytes)).get_json()
    assert plain["frame"] == 0


def test_explain_dicom_download_matches_the_json(client, us_bytes) -> None:
    fields = {"frame": "1", "use_clinical": "1", "composition": "solid", "age": "50"}
    body = post(client, "/explain", _form(us_bytes, **fields)).get_json()
    answer = post(client, "/explain", _form(us_bytes, dicom="1", **fields))
    assert answer.status_code == 200
    assert answer.mimetype == "application/zip"
    assert "thyrocam-dicom.zip" in answer.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.data)) as zf:
        names = sorted(zf.namelist())
        sc, sr = (dcmread(io.BytesIO(zf.read(n))) for n in names)
    assert [n[:3] for n in names] == ["sc_", "sr_"]
    source = dcmread(io.BytesIO(us_bytes))
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == source.StudyInstanceUID
    assert int(sc.SourceImageSequence[0].ReferencedFrameNumber) == 2
    values = sr_values(sr)
    # The same input, two requests: the same numbers (the model is deterministic).
    assert values["Probability of malignancy"] == body["probability"]
    assert values["Predicted class"] == body["label"]
    assert values["ACR TI-RADS level"] == body["tirads"]["level"]
    assert values["Descriptors as entered"] == {"composition": "solid", "age": 50.0}


@pytest.mark.parametrize("kind,frame,error,field,status", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_dicom_http(client, upload_dir, us_frames, kind, frame, error, field, status) -> None:
    for path in ("/predict", "/explain"):
        data = _form(_bad(us_frames, kind), frame=str(frame), store="1", dicom="1")
        answer = post(client, path, data)
        assert answer.status_code == status, (path, answer.get_json())
        body = answer.get_json()
        assert body["code"] == error.code and "allowed" in body["error"]
    assert not upload_dir.exists() or list(upload_dir.iterdir()) == []  # nothing stored


def test_frame_must_be_a_number(client, us_bytes) -> None:
    answer = post(client, "/predict", _form(us_bytes, frame="first"))
    assert answer.status_code == 400 and "frame" in answer.get_json()["error"]


def test_page_offers_dicom(client) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'id="download-dicom-btn"' in page and ".dcm" in page
    with client.get("/static/app.js") as answer:  # a file response: close it
        js = answer.get_data(as_text=True)
    assert 'form.append("dicom", "1")' in js
    spec = client.get("/openapi.json").get_json()
    props = spec["paths"]["/explain"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "schema"
    ]["properties"]
    assert "dicom" in props and "frame" in props
    assert "application/zip" in spec["paths"]["/explain"]["post"]["responses"]["200"]["content"]
