"""The small-real-data recipe: which heads, how the model starts, what each step minimises.

- Heads: every head the data supports (outlines -> ``"outline"``, recorded
  descriptors -> ``"descriptors"``), unless the config names them.
- Start: a user's backbone (``weights``), a previous run (``init_from``), or a
  pretraining pass on synthetic cases whose true descriptors and outlines are
  known (``pretrain_synthetic``) -- the strongest lever found on DDTI.
- Step loss: class-weighted BCE, plus the masked outline and descriptor losses
  (:class:`~thyrocam.train.losses.MultiTaskLoss`) when the model has those heads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from thyrocam.checkpoint import load_run
from thyrocam.clinical import clinical_dim
from thyrocam.data import ThyroidDataset
from thyrocam.data.samples import Sample, has_outline
from thyrocam.errors import InputError
from thyrocam.imaging import Preprocessing
from thyrocam.model import (
    DESCRIPTOR_FIELDS,
    ThyroidNet,
    descriptor_classes_from,
    load_backbone_weights,
)
from thyrocam.train.config import TrainConfig, seed_everything
from thyrocam.train.fit import MalignancyLoss, StepLoss, WarmupCosine, train_one_epoch
from thyrocam.train.losses import MultiTaskLoss
from thyrocam.train.pretraining import synthetic_set
from thyrocam.train.stacking import Stacking, fit_stacking

__all__ = [
    "supported_heads",
    "run_heads",
    "outline_input",
    "fitted_meta",
    "build_model",
    "fit_modalities",
    "is_stacked",
    "step_loss_for",
    "fit_epochs",
    "fit_network",
    "fit_locator",
    "locator_start",
    "locator_config",
    "locator_meta",
    "load_matching",
    "stack_both",
    "pretrain_synthetic",
    "train_dataset",
    "with_outline_only",
    "malignant_class_weight",
]

log = logging.getLogger(__name__)


def supported_heads(samples: list[Sample]) -> tuple[str, ...]:
    """The heads ``samples`` can supervise: always malignancy; outline; descriptors."""
    heads = ["malignancy"]
    if any(has_outline(s) for s in samples):
        heads.append("outline")
    if any(s.clinical.get(f) is not None for s in samples for f in DESCRIPTOR_FIELDS):
        heads.append("descriptors")
    return tuple(heads)


def run_heads(config: TrainConfig, samples: list[Sample]) -> tuple[str, ...]:
    """The config's heads (malignancy added), or every head the data supports -- but
    for a descriptors-only model only malignancy: its logit never reads the image, so
    image heads would train a CNN (most of the run's time) for nothing it predicts."""
    if config.heads is None:
        return ("malignancy",) if config.modalities == "clinical" else supported_heads(samples)
    return tuple(dict.fromkeys(("malignancy", *config.heads)))


def outline_input(config: TrainConfig) -> Preprocessing:
    """The whole-frame pass the outline head learns and the automatic box uses."""
    return Preprocessing(mode="letterbox", size=config.outline_size or config.image_size)


def fitted_meta(
    config: TrainConfig,
    *,
    device: torch.device | str,
    heads: tuple[str, ...],
    stacking: Stacking | None,
) -> dict:
    """The ``meta.json`` entries that say how a network was fitted: its ``train_config``,
    a stacked fusion's fit, and the whole-frame pass of the automatic box (outline head)."""
    return {
        "train_config": asdict(replace(config, device=str(device))),
        # What the stacked fusion fitted (its image weight, the out-of-fold test).
        **({"stacking": stacking.to_dict()} if stacking is not None else {}),
        # The whole-frame pass the automatic box is computed on (outline head only).
        **({"outline_input": outline_input(config).to_dict()} if "outline" in heads else {}),
    }


def is_stacked(config: TrainConfig) -> bool:
    """Whether ``config`` trains a stacked ``"both"`` model (:mod:`thyrocam.train.stacking`)."""
    return config.modalities == "both" and config.fusion == "stacked"


def fit_modalities(config: TrainConfig) -> str:
    """The modalities a run's network is built, pretrained and fitted as: a stacked
    ``"both"`` model starts as its image-only network."""
    return "image" if is_stacked(config) else config.modalities


def build_model(
    config: TrainConfig, *, cat_maps: dict, heads: tuple[str, ...]
) -> tuple[ThyroidNet, str]:
    """A fresh ``ThyroidNet`` with ``heads``, then its starting weights.

    Returns:
        ``(model, init)``: ``init`` says where the weights came from (for ``meta.json``).
    """
    pool = config.pool
    if pool == "outline" and "outline" not in heads:
        # Nothing to pool by: a descriptors-only model of `thyrocam cv`, or data without
        # outlines under a preset that pools by them. meta.json records "mean".
        log.warning("pool: no outline head (heads %s), so layer4 is averaged over the crop", heads)
        pool = "mean"
    model = ThyroidNet(
        arch=config.arch,
        clinical_dim=clinical_dim(cat_maps),
        modalities=config.modalities,
        heads=heads,
        descriptor_classes=descriptor_classes_from(cat_maps),
        pool=pool,
        decoder=config.decoder,
    )
    init = load_backbone_weights(model, weights=config.weights)
    if config.init_from:
        init = _load_matching(model, config.init_from)
    if config.pretrain_synthetic > 0 and config.modalities != "clinical":
        pretrain_synthetic(model, config=config, cat_maps=cat_maps)
        init = f"{init}+synthetic:{config.pretrain_synthetic}"
    elif config.pretrain_synthetic > 0:
        # The synthetic set teaches the image (outline, descriptors, malignancy); a
        # descriptors-only network would learn only the generator's own descriptor-to-
        # label rule, so it starts from scratch, as cross-validation scores it.
        log.info("pretrain_synthetic: a descriptors-only network is not pretrained")
    return model, init


def _load_matching(model: ThyroidNet, run: str) -> str:
    """Copy every tensor of ``run`` whose name and shape match (heads may differ)."""
    matched = load_matching(model, load_run(run).model.state_dict())
    if "cnn.conv1.weight" not in matched:  # scalars such as BatchNorm counters always match
        raise InputError(
            f"init_from: run {run} has no backbone that fits {model.arch}; "
            f"allowed: a run of the same architecture",
            field="init_from",
            value=str(run),
            allowed=model.arch,
        )
    return f"run:{Path(run).name} ({len(matched)}/{len(model.state_dict())} tensors)"


def load_matching(model: ThyroidNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; their names."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return list(matched)


def malignant_class_weight(samples: Sequence[Sample]) -> float:
    """``n_benign / n_malignant`` over the labelled ``samples`` (1 when a class is absent):
    the BCE weight of the malignant class that balances the two."""
    labels = [s.label for s in samples if s.label is not None]
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    return n_neg / n_pos if n_pos and n_neg else 1.0


def step_loss_for(config: TrainConfig, model: ThyroidNet, samples: list[Sample]) -> StepLoss:
    """Class-weighted BCE, plus outline and descriptor terms when ``model`` has those heads."""
    pos_weight = malignant_class_weight(samples)
    if len(model.heads) == 1:
        return MalignancyLoss(pos_weight=pos_weight)
    return MultiTaskLoss(
        pos_weight=pos_weight,
        outline_weight=config.outline_weight,
        box_weight=config.outline_box_weight,
        frame_share=config.outline_frame_share,
        descriptor_weight=config.descriptor_weight,
    )


def with_outline_only(
    samples: Sequence[Sample], outline_only: Sequence[Sample], *, heads: Sequence[str]
) -> list[Sample]:
    """``samples``, then the unlabelled outlined frames when the network has an outline head
    (without it they would teach nothing)."""
    return [*samples, *outline_only] if "outline" in heads else list(samples)


def train_dataset(
    config: TrainConfig,
    samples: list[Sample],
    *,
    cat_maps: dict,
    heads: tuple[str, ...],
    seed: int,
    whole_frames: bool = True,
) -> ThyroidDataset:
    """The augmented training Dataset; dicts with targets when there are extra heads."""
    return ThyroidDataset(
        samples,
        preprocessing=config.preprocessing(),
        cat_maps=cat_maps,
        augment=True,
        augmentation=config.augmentation,
        field_dropout=config.field_dropout,
        roi_jitter=(config.roi_shift, config.roi_zoom),
        seed=seed,
        targets=len(heads) > 1,
        outline_input=outline_input(config) if "outline" in heads and whole_frames else None,
    )


def pretrain_synthetic(model: ThyroidNet, *, config: TrainConfig, cat_maps: dict) -> None:
    """Fit ``model`` on ``config.pretrain_synthetic`` synthetic cases, in place.

    The synthetic set's ``labels.csv`` holds the true descriptors (its XML holds
    a noisy reading, like a radiologist's); the descriptor heads learn the true
    ones. Every head the model has is trained, with the run's recipe. The set is
    written once per process and shared (:mod:`thyrocam.train.pretraining`).
    """
    _fit_on(
        model,
        list(synthetic_set(cases=config.pretrain_synthetic, seed=config.seed + 1)),
        config=config,
        cat_maps=cat_maps,
        epochs=config.pretrain_epochs,
        seed=config.seed + 1,
        desc="synthetic pretraining",
    )


def fit_epochs(
    model: ThyroidNet,
    ds: ThyroidDataset,
    *,
    config: TrainConfig,
    samples: list[Sample],
    epochs: int,
    seed: int,
    desc: str,
) -> None:
    """Train ``model`` in place for exactly ``epochs`` epochs; the last weights are kept.

    The run's optimizer (AdamW), warm-up + cosine schedule and loss, with no
    validation: what synthetic pretraining and each cross-validation fold need.
    """
    loader = DataLoader(
        ds,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(ds) > config.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps=epochs * len(loader))
    )
    device = next(model.parameters()).device
    loss = step_loss_for(config, model, samples)
    for epoch in range(1, epochs + 1):
        stats = train_one_epoch(
            model,
            loader,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            step_loss=loss,
            progress=config.progress,
            desc=f"{desc} {epoch}/{epochs}",
        )
        log.info("%s %d/%d  loss %.4f", desc, epoch, epochs, stats["loss"])


def fit_network(
    config: TrainConfig,
    samples: list[Sample],
    *,
    cat_maps: dict,
    device: torch.device,
    start: dict[str, torch.Tensor] | None = None,
    epochs: int | None = None,
    desc: str | None = None,
    outline_only: Sequence[Sample] = (),
) -> ThyroidNet:
    """A network of ``config.modalities`` trained on ``samples`` for ``epochs`` (default
    ``config.epochs``) epochs, without validation; the last weights are kept.

    ``start``: weights to begin from (those whose name and shape fit); no synthetic
    pretraining is run here (``start`` holds it when wanted). ``outline_only``:
    unlabelled outlined frames (:func:`~thyrocam.data.outline_only_samples`) added to
    the training set of a network with an outline head.
    """
    config = replace(config, pretrain_synthetic=0)
    heads = run_heads(config, samples) if config.modalities != "clinical" else ("malignancy",)
    model, _ = build_model(config, cat_maps=cat_maps, heads=heads)
    if start is not None and config.modalities != "clinical":
        load_matching(model, start)
    model.to(device)
    _fit_on(
        model,
        samples,
        config=config,
        cat_maps=cat_maps,
        epochs=config.epochs if epochs is None else epochs,
        seed=config.seed,
        desc=desc or f"{config.modalities} epoch",
        outline_only=outline_only,
    )
    return model.eval()


def locator_config(config: TrainConfig) -> TrainConfig:
    """The recipe of a run's locator network (``config.locator``): the run's, image-only,
    with that outline decoder and every head the data supports (whatever heads the
    classifier was given), also learning the unlabelled cases' outlines."""
    if config.locator is None:
        raise ValueError("locator_config: this recipe has no locator (config.locator is None)")
    return replace(
        config,
        modalities="image",
        decoder=config.locator,
        heads=None,
        unlabelled_outlines=True,
        locator=None,
    )


def locator_meta(config: TrainConfig, locator: ThyroidNet, *, device: torch.device | str) -> dict:
    """The ``meta.json`` entries of a run's locator folder (:func:`fitted_meta` of
    :func:`locator_config`), for :func:`~thyrocam.checkpoint.save_run`'s ``locator_meta``."""
    return fitted_meta(locator_config(config), device=device, heads=locator.heads, stacking=None)


def locator_start(
    config: TrainConfig, samples: list[Sample], *, cat_maps: dict
) -> dict[str, torch.Tensor] | None:
    """The weights a locator network (``config.locator``) starts from: the synthetic
    pretraining of :func:`locator_config`, as an image-only network (``None`` when the
    recipe has none). Cross-validation calls it once for all folds, so its locators
    start where a run's does."""
    cfg = locator_config(config)
    if cfg.pretrain_synthetic <= 0:
        return None
    seed_everything(cfg.seed)
    pretrained, _ = build_model(cfg, cat_maps=cat_maps, heads=run_heads(cfg, samples))
    return {k: v.detach().clone() for k, v in pretrained.state_dict().items()}


def fit_locator(
    config: TrainConfig,
    samples: list[Sample],
    *,
    cat_maps: dict,
    device: torch.device,
    outline_only: Sequence[Sample] = (),
    start: dict[str, torch.Tensor] | None = None,
) -> ThyroidNet | None:
    """The network that finds the nodule for the automatic box (``config.locator``).

    Trained on ``samples`` and ``outline_only`` (unlabelled outlined frames) with
    :func:`locator_config`; ``start``: its synthetic pretraining when already done (as
    cross-validation does once for all folds), else it is run here. ``None`` when the
    data has no outline to learn from.
    """
    cfg = locator_config(config)
    if "outline" not in run_heads(cfg, samples):
        log.warning("locator: no outlined frame to learn from, so the run has no locator")
        return None
    if start is None:
        start = locator_start(config, samples, cat_maps=cat_maps)
    seed_everything(cfg.seed)
    return fit_network(
        cfg,
        samples,
        cat_maps=cat_maps,
        device=device,
        start=start,
        desc="locator epoch",
        outline_only=outline_only,
    )


def _fit_on(
    model: ThyroidNet,
    samples: list[Sample],
    *,
    config: TrainConfig,
    cat_maps: dict,
    epochs: int,
    seed: int,
    desc: str,
    outline_only: Sequence[Sample] = (),
) -> None:
    """:func:`fit_epochs` on the augmented, preloaded training set of ``samples`` (and of
    ``outline_only`` when ``model`` has an outline head)."""
    ds = train_dataset(
        config,
        with_outline_only(samples, outline_only, heads=model.heads),
        cat_maps=cat_maps,
        heads=model.heads,
        seed=seed,
    )
    ds.preload()
    fit_epochs(model, ds, config=config, samples=samples, epochs=epochs, seed=seed, desc=desc)


def stack_both(
    image_model: ThyroidNet,
    samples: list[Sample],
    *,
    config: TrainConfig,
    cat_maps: dict,
    device: torch.device,
    start: dict[str, torch.Tensor] | None,
    epochs: int | None = None,
    outline_only: Sequence[Sample] = (),
) -> tuple[ThyroidNet, Stacking]:
    """The ``"both"`` model of ``fusion="stacked"`` (:mod:`thyrocam.train.stacking`).

    Args:
        image_model: the image-only network trained on ``samples`` from ``start``.
        config: its recipe; the two half networks are trained with it from ``start``
            for ``epochs`` epochs (default ``config.epochs``).
        outline_only: the unlabelled outlined frames the image network also trained
            on; each half network trains on them too (they hold no label to score).

    Returns:
        ``(fused model on device, Stacking)``.
    """
    half_config = replace(config, modalities="image")

    def fit_half(half: list[Sample], h: int) -> ThyroidNet:
        cfg = replace(half_config, seed=config.seed + 1 + h)
        seed_everything(cfg.seed)
        return fit_network(
            cfg,
            half,
            cat_maps=cat_maps,
            device=device,
            start=start,
            epochs=epochs,
            desc=f"stacking half {h + 1}/2 epoch",
            outline_only=outline_only,
        )

    def dataset(subset: list[Sample]) -> ThyroidDataset:
        return ThyroidDataset(subset, preprocessing=config.preprocessing(), cat_maps=cat_maps)

    fused, stacking = fit_stacking(
        image_model,
        samples,
        cat_maps=cat_maps,
        fit_half=fit_half,
        dataset=dataset,
        seed=config.seed,
    )
    return fused.to(device), stacking
