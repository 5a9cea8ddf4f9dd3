"""Training: plain functions that return metric dicts, and a run folder on disk."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from thyrocam.checkpoint import save_run, write_json
from thyrocam.clinical import clinical_dim, fit_cat_maps
from thyrocam.data import (
    Sample,
    ThyroidDataset,
    cases_to_samples,
    label_counts,
    load_cases,
    split_by_case,
)
from thyrocam.errors import DataError
from thyrocam.imaging import Preprocessing
from thyrocam.metrics import binary_metrics, roc_auc, youden_threshold
from thyrocam.model import ThyroidNet, load_backbone_weights, resolve_device

__all__ = [
    "TrainConfig",
    "PRESETS",
    "train",
    "train_one_epoch",
    "predict_probs",
    "prepare_samples",
]

log = logging.getLogger(__name__)

LABEL_CAVEAT = (
    "DDTI labels are derived from the radiologist's TI-RADS grade ({2,3} benign, "
    "{4a,4b,4c,5} malignant), not from pathology."
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved into ``meta.json``)."""

    epochs: int = 10  # passes over the training split
    image_size: int = 224  # side of the network input
    batch_size: int = 32  # small enough for 2 CPU cores, large enough for BatchNorm
    arch: Literal["resnet18", "resnet50"] = "resnet18"
    lr: float = 2e-3  # peak of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    seed: int = 0  # seeds split, init, augmentation and order
    device: str | None = None  # None: CUDA when present, else CPU
    preprocess: Literal["center_crop", "letterbox", "roi"] = "letterbox"
    roi_margin: float = 0.5  # context around the nodule box, as a fraction of its side
    modalities: Literal["both", "image", "clinical"] = "both"
    weights: str | None = "imagenet"  # used only if on disk; otherwise from scratch
    label_source: Literal["auto", "labels", "tirads"] = "auto"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train/val/test, by case
    max_minutes: float | None = None  # time budget: fewer epochs if the first shows they won't fit
    field_dropout: float = 0.15  # descriptors hidden at random while training
    progress: bool = True  # tqdm bars

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(mode=self.preprocess, size=self.image_size, margin=self.roi_margin)


# The demo preset: what `make demo` trains. Crops around the nodule at 96 px keep
# the nodule and its surroundings and fit 2 CPU cores' 5-minute budget.
PRESETS: dict[str, dict] = {
    "demo": dict(
        epochs=30,
        image_size=96,
        batch_size=16,  # more optimizer steps per epoch: the net starts from scratch
        preprocess="roi",
        roi_margin=0.5,
        lr=1.5e-3,
        max_minutes=4.5,
    ),
    "tiny": dict(epochs=1, image_size=64, batch_size=8, preprocess="letterbox"),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_samples(
    data: str | os.PathLike, *, label_source: str = "auto"
) -> tuple[list[Sample], list[str], str]:
    """Read a DDTI folder or a CSV manifest into labelled samples.

    Returns:
        ``(samples, problems, label_definition)``; the definition says whether
        the labels are explicit (labels.csv, manifest) or TI-RADS-derived.
    """
    cases, problems = load_cases(data)
    samples, more = cases_to_samples(cases, label_source=label_source)
    problems = list(problems) + list(more)
    if not samples:
        raise DataError(
            f"data: {data} yields no labelled image (problems: {len(problems)}); "
            "allowed: a DDTI folder with TI-RADS grades or labels.csv, or a labelled CSV manifest",
            field="data",
            value=str(data),
            allowed="labelled DDTI folder or manifest",
        )
    explicit = label_source != "tirads" and all(c.label is not None for c in cases)
    definition = (
        "explicit labels (labels.csv or manifest)" if explicit else "tirads: " + LABEL_CAVEAT
    )
    return samples, problems, definition


def _loader(ds: ThyroidDataset, *, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(ds) > batch_size,  # no batch of 1 through BatchNorm
        num_workers=0,  # the cores are busy with the network's own threads
        generator=generator,
    )


def train_one_epoch(
    model: ThyroidNet,
    loader: DataLoader,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    pos_weight: float,
    progress: bool = True,
    desc: str = "train",
) -> dict:
    """One pass over ``loader``; returns ``{"loss": mean BCE}``."""
    model.train()
    total, count = 0.0, 0
    weight = torch.tensor([pos_weight], device=device)
    for img, clin, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        img, clin, y = img.to(device), clin.to(device), y.to(device)
        logits = model(img, clin)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
    return {"loss": total / max(count, 1)}


@torch.no_grad()
def predict_probs(
    model: ThyroidNet, loader: DataLoader, *, device: torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities, labels and mean (unweighted) BCE over ``loader``, in eval mode."""
    model.eval()
    probs, labels, total = [], [], 0.0
    for img, clin, y in loader:
        logits = model(img.to(device), clin.to(device))[:, 0].float().cpu()
        total += float(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
        probs.append(torch.sigmoid(logits).numpy())
        labels.append(y.numpy())
    p = np.concatenate(probs) if probs else np.zeros(0)
    t = np.concatenate(labels) if labels else np.zeros(0)
    return p, t, total / max(len(t), 1)


@dataclass
class _Best:
    auc: float = -math.inf
    loss: float = math.inf
    epoch: int = -1
    state: dict = field(default_factory=dict)


class _WarmupCosine:
    """LR multiplier: linear warm-up over 15% of the steps, then cosine decay to 2%.

    ``total_steps`` may be lowered during training (time budget): the rest of the
    schedule is then compressed rather than cut off at a high learning rate.
    """

    def __init__(self, *, total_steps: int, warmup: float = 0.15, floor: float = 0.02) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup = warmup
        self.floor = floor

    def __call__(self, step: int) -> float:
        p = min(step / self.total_steps, 1.0)
        if p < self.warmup:
            return max(p / self.warmup, self.floor)
        q = (p - self.warmup) / (1.0 - self.warmup)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * q))


def train(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
) -> dict:
    """Train a ThyroidNet on a DDTI folder or CSV manifest and write a run folder.

    The split is by case (stratified, seeded); the model kept is the epoch with
    the best validation AUC; the decision threshold is chosen on validation
    (Youden's J); the test split is scored once at the end.

    Returns:
        The metrics dict also written to ``out/metrics.json``.
    """
    config = config or TrainConfig()
    out = Path(out)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    preprocessing = config.preprocessing()

    samples, problems, label_definition = prepare_samples(data, label_source=config.label_source)
    for line in problems[:20]:
        log.info("data: %s", line)
    if len(problems) > 20:
        log.info(
            "data: ... and %d more problems (see %s)", len(problems) - 20, out / "problems.txt"
        )
    train_s, val_s, test_s = split_by_case(samples, fractions=config.fractions, seed=config.seed)
    log.info(
        "split by case: train %s, val %s, test %s",
        label_counts(train_s),
        label_counts(val_s),
        label_counts(test_s),
    )
    cat_maps = fit_cat_maps([s.clinical for s in train_s])

    model = ThyroidNet(
        arch=config.arch, clinical_dim=clinical_dim(cat_maps), modalities=config.modalities
    )
    backbone = load_backbone_weights(model, weights=config.weights)
    model.to(device)

    train_ds = ThyroidDataset(
        train_s,
        preprocessing=preprocessing,
        cat_maps=cat_maps,
        augment=True,
        field_dropout=config.field_dropout,
        seed=config.seed,
    )
    val_ds = ThyroidDataset(val_s, preprocessing=preprocessing, cat_maps=cat_maps)
    train_dl = _loader(train_ds, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    val_dl = _loader(val_ds, batch_size=config.batch_size, shuffle=False, seed=config.seed)

    n_pos = sum(s.label for s in train_s)
    n_neg = len(train_s) - n_pos
    pos_weight = n_neg / n_pos if n_pos and n_neg else 1.0
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = _WarmupCosine(total_steps=config.epochs * len(train_dl))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    history: list[dict] = []
    best = _Best()
    # Decode every frame before the clock starts: the time budget measures training.
    train_ds.preload()
    val_ds.preload()
    start = time.perf_counter()
    epochs = config.epochs
    epoch = 0
    while epoch < epochs:
        epoch += 1
        stats = train_one_epoch(
            model,
            train_dl,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            pos_weight=pos_weight,
            progress=config.progress,
            desc=f"epoch {epoch}/{epochs}",
        )
        p, y, val_loss = predict_probs(model, val_dl, device=device)
        val_auc = roc_auc(p, y)
        elapsed = time.perf_counter() - start
        row = {
            "epoch": epoch,
            "train_loss": stats["loss"],
            "val_loss": val_loss,
            "val_auc": None if math.isnan(val_auc) else val_auc,
            "seconds": elapsed,
        }
        history.append(row)
        log.info(
            "epoch %d/%d  train loss %.4f  val loss %.4f  val AUC %s  (%.0f s)",
            epoch,
            epochs,
            stats["loss"],
            val_loss,
            "n/a" if math.isnan(val_auc) else f"{val_auc:.4f}",
            elapsed,
        )
        score = -math.inf if math.isnan(val_auc) else val_auc
        if score > best.auc or (score == best.auc and val_loss < best.loss):
            best = _Best(
                auc=score,
                loss=val_loss,
                epoch=epoch,
                state={k: v.detach().clone() for k, v in model.state_dict().items()},
            )
        if config.max_minutes is not None and epoch < epochs:
            # Fit the run into the time budget from the last epoch's duration, and
            # compress the learning-rate schedule to match (it still completes its
            # decay instead of stopping at a high learning rate).
            last = elapsed - (history[-2]["seconds"] if len(history) > 1 else 0.0)
            fit = epoch + int((config.max_minutes * 60 - elapsed) / max(last, 1e-6))
            if fit < epochs:
                log.info(
                    "time budget %.1f min: %d of %d epochs fit (%.0f s each)",
                    config.max_minutes,
                    max(fit, epoch),
                    epochs,
                    last,
                )
                epochs = max(fit, epoch)
                schedule.total_steps = epochs * len(train_dl)
    model.load_state_dict(best.state)

    p_val, y_val, _ = predict_probs(model, val_dl, device=device)
    threshold = youden_threshold(p_val, y_val)
    test_ds = ThyroidDataset(test_s, preprocessing=preprocessing, cat_maps=cat_maps)
    p_test, y_test, _ = predict_probs(
        model, _loader(test_ds, batch_size=config.batch_size, shuffle=False, seed=0), device=device
    )
    metrics = {
        "label_definition": label_definition,
        "best_epoch": best.epoch,
        "train_seconds": time.perf_counter() - start,
        "history": history,
        "validation": binary_metrics(p_val, y_val, threshold=threshold),
        "test": binary_metrics(p_test, y_test, threshold=threshold),
        "data_problems": len(problems),
    }
    cfg = asdict(replace(config, device=str(device)))
    save_run(
        out,
        model=model.cpu(),
        cat_maps=cat_maps,
        preprocessing=preprocessing,
        threshold=threshold,
        extra_meta={
            "backbone_init": backbone,
            "label_definition": metrics["label_definition"],
            "train_config": cfg,
            "data": str(Path(data).resolve()),
        },
        metrics=metrics,
    )
    write_json(
        out / "split.json",
        {
            "data": str(Path(data).resolve()),
            "seed": config.seed,
            "train": sorted({s.case_id for s in train_s}),
            "val": sorted({s.case_id for s in val_s}),
            "test": sorted({s.case_id for s in test_s}),
        },
    )
    (out / "problems.txt").write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    return metrics
