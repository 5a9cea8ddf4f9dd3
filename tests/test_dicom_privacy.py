"""Patient data stays where it is: identifying DICOM attributes never reach a log line,
an answer, a run folder or any written file other than the DICOM results themselves."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dicom_samples import IDENTIFYING, MARKER, canvas_frames, post, to_bytes, ultrasound_dataset
from thyrocam.errors import DicomFrameError

# Every marker: the prefixed strings and the one value that cannot carry a prefix.
MARKERS = [MARKER, IDENTIFYING["PatientBirthDate"]]


def _leaks(blob: str | bytes) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [m for m in MARKERS if m.encode() in data]


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def marked(ddti_sample, tmp_path_factory) -> dict[str, Path]:
    """DICOM files with marker strings in every identifying attribute."""
    folder = tmp_path_factory.mktemp("marked")
    frames = canvas_frames(sorted(ddti_sample.glob("*_1.jpg"))[10:22])
    out = {"multi": folder / "multi", "bad": folder / "bad"}
    out["multi"].write_bytes(to_bytes(ultrasound_dataset(frames[:3])))
    bad = ultrasound_dataset(frames[:2], compression="none")
    bad.NumberOfFrames = 0
    out["bad"].write_bytes(to_bytes(bad))
    rows = ["image,label,composition"]
    for i, frame in enumerate(frames):
        path = folder / f"img{i:02d}"
        path.write_bytes(to_bytes(ultrasound_dataset([frame])))
        rows.append(f"{path.name},{i % 2},{'solid' if i % 2 else 'spongiform'}")
    out["manifest"] = folder / "manifest.csv"
    out["manifest"].write_text("\n".join(rows) + "\n")
    for path in out.values():  # the inputs do hold the markers (else the test proves nothing)
        if path.suffix != ".csv":
            assert _leaks(path.read_bytes()) == MARKERS
    return out


def test_api_and_cli_never_show_patient_data(
    marked, tiny_run, tmp_path, caplog, load_predictors_once
) -> None:
    from thyrocam import Predictor

    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    out.mkdir()
    texts: list[str] = []
    p = Predictor.load(tiny_run)
    pred = p.predict(marked["multi"], {"composition": "solid"}, frame=1)
    ex = p.explain(marked["multi"], frame=2, attributions=True)
    texts += [repr(pred), repr(ex), json.dumps(pred.to_dict()), json.dumps(ex.prediction.to_dict())]
    texts += [repr(ex.source), repr(ex.mapping)]
    with pytest.raises(DicomFrameError) as err:
        p.predict(marked["bad"])
    texts += [str(err.value), repr(err.value.value), repr(err.value.allowed)]
    ex.overlay.save(out / "api.png")

    base = [sys.executable, "-m", "thyrocam", "-v"]
    for argv in (
        ["predict", str(tiny_run), str(marked["multi"]), "--frame", "1"],
        ["explain", str(tiny_run), str(marked["multi"]), "--out", str(out / "cli.png")],
        ["predict", str(tiny_run), str(marked["bad"])],
    ):
        res = subprocess.run(base + argv, capture_output=True, text=True, timeout=300)
        assert res.returncode in (0, 2), res.stderr
        texts += [res.stdout, res.stderr]
    assert len(caplog.records) > 0 or True  # logging may be quiet; what it says is checked
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in texts:
        assert _leaks(text) == [], text[:500]
    for path in _files(out):
        assert _leaks(path.read_bytes()) == [], path


def test_http_answers_and_logs_never_show_patient_data(
    marked, tiny_run, tmp_path, caplog, load_predictors_once
) -> None:
    from thyrocam.web import create_app

    caplog.set_level(logging.DEBUG)
    uploads = tmp_path / "uploads"
    app = create_app({"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(uploads)})
    client = app.test_client()
    data = marked["multi"].read_bytes()
    answers = []
    for path, fields in (
        ("/predict", {"frame": "2", "use_clinical": "1", "composition": "solid"}),
        ("/explain", {"frame": "1", "attributions": "1"}),
        ("/explain", {"frame": "7"}),  # out of range: an error answer
    ):
        answer = post(client, path, {"file": (io.BytesIO(data), "x"), **fields})
        answers.append(answer)
    bad = post(client, "/predict", {"file": (io.BytesIO(marked["bad"].read_bytes()), "x")})
    answers.append(bad)
    assert [a.status_code for a in answers] == [200, 200, 422, 422]
    for answer in answers:
        assert _leaks(answer.data) == [] and _leaks(str(answer.headers)) == []
    for record in caplog.records:
        assert _leaks(record.getMessage()) == []
    assert _leaks(caplog.text) == []
    assert not uploads.exists() or _files(uploads) == []
    # dicom=1 answers are the results to file in the PACS: they do carry the patient.
    zipped = post(client, "/explain", {"file": (io.BytesIO(data), "x"), "dicom": "1"})
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip"


def test_a_run_trained_on_dicom_holds_no_patient_data(marked, tmp_path, caplog) -> None:
    from thyrocam.train import TrainConfig, train

    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    config = TrainConfig(
        epochs=1, image_size=64, batch_size=4, preprocess="letterbox", progress=False,
        device="cpu", weights=None,
    )  # fmt: skip
    train(marked["manifest"], out=run, config=config)
    files = _files(run)
    assert any(p.name == "model.safetensors" for p in files)
    for path in files:
        assert _leaks(path.read_bytes()) == [], path
    assert _leaks(caplog.text) == []
