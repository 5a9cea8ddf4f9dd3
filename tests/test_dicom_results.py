"""DICOM results: the SC and SR validate with dciodvfy and read back as the JSON says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from dicom_samples import IDENTIFYING, canvas_frames, to_bytes, ultrasound_dataset

IN_CI = os.environ.get("CI") == "true"
CLINICAL = {"composition": "solid", "echogenicity": "hypoechogenicity", "age": 61, "sex": "F"}


def _dciodvfy() -> str:
    path = shutil.which("dciodvfy")
    if path is None:
        if IN_CI:
            pytest.fail("dciodvfy (Debian dicom3tools) is required under CI=true")
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    return path


def _validate(path: Path) -> list[str]:
    """dciodvfy's error lines for one file (warnings allowed)."""
    res = subprocess.run([_dciodvfy(), str(path)], capture_output=True, text=True, timeout=120)
    lines = (res.stdout + res.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def sr_values(sr) -> dict[str, object]:
    """Flatten an SR's content tree: ``{concept meaning: value}`` (containers nest as dicts)."""
    out: dict[str, object] = {}
    for item in sr.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        kind = item.ValueType
        if kind == "CONTAINER":
            out[name] = sr_values(item)
        elif kind == "NUM":
            measured = item.MeasuredValueSequence[0]
            out[name] = float(measured.get("FloatingPointValue", measured.NumericValue))
        elif kind == "TEXT":
            out[name] = item.TextValue
        elif kind == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            frames = ref.get("ReferencedFrameNumber")
            out[name] = (ref.ReferencedSOPInstanceUID, None if frames is None else int(frames))
    return out


@pytest.fixture(scope="module")
def us_source(ddti_sample, tmp_path_factory):
    frames = canvas_frames(sorted(ddti_sample.glob("*_1.jpg"))[3:5])
    ds = ultrasound_dataset(frames)
    path = tmp_path_factory.mktemp("src") / "study_image"
    path.write_bytes(to_bytes(ds))
    return path, ds


def _check_sr_matches(sr, prediction: dict, *, method: str, run: Path) -> dict:
    values = sr_values(sr)
    assert values["Probability of malignancy"] == prediction["probability"]
    assert values["Predicted class"] == prediction["label"]
    assert values["Decision threshold"] == prediction["threshold"]
    assert values["ACR TI-RADS points"] == prediction["tirads"]["total"]
    assert values["ACR TI-RADS level"] == prediction["tirads"]["level"]
    entered = values["Descriptors as entered"]
    given = {k: v for k, v in prediction["clinical"].items() if v is not None}
    assert set(entered) == set(given)
    for key, value in given.items():
        assert entered[key] == (float(value) if key == "age" else value)
    if prediction.get("estimated"):
        estimated = values["Descriptors estimated from the image"]
        for key, guess in prediction["estimated"].items():
            assert estimated[key] == str(guess["value"])
            if guess.get("held_out"):
                held_out = guess["held_out"]
                assert estimated[f"{key} held-out accuracy"] == held_out["accuracy"]
                assert estimated[f"{key} commonest-value accuracy"] == held_out["baseline"]
                assert estimated[f"{key} held-out frames"] == held_out["n"]
                better = estimated[f"{key} better than commonest value"]
                assert better == ("yes" if guess["beats_baseline"] else "no")
        # The run records its heads' held-out accuracy, so the SR must carry it.
        if "descriptor_quality" in json.loads((run / "meta.json").read_text()):
            assert any(f"{key} held-out accuracy" in estimated for key in prediction["estimated"])
    assert values["Class activation map method"] == method
    sha = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert values["SHA-256 of model.safetensors"] == sha
    assert values["Algorithm Name"].startswith("thyrocam")
    assert (
        values["Algorithm Version"]
        == json.loads((run / "meta.json").read_text())["versions"]["thyrocam"]
    )
    return values


def test_results_from_a_dicom_source(us_source, tiny_run, tmp_path, load_predictors_once) -> None:
    from thyrocam import Predictor

    path, source = us_source
    ex = Predictor.load(tiny_run).explain(path, CLINICAL, frame=1, method="gradcam++")
    written = ex.to_dicom(tmp_path / "out")
    files = sorted((tmp_path / "out").iterdir())
    assert [p.name[:3] for p in files] == ["sc_", "sr_"] and files == sorted(
        written.save(tmp_path / "out")
    )
    for f in files:
        assert _validate(f) == [], f
    sc, sr = dcmread(files[0]), dcmread(files[1])
    # Filed in the source's study and patient, in one new series.
    for ds in (sc, sr):
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID and ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert sc.SeriesInstanceUID == sr.SeriesInstanceUID and sc.Modality == "OT"
    assert sr.Modality == "SR" and sc.SOPInstanceUID != sr.SOPInstanceUID
    # The SC is the overlay, pixel for pixel, and points at the source frame.
    assert np.array_equal(sc.pixel_array, np.asarray(ex.overlay))
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert int(sc.SourceImageSequence[0].ReferencedFrameNumber) == 2  # frame 1, counted from 1
    assert sc.Laterality == "R"
    values = _check_sr_matches(sr, ex.prediction.to_dict(), method="gradcam++", run=tiny_run)
    assert values["Source image"] == (source.SOPInstanceUID, 2)
    assert values["Class activation map overlay"] == (sc.SOPInstanceUID, None)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    referenced = {i.ReferencedSOPInstanceUID for s in evidence for i in s.ReferencedSOPSequence}
    assert referenced == {source.SOPInstanceUID, sc.SOPInstanceUID}


def test_results_from_a_png_make_a_new_anonymous_study(
    ddti_sample, tiny_run, tmp_path, load_predictors_once
) -> None:
    from thyrocam import Predictor

    png = tmp_path / "frame.png"
    Image.open(sorted(ddti_sample.glob("*_1.jpg"))[0]).save(png)
    ex = Predictor.load(tiny_run).explain(png, {"composition": "solid"})
    results = ex.to_dicom()
    files = results.save(tmp_path / "out")
    for f in files:
        assert _validate(f) == [], f
    sc, sr = (dcmread(f) for f in files)
    assert sc.StudyInstanceUID == sr.StudyInstanceUID
    for ds in (sc, sr):
        assert str(ds.PatientName) == "" and str(ds.PatientID) == ""
        assert "SourceImageSequence" not in ds
    assert sc.Laterality == ""
    assert np.array_equal(sc.pixel_array, np.asarray(ex.overlay))
    _check_sr_matches(sr, ex.prediction.to_dict(), method="gradcam", run=tiny_run)
    assert "Source image" not in sr_values(sr)


def test_cli_explain_dicom_out(us_source, tiny_run, tmp_path) -> None:
    import sys

    path, source = us_source
    out, dicom_dir = tmp_path / "overlay.png", tmp_path / "dicom"
    cmd = [sys.executable, "-m", "thyrocam", "explain", str(tiny_run), str(path), "--out", str(out)]
    cmd += ["--dicom-out", str(dicom_dir), "--frame", "1", "--clinical", "composition=solid"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frame"] == 1 and len(summary["dicom"]) == 2
    sc, sr = (dcmread(p) for p in sorted(summary["dicom"]))
    assert np.array_equal(sc.pixel_array, np.asarray(Image.open(out).convert("RGB")))
    _check_sr_matches(sr, summary, method="gradcam", run=tiny_run)
    # The results carry the patient (to be filed in the PACS); the JSON does not.
    assert str(sc.PatientName) == IDENTIFYING["PatientName"]
    assert IDENTIFYING["PatientName"] not in res.stdout + res.stderr
