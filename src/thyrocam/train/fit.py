"""The fit loop: epochs of optimizer steps, validation, best-epoch keeping, a time cap.

What one optimizer step minimises is a *step loss*: any callable
``step_loss(model, batch) -> (loss, logs)``, where ``loss`` is the scalar to
back-propagate and ``logs`` a dict of floats averaged over the epoch into the
history (``{"bce": ...}``). Extra per-batch losses (outlines, descriptors) are
new step losses, or :class:`SumOfLosses` of several; the loop does not change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from thyrocam.data.batches import Batch, batch_inputs, batch_len, batch_to
from thyrocam.evaluate import predict_probs
from thyrocam.metrics import roc_auc
from thyrocam.train.distributed import DistContext, broadcast_int, unwrap
from thyrocam.train.losses import malignancy_bce

__all__ = [
    "StepLoss",
    "MalignancyLoss",
    "SumOfLosses",
    "WarmupCosine",
    "FitResult",
    "train_one_epoch",
    "fit",
]

log = logging.getLogger(__name__)

StepLoss = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]


class MalignancyLoss:
    """BCE on the malignancy logit ``model(img, clin)[:, 0]``, positives weighted.

    Args:
        pos_weight: weight of the malignant class (``n_benign / n_malignant``
            balances the classes).
    """

    def __init__(self, *, pos_weight: float = 1.0) -> None:
        self.pos_weight = float(pos_weight)

    def __call__(
        self, model: torch.nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        img, clin, y = batch_inputs(batch)
        loss = malignancy_bce(model(img, clin)[:, 0], y, pos_weight=self.pos_weight)
        return loss, {"bce": float(loss.detach())}


class SumOfLosses:
    """Weighted sum of named step losses; the logs keep each part under its name.

    Args:
        parts: ``(name, weight, step_loss)`` triples.
    """

    def __init__(self, parts: Sequence[tuple[str, float, StepLoss]]) -> None:
        self.parts = list(parts)

    def __call__(
        self, model: torch.nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total: torch.Tensor | None = None
        logs: dict[str, float] = {}
        for name, weight, part in self.parts:
            loss, part_logs = part(model, batch)
            total = weight * loss if total is None else total + weight * loss
            logs[name] = float(loss.detach())
            logs.update({f"{name}.{k}": v for k, v in part_logs.items()})
        if total is None:
            raise ValueError("SumOfLosses: got no parts; expected at least one")
        return total, logs


class WarmupCosine:
    """LR multiplier: linear warm-up over 15% of the steps, then cosine decay to 2%.

    ``total_steps`` may be lowered during training (time cap): the rest of the
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


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    step_loss: StepLoss | None = None,
    pos_weight: float = 1.0,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``.

    Args:
        step_loss: what each step minimises; default :class:`MalignancyLoss`
            with ``pos_weight``.

    Returns:
        ``{"loss": mean loss, **mean of each log}``, means weighted by batch size.
    """
    step_loss = step_loss or MalignancyLoss(pos_weight=pos_weight)
    model.train()
    sums: dict[str, float] = {}
    count = 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = batch_to(batch, device)
        loss, logs = step_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = batch_len(batch)
        for key, value in {"loss": float(loss.detach()), **logs}.items():
            sums[key] = sums.get(key, 0.0) + value * n
        count += n
    return {key: total / max(count, 1) for key, total in sums.items()} or {"loss": 0.0}


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        history: one row per epoch (losses, ``val_auc``, ``seconds`` since start).
        best_epoch: the epoch whose weights were kept (best validation AUC, then loss).
        best_state: those weights (on the main process; empty on other ranks).
        epochs_planned: the epochs asked for.
        epochs_run: the epochs done (fewer only when the time cap cut training).
        stopped_by_time_budget: whether ``max_minutes`` cut training.
        seconds: wall-clock seconds of the loop.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    epochs_planned: int = 0
    epochs_run: int = 0
    stopped_by_time_budget: bool = False
    seconds: float = 0.0


def fit(
    model: torch.nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    step_loss: StepLoss,
    optimizer: torch.optim.Optimizer,
    schedule: WarmupCosine,
    epochs: int,
    device: torch.device,
    max_minutes: float | None = None,
    progress: bool = True,
    dist: DistContext | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs, validating after each; keep the best epoch's weights.

    ``schedule`` must drive ``optimizer`` (through a ``LambdaLR``) over
    ``epochs * len(train_loader)`` steps. Under DDP (``dist``), ``model`` is the
    DDP wrapper, validation runs on the main process only and the main process's
    decision to stop is broadcast, so every rank runs the same number of steps.
    """
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    main = dist is None or dist.is_main
    result = FitResult(epochs_planned=epochs)
    best_auc, best_loss = -math.inf, math.inf
    start = time.perf_counter()
    while result.epochs_run < epochs:
        epoch = result.epochs_run + 1
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a new shuffle per epoch under DistributedSampler
        stats = train_one_epoch(
            model,
            train_loader,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            step_loss=step_loss,
            progress=progress and main,
            desc=f"epoch {epoch}/{epochs}",
        )
        result.epochs_run = epoch
        if main:
            row = _validate(unwrap(model), val_loader, device=device, stats=stats, epoch=epoch)
            row["seconds"] = time.perf_counter() - start
            result.history.append(row)
            _log_epoch(row, epochs)
            score = -math.inf if row["val_auc"] is None else row["val_auc"]
            if score > best_auc or (score == best_auc and row["val_loss"] < best_loss):
                best_auc, best_loss, result.best_epoch = score, row["val_loss"], epoch
                result.best_state = {
                    k: v.detach().clone() for k, v in unwrap(model).state_dict().items()
                }
        if max_minutes is not None and epoch < epochs:
            fit_epochs = _epochs_that_fit(result.history, max_minutes, epochs) if main else 0
            fit_epochs = broadcast_int(fit_epochs, dist)
            if fit_epochs < epochs:
                epochs = fit_epochs
                result.stopped_by_time_budget = True
                schedule.total_steps = epochs * len(train_loader)
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def _validate(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    stats: dict[str, float],
    epoch: int,
) -> dict:
    p, y, val_loss = predict_probs(model, loader, device=device)
    val_auc = roc_auc(p, y)
    row: dict = {"epoch": epoch, "train_loss": stats["loss"]}
    row.update({f"train_{k}": v for k, v in stats.items() if k != "loss"})
    row.update({"val_loss": val_loss, "val_auc": None if math.isnan(val_auc) else val_auc})
    return row


def _log_epoch(row: dict, epochs: int) -> None:
    log.info(
        "epoch %d/%d  train loss %.4f  val loss %.4f  val AUC %s  (%.0f s)",
        row["epoch"],
        epochs,
        row["train_loss"],
        row["val_loss"],
        "n/a" if row["val_auc"] is None else f"{row['val_auc']:.4f}",
        row["seconds"],
    )


def _epochs_that_fit(history: list[dict], max_minutes: float, epochs: int) -> int:
    """How many epochs fit the cap, from the last epoch's duration (never fewer than done).

    The loop then compresses the learning-rate schedule to match, so it still
    completes its decay instead of stopping at a high learning rate.
    """
    done = history[-1]["epoch"]
    elapsed = history[-1]["seconds"]
    last = elapsed - (history[-2]["seconds"] if len(history) > 1 else 0.0)
    fit_epochs = done + int((max_minutes * 60 - elapsed) / max(last, 1e-6))
    if fit_epochs >= epochs:
        return epochs
    fit_epochs = max(fit_epochs, done)
    log.info(
        "time cap %.1f min: %d of %d planned epochs fit (%.0f s each)",
        max_minutes,
        fit_epochs,
        epochs,
        last,
    )
    return fit_epochs
