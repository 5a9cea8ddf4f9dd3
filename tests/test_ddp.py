"""``torchrun --nproc-per-node 2 -m thyrocam train``: DDP on CPU (gloo, loopback).

Each rank runs with one thread (the machine has two cores); rank 0 alone writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thyrocam.checkpoint import RUN_FILES, load_run
from thyrocam.data import make_synthetic_ddti, prepare_samples, split_by_case

TIMEOUT_S = 420  # a few epochs at 64 px: far above what they take on 2 busy cores


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 synthetic cases: a validation split of ~14 cases, so AUC steps are ~0.02."""
    out = tmp_path_factory.mktemp("ddp") / "synth"
    make_synthetic_ddti(out, cases=96, seed=1)
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _train(data: Path, out: Path, *options: str, processes: int) -> subprocess.CompletedProcess:
    command = ["-m", "thyrocam", "train", str(data), "--out", str(out), "--device", "cpu"]
    command += ["--weights", "none", "--no-progress", "--seed", "0", *options]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        command = launcher + command
    proc = subprocess.run(
        [sys.executable, *command], env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_torchrun_two_processes_write_one_run_that_loads_and_predicts(
    ddp_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    # every head the synthetic data supports (outline, descriptors): the multi-task path;
    # the stacked fusion: DDP fits the image network, then rank 0 the two half networks
    options = ["--epochs", "2", "--image-size", "64", "--fusion", "stacked"]
    proc = _train(ddp_data, out, *options, processes=2)
    summary = json.loads(proc.stdout)  # one summary: only rank 0 prints
    assert summary["run"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # no temp folder left
    info = load_run(out)
    assert info.meta["train_config"]["batch_size"] == 32
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert info.meta["fusion"] == "stacked" and info.model.modalities == "both"
    assert metrics["stacking"] == info.meta["stacking"]
    assert metrics["stacking"]["image_weight"] >= 0
    # the split is the one a single process makes with the same seed
    samples, _, _ = prepare_samples(ddp_data)
    expected = [sorted({s.case_id for s in part}) for part in split_by_case(samples, seed=0)]
    split = json.loads((out / "split.json").read_text())
    assert [split["train"], split["val"], split["test"]] == expected

    from thyrocam.predictor import Predictor

    image = sorted(ddp_data.glob("*_1.jpg"))[0]
    prediction = Predictor.load(out, device="cpu").predict(image)
    assert 0.0 <= prediction.probability <= 1.0


def test_torchrun_validation_auc_matches_one_process(ddp_data: Path, tmp_path: Path) -> None:
    """Equal seeds and epochs: the two-process run's validation AUC is within 0.05.

    The descriptor-only model is compared because its training is smooth: the
    two runs see the same data in different orders (DistributedSampler) and must
    land on the same model quality. A from-scratch CNN on a 14-case validation
    split is noisier than that between epochs of one run (measured here, 10
    epochs: val AUC 1.00 vs 0.93, and it moved by 0.1 from one epoch to the next),
    so the image model is checked for a working run above, not for its AUC.
    """
    options = ["--epochs", "8", "--image-size", "32", "--modalities", "clinical"]
    options += ["--heads", "malignancy"]
    _train(ddp_data, tmp_path / "one", *options, processes=1)
    _train(ddp_data, tmp_path / "ddp", *options, processes=2)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert (one["processes"], ddp["processes"]) == (1, 2)
    assert one["validation"]["n"] == ddp["validation"]["n"] >= 12
    assert ddp["validation"]["auc"] > 0.6  # it learnt something
    assert abs(ddp["validation"]["auc"] - one["validation"]["auc"]) <= 0.05
