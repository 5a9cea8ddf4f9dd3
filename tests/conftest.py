"""Shared fixtures: a tiny synthetic DDTI folder, a tiny trained run, the real DDTI sample."""

from __future__ import annotations

import copy
import csv
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DDTI_SAMPLE = ROOT.parent / "shared" / "ddti"
IN_CI = os.environ.get("CI") == "true"

# Two cores: keep torch from oversubscribing when several things run at once; under
# pytest-xdist (make test) the workers share them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // _WORKERS))


def require_ddti_sample() -> Path:
    """The real DDTI sample; outside CI its absence skips, under CI=true it fails."""
    if not DDTI_SAMPLE.is_dir():
        if IN_CI:
            pytest.fail(f"the DDTI sample is missing at {DDTI_SAMPLE} (required under CI=true)")
        pytest.skip(f"the DDTI sample is not at {DDTI_SAMPLE}")
    return DDTI_SAMPLE


@pytest.fixture(scope="session")
def ddti_sample() -> Path:
    return require_ddti_sample()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic cases in DDTI format (560x360 frames, labels.csv)."""
    from thyrocam.data import make_synthetic_ddti

    out = tmp_path_factory.mktemp("synth") / "ddti"
    make_synthetic_ddti(out, cases=24, seed=7)
    return out


def _train_tiny(synth_dir: Path, out: Path, *, preprocess: str) -> Path:
    """One epoch at 64 px on CPU from scratch (seconds)."""
    from thyrocam.train import TrainConfig, train

    config = TrainConfig(
        epochs=1, image_size=64, batch_size=8, preprocess=preprocess, progress=False,
        device="cpu", weights=None,
    )
    train(synth_dir, out=out, config=config)
    return out


@pytest.fixture(scope="session")
def tiny_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for one epoch at 64 px on ``synth_dir``, whole frames letterboxed."""
    return _train_tiny(synth_dir, tmp_path_factory.mktemp("runs") / "tiny", preprocess="letterbox")


@pytest.fixture(scope="session")
def tiny_roi_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_run`` but trained on crops around the nodule (``preprocess="roi"``)."""
    return _train_tiny(synth_dir, tmp_path_factory.mktemp("runs") / "tiny_roi", preprocess="roi")


_LOADED_PREDICTORS: dict[str, object] = {}


@pytest.fixture
def load_predictors_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``Predictor.load`` load each checkpoint once per session (apps get shallow copies)."""
    from thyrocam.predictor import Predictor

    real = Predictor.load.__func__

    def load(cls, run, device=None):
        key = str(run)
        if key not in _LOADED_PREDICTORS:
            _LOADED_PREDICTORS[key] = real(cls, run, device=device)
        return copy.copy(_LOADED_PREDICTORS[key])

    monkeypatch.setattr(Predictor, "load", classmethod(load))


@pytest.fixture(scope="session")
def partly_labelled(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth_dir`` with cases 1-3 unlabelled (no TI-RADS grade, no labels.csv row) and
    case 3's outlines removed."""
    out = tmp_path_factory.mktemp("partly") / "ddti"
    shutil.copytree(synth_dir, out)
    for number in ("1", "2", "3"):
        path = out / f"{number}.xml"
        text = re.sub(r"<tirads>[^<]*</tirads>", "<tirads></tirads>", path.read_text())
        if number == "3":
            text = re.sub(r"<svg>.*?</svg>", "<svg></svg>", text, flags=re.S)
        path.write_text(text)
    with (out / "labels.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["number"] not in ("1", "2", "3")]
    with (out / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out
