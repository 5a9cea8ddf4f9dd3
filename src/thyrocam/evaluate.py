"""Evaluation: score a run on a data set at the run's threshold, into metrics.json."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from thyrocam.checkpoint import METRICS, load_run, write_json
from thyrocam.data import Sample, ThyroidDataset, prepare_samples
from thyrocam.data.batches import batch_inputs
from thyrocam.metrics import binary_metrics
from thyrocam.model import resolve_device

__all__ = [
    "evaluate",
    "held_out_samples",
    "score_samples",
    "predict_probs",
    "Scored",
    "score_run",
    "record_evaluation",
]

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module, loader: DataLoader, *, device: torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities ``(N,)``, labels ``(N,)`` and mean (unweighted) BCE over ``loader``.

    The model runs in eval mode; batches are tuples or dicts (see
    :mod:`thyrocam.data.batches`).
    """
    model.eval()
    probs, labels, total = [], [], 0.0
    for batch in loader:
        img, clin, y = batch_inputs(batch)
        logits = model(img.to(device), clin.to(device))[:, 0].float().cpu()
        y = y.float().cpu()
        total += float(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
        probs.append(torch.sigmoid(logits).numpy())
        labels.append(y.numpy())
    p = np.concatenate(probs) if probs else np.zeros(0)
    t = np.concatenate(labels) if labels else np.zeros(0)
    return p, t, total / max(len(t), 1)


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


@dataclass(frozen=True)
class Scored:
    """One run's P(malignant) on the images it is evaluated on (see :func:`score_run`).

    Attributes:
        run: the run folder.
        data: the data set (resolved path).
        threshold: the run's decision threshold.
        samples: the scored images: the run's test split, or all of ``data``.
        subset: ``"test split"`` or ``"all"``.
        probs: ``(N,)`` P(malignant) per image.
        labels: ``(N,)`` 0/1.
        label_definition: how the labels were derived (said in every report).
        problems: what the data reader skipped or degraded.
    """

    run: Path
    data: Path
    threshold: float
    samples: list[Sample]
    subset: str
    probs: np.ndarray
    labels: np.ndarray
    label_definition: str
    problems: list[str]


def score_run(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    device: str | None = None,
    label_source: str = "auto",
) -> Scored:
    """Score ``run`` on ``data``: each image goes through the model once.

    When ``data`` is the folder the run was trained on, only its held-out test
    split is scored (cases are never scored on the data they were trained on).
    """
    info = load_run(run)
    dev = resolve_device(device)
    model = info.model.to(dev)
    samples, problems, label_definition = prepare_samples(data, label_source=label_source)
    subset, subset_name = held_out_samples(info.path, data, samples)
    probs, labels = score_samples(
        model, subset, preprocessing=info.preprocessing, cat_maps=info.cat_maps, device=dev
    )
    return Scored(
        run=Path(info.path),
        data=Path(data).resolve(),
        threshold=float(info.threshold),
        samples=subset,
        subset=subset_name,
        probs=probs,
        labels=labels,
        label_definition=label_definition,
        problems=list(problems),
    )


def record_evaluation(scored: Scored) -> dict:
    """AUC, sensitivity, specificity and accuracy of ``scored`` at the run's threshold.

    The result is stored under ``"evaluation"`` in the run's ``metrics.json``.
    """
    result = binary_metrics(scored.probs, scored.labels, threshold=scored.threshold)
    result.update(
        {
            "data": str(scored.data),
            "subset": scored.subset,
            "label_definition": scored.label_definition,
            "data_problems": len(scored.problems),
        }
    )
    metrics_path = scored.run / METRICS
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["evaluation"] = result
    write_json(metrics_path, metrics)
    return result


def evaluate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    device: str | None = None,
    label_source: str = "auto",
) -> dict:
    """Score ``run`` on ``data`` (:func:`score_run`) and record it (:func:`record_evaluation`)."""
    return record_evaluation(score_run(run, data, device=device, label_source=label_source))
