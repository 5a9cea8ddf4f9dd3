"""Evaluation: score a run on a data set at the run's threshold, into metrics.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from thyrocam.checkpoint import METRICS, load_run, write_json
from thyrocam.data import Sample, ThyroidDataset
from thyrocam.metrics import binary_metrics
from thyrocam.model import resolve_device
from thyrocam.train import predict_probs, prepare_samples

__all__ = ["evaluate", "held_out_samples", "score_samples"]

log = logging.getLogger(__name__)


def held_out_samples(
    run: Path, data: str | os.PathLike, samples: list[Sample]
) -> tuple[list[Sample], str]:
    """The samples to score: the run's own test split when ``data`` is what it was trained on.

    Returns:
        ``(samples, subset)`` where ``subset`` is ``"test split"`` or ``"all"``.
    """
    split_file = run / "split.json"
    if split_file.is_file():
        split = json.loads(split_file.read_text(encoding="utf-8"))
        if Path(split.get("data", "")).resolve() == Path(data).resolve():
            test_ids = set(split["test"])
            return [s for s in samples if s.case_id in test_ids], "test split"
    return samples, "all"


def score_samples(
    model: torch.nn.Module,
    samples: list[Sample],
    *,
    preprocessing,
    cat_maps: dict,
    device: torch.device,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """P(malignant) and labels for ``samples``: ``(probs (N,), labels (N,))``."""
    ds = ThyroidDataset(samples, preprocessing=preprocessing, cat_maps=cat_maps)
    probs, labels, _ = predict_probs(
        model, DataLoader(ds, batch_size=batch_size, shuffle=False), device=device
    )
    return probs, labels


def evaluate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    device: str | None = None,
    label_source: str = "auto",
) -> dict:
    """AUC, sensitivity, specificity and accuracy at the run's threshold.

    When ``data`` is the folder the run was trained on, only its held-out test
    split is scored (cases are never scored on the data they were trained on).
    The result is stored under ``"evaluation"`` in the run's ``metrics.json``.
    """
    info = load_run(run)
    dev = resolve_device(device)
    model = info.model.to(dev)
    samples, problems, label_definition = prepare_samples(data, label_source=label_source)
    subset, subset_name = held_out_samples(info.path, data, samples)
    probs, labels = score_samples(
        model, subset, preprocessing=info.preprocessing, cat_maps=info.cat_maps, device=dev
    )
    result = binary_metrics(probs, labels, threshold=info.threshold)
    result.update(
        {
            "data": str(Path(data).resolve()),
            "subset": subset_name,
            "label_definition": label_definition,
            "data_problems": len(problems),
        }
    )
    metrics_path = info.path / METRICS
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["evaluation"] = result
    write_json(metrics_path, metrics)
    return result
