"""Training writes a complete, seeded run; evaluation scores only held-out cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from thyrocam.errors import InputError
from thyrocam.metrics import binary_metrics, roc_auc, youden_threshold
from thyrocam.model import resolve_device
from thyrocam.train import TrainConfig, train


def test_run_folder_and_split_by_case(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["preprocessing"] == {"mode": "letterbox", "size": 64, "margin": 0.5}
    assert meta["label_definition"].startswith("explicit")
    assert meta["backbone_init"] == "scratch"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and metrics["best_epoch"] == 1
    assert 0.0 <= metrics["validation"]["threshold"] <= 1.0
    split = json.loads((tiny_run / "split.json").read_text())
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_training_is_seeded(synth_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1, image_size=32, batch_size=8, progress=False, device="cpu", weights=None, seed=11
    )
    train(synth_dir, out=tmp_path / "a", config=config)
    train(synth_dir, out=tmp_path / "b", config=config)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_metrics_against_hand_computed_values() -> None:
    probs = [0.1, 0.4, 0.35, 0.8]
    labels = [0, 0, 1, 1]
    assert roc_auc(probs, labels) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    m = binary_metrics(probs, labels, threshold=0.35)
    assert m["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.5 and m["accuracy"] == 0.75
    assert youden_threshold(probs, labels) in (0.35, 0.8)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(InputError, match="device"):
        resolve_device("tpu")


def test_lr_schedule_warms_up_decays_and_can_be_compressed() -> None:
    from thyrocam.train import _WarmupCosine

    schedule = _WarmupCosine(total_steps=100)
    assert schedule(0) == pytest.approx(0.02)
    assert schedule(15) == pytest.approx(1.0)
    assert schedule(60) < schedule(30) < 1.0
    assert schedule(100) == pytest.approx(0.02)
    schedule.total_steps = 50  # a time budget shortened the run: decay completes sooner
    assert schedule(50) == pytest.approx(0.02)
