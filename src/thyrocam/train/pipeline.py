"""``train()``: data -> split -> model -> fit -> score -> run folder.

Each step is a small function here or in :mod:`~thyrocam.train.fit` /
:mod:`~thyrocam.train.scoring`; the run folder is written by
:func:`thyrocam.checkpoint.save_run` (atomically, every file of a run).
Under ``torchrun`` every rank fits its share of each batch (DDP); rank 0
alone validates, scores and writes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from thyrocam.checkpoint import check_run_target, save_run
from thyrocam.clinical import fit_cat_maps
from thyrocam.data import (
    Sample,
    ThyroidDataset,
    label_counts,
    outline_only_samples,
    prepare_samples,
    split_by_case,
)
from thyrocam.model import ThyroidNet, resolve_device
from thyrocam.train.config import TrainConfig, seed_everything
from thyrocam.train.distributed import (
    DistContext,
    broadcast_json,
    close_distributed,
    init_distributed,
    unwrap,
    wrap_ddp,
)
from thyrocam.train.fit import FitResult, MalignancyLoss, StepLoss, WarmupCosine, fit
from thyrocam.train.recipe import (
    build_model,
    fit_locator,
    fit_modalities,
    fitted_meta,
    is_stacked,
    locator_meta,
    malignant_class_weight,
    run_heads,
    stack_both,
    step_loss_for,
    train_dataset,
    with_outline_only,
)
from thyrocam.train.scoring import descriptor_quality, score_fitted
from thyrocam.train.stacking import Stacking

__all__ = ["train", "prepare_data", "make_step_loss", "PreparedData"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The labelled samples of a data set, split by case, and the descriptor encoding.

    Attributes:
        train, val, test: the samples of each split (all views of a case together).
        cat_maps: the descriptor encoding, fitted on ``train``.
        problems: what the reader skipped or degraded.
        label_definition: explicit labels or TI-RADS-derived (with the caveat).
        data: the data path, resolved.
        seed: the split seed.
        outline_only: outlined frames of unlabelled cases, when the config asks for them
            (``unlabelled_outlines``): they join the training set of a network with an
            outline head and are never validated or tested.
    """

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    cat_maps: dict
    problems: list[str]
    label_definition: str
    data: str
    seed: int
    outline_only: list[Sample] = field(default_factory=list)

    def split_record(self) -> dict:
        """What ``split.json`` holds: the case ids of each split (and of the unlabelled
        cases whose outlines were trained on, when any were)."""
        record = {
            "data": self.data,
            "seed": self.seed,
            "train": sorted({s.case_id for s in self.train}),
            "val": sorted({s.case_id for s in self.val}),
            "test": sorted({s.case_id for s in self.test}),
        }
        if self.outline_only:
            record["train_outline_only"] = sorted({s.case_id for s in self.outline_only})
        return record


def train(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
) -> dict:
    """Train a ThyroidNet on a DDTI folder or CSV manifest and write a run folder.

    The split is by case (stratified, seeded); the model kept is the epoch with
    the best validation AUC; the decision threshold is chosen on validation
    (Youden's J); the test split is scored once at the end. Started by
    ``torchrun``, the ranks train one model with DDP and rank 0 writes the run.

    Returns:
        The metrics dict also written to ``out/metrics.json``.

    Raises:
        InputError: unusable data or ``out`` (checked before training starts).
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    dist = init_distributed(device)
    try:
        if dist is not None and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        if dist is None or dist.is_main:
            out = check_run_target(out)
        return _train(data, out=Path(out), config=config, device=device, dist=dist)
    finally:
        close_distributed(dist)


def _train(
    data: str | os.PathLike,
    *,
    out: Path,
    config: TrainConfig,
    device: torch.device,
    dist: DistContext | None,
) -> dict:
    seed_everything(config.seed)
    main = dist is None or dist.is_main
    prepared = prepare_data(data, config=config, quiet=not main)
    heads = run_heads(config, prepared.train)
    # Only an outline head learns from unlabelled frames: the run records those it used.
    outline_only = with_outline_only([], prepared.outline_only, heads=heads)
    prepared = replace(prepared, outline_only=outline_only)
    if outline_only and main:
        log.info("outlines of unlabelled cases also trained on: %d frames", len(outline_only))
    # A stacked "both" model starts as the image-only network (thyrocam.train.stacking).
    fit_config = replace(config, modalities=fit_modalities(config))
    model, backbone = build_model(fit_config, cat_maps=prepared.cat_maps, heads=heads)
    start = None
    if is_stacked(config):  # the half networks start where the image network starts
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.to(device)
    result, val_dl, test_dl = _fit_model(
        model, prepared, config=config, device=device, dist=dist, heads=heads
    )
    if not main:
        # Rank 0 scores and writes; the others wait for its metrics and return them.
        return broadcast_json(None, dist)
    model = unwrap(model)
    model, kept_epoch, stacking = _kept_model(
        model, result, prepared, config=config, fit_config=fit_config, start=start, device=device
    )
    locator, locator_cases = _fit_run_locator(data, prepared, config=config, device=device)
    scores = score_fitted(model, val_loader=val_dl, test_loader=test_dl, device=device)
    metrics = _metrics(prepared, result, scores.validation, scores.test, dist=dist)
    metrics["kept_epoch"] = kept_epoch
    if stacking is not None:
        metrics["stacking"] = stacking.to_dict()
    quality = descriptor_quality(
        model,
        train=prepared.train,
        test=prepared.test,
        preprocessing=config.preprocessing(),
        cat_maps=prepared.cat_maps,
        device=device,
        batch_size=config.batch_size,
    )
    save_run(
        out,
        model=model.cpu(),
        cat_maps=prepared.cat_maps,
        preprocessing=config.preprocessing(),
        threshold=scores.threshold,
        extra_meta={
            "backbone_init": backbone,
            "label_definition": prepared.label_definition,
            **fitted_meta(config, device=device, heads=heads, stacking=stacking),
            "data": prepared.data,
            # Each descriptor head's held-out accuracy beside the commonest value's: the
            # page shows it with every estimate (meta.json: it never changes after training).
            **({"descriptor_quality": quality} if quality is not None else {}),
        },
        metrics=metrics,
        split={
            **prepared.split_record(),
            **({"locator_train": locator_cases} if locator is not None else {}),
        },
        problems=prepared.problems,
        locator=None if locator is None else locator.cpu(),
        locator_meta=None if locator is None else locator_meta(config, locator, device=device),
    )
    return broadcast_json(metrics, dist)


def _fit_run_locator(
    data: str | os.PathLike, prepared: PreparedData, *, config: TrainConfig, device: torch.device
) -> tuple[ThyroidNet | None, list[str]]:
    """The run's locator (``config.locator``; rank 0 alone under torchrun) and the case ids
    it learnt from: trained on :func:`locator_samples` and the outlined frames of
    unlabelled cases, for as many epochs as the recipe names (its outline is all it is
    used for, so no validation chooses an epoch)."""
    if config.locator is None:
        return None, []
    outline_only = outline_only_samples(data, label_source=config.label_source)
    log.info("locator (%s decoder): %d unlabelled outlined frames too", config.locator,
             len(outline_only))
    labelled = locator_samples(prepared)
    locator = fit_locator(
        config, labelled, cat_maps=prepared.cat_maps, device=device, outline_only=outline_only
    )
    return locator, sorted({s.case_id for s in (*labelled, *outline_only)})


def locator_samples(prepared: PreparedData) -> list[Sample]:
    """The labelled frames a run's locator trains on: the training and validation splits.

    Nothing is chosen on validation for the locator (its last weights are kept, and the
    classifier's validation scores never use it), so validation frames are outlines it
    can learn from; the test split stays unseen, where the report measures the box."""
    return [*prepared.train, *prepared.val]


def _kept_model(
    model: ThyroidNet,
    result: FitResult,
    prepared: PreparedData,
    *,
    config: TrainConfig,
    fit_config: TrainConfig,
    start: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> tuple[ThyroidNet, int, Stacking | None]:
    """The model the run keeps -> ``(model, its epoch, the stacked fusion or None)``.

    A joint model: the epoch with the best validation AUC. A stacked fusion keeps its
    image network at the last epoch, as cross-validation scores it: that network's
    validation AUC on ~30 frames is noise (0.59-0.71 over the 40 epochs of a --preset
    ddti run, best at epoch 4), and an early epoch leaves the outline head, and so the
    automatic box, half-trained.
    """
    if not is_stacked(config):
        model.load_state_dict(result.best_state)
        return model, result.best_epoch, None
    # Under torchrun rank 0 fits the two half networks alone (the other ranks already
    # wait for its metrics).
    fused, stacking = stack_both(
        model.eval(),
        prepared.train,
        config=fit_config,
        cat_maps=prepared.cat_maps,
        device=device,
        start=start,
        epochs=result.epochs_run,  # as many as the image network ran
        outline_only=prepared.outline_only,
    )
    return fused, result.epochs_run, stacking


def _fit_model(
    model: torch.nn.Module,
    prepared: PreparedData,
    *,
    config: TrainConfig,
    device: torch.device,
    dist: DistContext | None,
    heads: tuple[str, ...],
) -> tuple[FitResult, DataLoader, DataLoader]:
    """Fit ``model`` (DDP-wrapped under torchrun) -> ``(result, val loader, test loader)``."""
    train_dl, val_dl, test_dl = _loaders(prepared, config=config, dist=dist, heads=heads)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = WarmupCosine(total_steps=config.epochs * len(train_dl))
    result = fit(
        wrap_ddp(model, device) if dist is not None else model,
        train_dl,
        val_dl,
        step_loss=step_loss_for(config, model, prepared.train),
        optimizer=optimizer,
        schedule=schedule,
        epochs=config.epochs,
        device=device,
        max_minutes=config.max_minutes,
        progress=config.progress,
        dist=dist,
    )
    return result, val_dl, test_dl


def prepare_data(
    data: str | os.PathLike, *, config: TrainConfig, quiet: bool = False
) -> PreparedData:
    """Read ``data``, split it by case and fit the descriptor encoding on the train split."""
    samples, problems, label_definition = prepare_samples(data, label_source=config.label_source)
    train_s, val_s, test_s = split_by_case(samples, fractions=config.fractions, seed=config.seed)
    outline_only = []
    if config.unlabelled_outlines:
        outline_only = outline_only_samples(data, label_source=config.label_source)
    if not quiet:
        for line in problems[:20]:
            log.info("data: %s", line)
        if len(problems) > 20:
            log.info("data: ... and %d more problems (see problems.txt)", len(problems) - 20)
        log.info(
            "split by case: train %s, val %s, test %s",
            label_counts(train_s),
            label_counts(val_s),
            label_counts(test_s),
        )
    return PreparedData(
        train=train_s,
        val=val_s,
        test=test_s,
        cat_maps=fit_cat_maps([s.clinical for s in train_s]),
        problems=list(problems),
        label_definition=label_definition,
        data=str(Path(data).resolve()),
        seed=config.seed,
        outline_only=outline_only,
    )


def make_step_loss(config: TrainConfig, train_samples: list[Sample]) -> StepLoss:
    """What each optimizer step minimises: class-weighted BCE on the malignancy logit."""
    return MalignancyLoss(pos_weight=malignant_class_weight(train_samples))


def _loaders(
    prepared: PreparedData,
    *,
    config: TrainConfig,
    dist: DistContext | None,
    heads: tuple[str, ...] = ("malignancy",),
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (augmented, shuffled; a DistributedSampler shard under DDP), val and test loaders.

    Frames are decoded here, before the fit's clock starts, so a time cap measures training.
    """
    preprocessing = config.preprocessing()
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    train_ds = train_dataset(
        config,
        with_outline_only(prepared.train, prepared.outline_only, heads=heads),
        cat_maps=prepared.cat_maps,
        heads=heads,
        seed=config.seed + rank,  # each rank its own augmentation stream
        # Under DDP one forward per step: the extra whole-frame outline pass is skipped.
        whole_frames=dist is None,
    )
    # The global batch stays config.batch_size, so the schedule and BatchNorm see
    # about what one process would.
    batch = max(1, config.batch_size // world)
    drop_last = len(train_ds) // world > batch  # no batch of 1 through BatchNorm
    if dist is None:
        train_dl = DataLoader(
            train_ds,
            batch_size=batch,
            shuffle=True,
            drop_last=drop_last,
            num_workers=0,  # the cores are busy with the network's own threads
            generator=torch.Generator().manual_seed(config.seed),
        )
    else:
        sampler = DistributedSampler(
            train_ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True
        )
        train_dl = DataLoader(
            train_ds, batch_size=batch, sampler=sampler, drop_last=drop_last, num_workers=0
        )
    train_ds.preload()
    evals = []
    for samples in (prepared.val, prepared.test):
        ds = ThyroidDataset(samples, preprocessing=preprocessing, cat_maps=prepared.cat_maps)
        # A generator of its own: iterating must not draw from the global RNG (dropout's).
        generator = torch.Generator().manual_seed(config.seed)
        evals.append(
            DataLoader(ds, batch_size=config.batch_size, shuffle=False, generator=generator)
        )
    if dist is None or dist.is_main:
        evals[0].dataset.preload()
    return train_dl, evals[0], evals[1]


def _metrics(
    prepared: PreparedData,
    result: FitResult,
    validation: dict,
    test: dict,
    *,
    dist: DistContext | None,
) -> dict:
    return {
        "label_definition": prepared.label_definition,
        "best_epoch": result.best_epoch,
        "epochs_planned": result.epochs_planned,
        "epochs_run": result.epochs_run,
        "stopped_by_time_budget": result.stopped_by_time_budget,
        "processes": 1 if dist is None else dist.world_size,
        "train_seconds": result.seconds,
        "history": result.history,
        "validation": validation,
        "test": test,
        "data_problems": len(prepared.problems),
        "outline_only_frames": len(prepared.outline_only),
    }
