"""explain-batch: resumable, equal to single-image explanations, same outputs through Ray."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from thyrocam.batch import (
    INDEX_SCHEMA,
    explain_batch,
    load_items,
    parse_shard,
    select_shard,
    weights_sha256,
)
from thyrocam.batch.ray_backend import _actor_resources
from thyrocam.cli import main
from thyrocam.errors import InputError
from thyrocam.imaging import nodule_box
from thyrocam.model import ThyroidNet
from thyrocam.predictor import Predictor

BATCH = 16
STOP_AFTER_BATCHES = 3


class _Interrupted(Exception):
    """Raised from on_batch to stop a job the way a kill would: mid-stream."""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """At least 200 synthetic images in DDTI format (made once for this module)."""
    from thyrocam.data import make_synthetic_ddti

    out = tmp_path_factory.mktemp("batch") / "ddti"
    make_synthetic_ddti(out, cases=190, seed=11)
    assert len(load_items(out)[0]) >= 200
    return out


class _CountForward:
    """Counts the images that go through ThyroidNet.forward (every model call)."""

    def __init__(self) -> None:
        self.images = 0
        real = ThyroidNet.forward

        def forward(model, img, *args, **kwargs):
            self.images += int(img.shape[0])
            return real(model, img, *args, **kwargs)

        self.forward = forward


@pytest.fixture(scope="module")
def local_job(archive: Path, tiny_roi_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The job run once, interrupted after 3 batches, then run again to the end."""
    out = tmp_path_factory.mktemp("batch_local") / "out"
    counter = _CountForward()

    def stop(stored: int) -> None:
        if stored >= STOP_AFTER_BATCHES * BATCH:
            raise _Interrupted

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ThyroidNet, "forward", counter.forward)
        with pytest.raises(_Interrupted):
            explain_batch(
                tiny_roi_run, archive, out=out, batch_size=BATCH, progress=False, on_batch=stop
            )
        first = counter.images
        rows_after_kill = sorted(p.stem for p in (out / "rows").glob("*.json"))
        # What a kill during a write leaves behind: a temporary file, never a final name.
        (out / "cams" / ".999_1.npy.12345.tmp").write_bytes(b"partial")
        summary = explain_batch(tiny_roi_run, archive, out=out, batch_size=BATCH, progress=False)
        second = counter.images - first
    return {
        "out": out,
        "summary": summary,
        "first": first,
        "second": second,
        "rows_after_kill": rows_after_kill,
    }


def _index(out: Path) -> list[dict]:
    return pq.read_table(out / "index.parquet").to_pylist()


def test_interrupted_job_resumes_without_recomputing(local_job, archive: Path) -> None:
    items, _ = load_items(archive)
    done_first = STOP_AFTER_BATCHES * BATCH
    assert local_job["first"] == done_first
    assert len(local_job["rows_after_kill"]) == done_first
    summary = local_job["summary"]
    assert summary.skipped == done_first
    assert summary.computed == len(items) - done_first
    # The second run sent only the unfinished images through the model.
    assert local_job["second"] == len(items) - done_first
    assert summary.failed == 0


def test_index_has_one_row_per_image(local_job, archive: Path, tiny_roi_run: Path) -> None:
    items, _ = load_items(archive)
    table = pq.read_table(local_job["out"] / "index.parquet")
    assert table.schema.equals(INDEX_SCHEMA)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [it.id for it in items]
    assert [r["path"] for r in rows] == [str(it.path) for it in items]
    sha = weights_sha256(tiny_roi_run)
    for row in rows:
        assert row["weights_sha256"] == sha
        assert row["method"] == "gradcam" and row["target"] == "malignant"
        assert row["label"] in ("benign", "malignant")
        assert row["error"] is None and row["overlay_path"] is None
        assert (local_job["out"] / row["cam_path"]).is_file()
        # Synthetic frames have outlines, so the ROI run crops and energy is measured.
        assert row["roi"] is not None and 0.0 <= row["energy_in_outline"] <= 1.0
    # A one-epoch model leaves many maps blank (no positive evidence): those have no peak.
    assert all((r["peak_x"] is None) == r["cam_all_zero"] for r in rows)
    assert sum(r["peak_x"] is not None for r in rows) >= 20


def test_stored_cams_equal_single_image_explain(
    local_job, archive: Path, tiny_roi_run: Path
) -> None:
    predictor = Predictor.load(tiny_roi_run, device="cpu")
    items, _ = load_items(archive)
    rows = {r["id"]: r for r in _index(local_job["out"])}
    nonzero = 0
    for item in items:
        row = rows[item.id]
        single = predictor.explain(item.path, item.clinical, roi=nodule_box(item.polygons))
        cam = np.load(local_job["out"] / row["cam_path"])
        assert cam.dtype == np.float16 and cam.shape == single.cam.shape == (64, 64)
        np.testing.assert_allclose(cam.astype(np.float32), single.cam, atol=1e-3)
        assert row["probability"] == pytest.approx(single.prediction.probability, abs=1e-6)
        assert row["label"] == single.prediction.label
        assert row["cam_all_zero"] == single.all_zero
        nonzero += not single.all_zero
    assert nonzero >= 20  # the comparison is not only between blank maps


def test_ray_backend_writes_identical_outputs(
    local_job, archive: Path, tiny_roi_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    summary = explain_batch(
        tiny_roi_run, archive, out=out, batch_size=BATCH, workers=2, ray=True, progress=False
    )
    assert summary.computed == summary.total and summary.failed == 0
    local_rows, ray_rows = _index(local_job["out"]), _index(out)
    assert len(ray_rows) == len(local_rows)
    for mine, theirs in zip(local_rows, ray_rows, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert theirs[key] == pytest.approx(value, abs=1e-6), key
            else:
                assert theirs[key] == value, key
        np.testing.assert_allclose(
            np.load(out / theirs["cam_path"]).astype(np.float32),
            np.load(local_job["out"] / mine["cam_path"]).astype(np.float32),
            atol=1e-3,
        )


def test_a_folder_holding_another_job_is_refused(local_job, archive: Path, tiny_roi_run: Path):
    before = sorted(p.name for p in (local_job["out"] / "rows").iterdir())
    with pytest.raises(InputError) as err:
        explain_batch(tiny_roi_run, archive, out=local_job["out"], target="benign", progress=False)
    assert err.value.field == "out" and "target" in str(err.value)
    assert sorted(p.name for p in (local_job["out"] / "rows").iterdir()) == before


def test_image_folder_shards_overlays_and_unreadable_files(
    archive: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for src in sorted(archive.glob("*_1.jpg"))[:9]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    first = explain_batch(
        tiny_run,
        tmp_path / "images",
        out=out,
        shard="0/2",
        overlays=True,
        batch_size=4,
        progress=False,
    )
    # The other shard through the command line, into the same folder.
    argv = ["explain-batch", str(tiny_run), str(tmp_path / "images"), "--out", str(out)]
    argv += ["--shard", "1/2", "--overlays", "--batch-size", "4", "--no-progress"]
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert first.total + second["images"] == 10
    assert second["explained"] == second["images"] and second["already_done"] == 0
    rows = _index(out)
    assert len(rows) == 10 and len({r["id"] for r in rows}) == 10
    broken = [r for r in rows if r["error"] is not None]
    assert [r["id"] for r in broken] == ["nested__broken"]
    assert broken[0]["cam_path"] is None and broken[0]["probability"] is None
    for row in rows:
        if row["error"] is None:
            assert row["roi"] is None and row["energy_in_outline"] is None  # no outlines
            with Image.open(out / row["overlay_path"]) as overlay:
                assert overlay.size == (560, 360)
            assert json.loads((out / "rows" / f"{row['id']}.json").read_text())["id"] == row["id"]


_KILL_AFTER_FIRST_BATCH = """
import os, signal, sys
from thyrocam.batch import explain_batch

def kill(stored):
    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: a real kill

explain_batch(sys.argv[1], sys.argv[2], out=sys.argv[3], batch_size=4, device="cpu",
              progress=False, on_batch=kill)
"""


def test_a_killed_process_leaves_whole_files_and_resumes(
    archive: Path, tiny_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for src in sorted(archive.glob("*_1.jpg"))[:10]:
        shutil.copy(src, folder / src.name)
    out = tmp_path / "out"
    argv = [sys.executable, "-c", _KILL_AFTER_FIRST_BATCH, str(tiny_run), str(folder), str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    finished = sorted(p.stem for p in (out / "rows").glob("*.json"))
    assert len(finished) == 4 and not (out / "index.parquet").exists()
    for name in finished:  # every file a finished row points to is whole
        assert np.load(out / "cams" / f"{name}.npy").shape == (64, 64)
    summary = explain_batch(tiny_run, folder, out=out, batch_size=4, progress=False)
    assert (summary.skipped, summary.computed) == (4, 6)
    assert len(_index(out)) == 10


def test_shards_partition_the_items(archive: Path) -> None:
    items, _ = load_items(archive)
    parts = [select_shard(items, (i, 3)) for i in range(3)]
    ids = [it.id for part in parts for it in part]
    assert sorted(ids) == sorted(it.id for it in items)
    assert all(parts)
    assert select_shard(items, (1, 3)) == parts[1]  # deterministic


@pytest.mark.parametrize(
    ("option", "value"),
    [("--shard", "2/2"), ("--batch-size", "0"), ("--workers", "-1"), ("--alpha", "2")],
)
def test_cli_bad_options_exit_2_with_one_line(
    option: str,
    value: str,
    tiny_run: Path,
    archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "out"
    argv = ["explain-batch", str(tiny_run), str(archive), "--out", str(out), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and value in err
    assert not out.exists()  # nothing written for a refused job


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0", "1/2/3"])
def test_bad_shard_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_shard(text)
    assert err.value.field == "shard" and repr(text) in str(err.value)


class _FakeRay:
    def __init__(self, resources: dict) -> None:
        self.resources = resources

    def cluster_resources(self) -> dict:
        return self.resources


@pytest.mark.parametrize(
    ("resources", "device", "expected"),
    [
        # Two 1-CPU actors deadlock on 2 cores (Ray Data's tasks get no CPU): half each.
        ({"CPU": 2.0}, "auto", ({"num_cpus": 0.5}, 2, "cpu")),
        ({"CPU": 16.0}, "cpu", ({"num_cpus": 1.0}, 2, "cpu")),
        ({"CPU": 16.0, "GPU": 1.0}, "auto", ({"num_gpus": 1}, 1, "cuda")),
        ({"CPU": 16.0, "GPU": 4.0}, "cpu", ({"num_cpus": 1.0}, 2, "cpu")),
    ],
)
def test_ray_actor_resources(resources: dict, device: str, expected: tuple) -> None:
    assert _actor_resources(_FakeRay(resources), actors=2, device=device) == expected


def test_ray_cuda_without_gpus_is_an_input_error() -> None:
    with pytest.raises(InputError) as err:
        _actor_resources(_FakeRay({"CPU": 4.0}), actors=2, device="cuda")
    assert err.value.field == "device"
