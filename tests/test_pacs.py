"""A real PACS round trip: Orthanc with DICOMweb on 127.0.0.1, `thyrocam pacs explain --store`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dicom_samples import IDENTIFYING, MARKER, canvas_frames, to_bytes, ultrasound_dataset

IN_CI = os.environ.get("CI") == "true"
ORTHANC = "/usr/sbin/Orthanc"
PLUGINS = "/usr/share/orthanc/plugins"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def orthanc(tmp_path):
    """A throw-away Orthanc (storage in tmp, free ports, localhost only); stopped after."""
    if not (Path(ORTHANC).exists() and Path(PLUGINS, "libOrthancDicomWeb.so").exists()):
        if IN_CI:
            pytest.fail("Orthanc with its DICOMweb plugin is required under CI=true")
        pytest.skip("Orthanc / orthanc-dicomweb is not installed")
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "thyrocam-test",
        "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "wb")
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(300):  # up to 30 s; it starts in about 2
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited: {(tmp_path / 'orthanc.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{base}/system", timeout=1).ok:
                    break
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("Orthanc did not answer within 30 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _series_by_modality(base: str, study_uid: str) -> dict[str, list[dict]]:
    answer = requests.get(f"{base}/dicom-web/studies/{study_uid}/series", timeout=10)
    answer.raise_for_status()
    out: dict[str, list[dict]] = {}
    for item in answer.json():
        out.setdefault(item["00080060"]["Value"][0], []).append(item)
    return out


def test_orthanc_round_trip(orthanc, ddti_sample, tiny_run, tmp_path) -> None:
    frames = canvas_frames(sorted(ddti_sample.glob("*_1.jpg"))[5:7])
    first = ultrasound_dataset(frames)
    second = ultrasound_dataset(frames[:1], study_uid=first.StudyInstanceUID, compression="none")
    study = str(first.StudyInstanceUID)
    for ds in (first, second):
        answer = requests.post(f"{orthanc}/instances", data=to_bytes(ds), timeout=30)
        assert answer.ok, answer.text
    assert set(_series_by_modality(orthanc, study)) == {"US"}

    cmd = [sys.executable, "-m", "thyrocam", "pacs", "explain", str(tiny_run)]
    cmd += ["--url", f"{orthanc}/dicom-web", "--study", study, "--store", "--frame", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    explained = {r["sop_instance_uid"] for r in results}
    assert explained == {str(first.SOPInstanceUID), str(second.SOPInstanceUID)}
    assert all(len(r["stored"]) == 2 and r["prediction"]["frame"] == 0 for r in results)
    assert MARKER not in res.stdout + res.stderr

    # Orthanc now lists, in the same study, new series holding the SC and the SR.
    series = _series_by_modality(orthanc, study)
    assert len(series["US"]) == 2
    new = [s for mod, items in series.items() if mod != "US" for s in items]
    stored_uids = {uid for r in results for uid in r["stored"]}
    seen = {}
    for item in new:
        series_uid = item["0020000E"]["Value"][0]
        url = f"{orthanc}/dicom-web/studies/{study}/series/{series_uid}/instances"
        for inst in requests.get(url, timeout=10).json():
            seen[inst["00080018"]["Value"][0]] = inst["00080016"]["Value"][0]
    assert set(seen) == stored_uids
    assert sorted(seen.values()) == sorted([SC_CLASS, COMPREHENSIVE_SR] * 2)
    # Filed with the source's patient (the PACS needs it).
    tags = requests.get(f"{orthanc}/patients", timeout=10).json()
    assert len(tags) == 1  # no second patient was made up
    info = requests.get(f"{orthanc}/patients/{tags[0]}", timeout=10).json()
    assert info["MainDicomTags"]["PatientID"] == IDENTIFYING["PatientID"]


def test_pacs_errors_are_one_line(orthanc, tiny_run) -> None:
    cmd = [sys.executable, "-m", "thyrocam", "pacs", "explain", str(tiny_run)]
    unknown = cmd + ["--url", f"{orthanc}/dicom-web", "--study", "1.2.3.4.5.6.7"]
    unreachable = cmd + ["--url", f"http://127.0.0.1:{_free_port()}/dicom-web", "--study", "1.2.3"]
    for argv, word in ((unknown, "study"), (unreachable, "url")):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"thyrocam pacs: error: {word}:"), lines[0]
        assert res.stdout == ""
