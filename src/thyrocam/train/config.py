"""What defines a training run: :class:`TrainConfig` and the named presets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from thyrocam.imaging import Preprocessing
from thyrocam.model import Arch, Decoder, Modalities, Pool

__all__ = ["TrainConfig", "PRESETS", "seed_everything"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved into ``meta.json``)."""

    epochs: int = 10  # passes over the training split; a preset fixes it so runs reproduce
    image_size: int = 224  # side of the network input
    batch_size: int = 32  # global batch (split across DDP ranks); fits 2 CPU cores and BatchNorm
    arch: Arch = "resnet18"
    lr: float = 2e-3  # peak of the warm-up + cosine schedule (AdamW)
    weight_decay: float = 1e-4
    seed: int = 0  # seeds split, init, augmentation and order
    device: str | None = None  # None: CUDA when present, else CPU
    preprocess: Literal["center_crop", "letterbox", "roi"] = "letterbox"
    roi_margin: float = 0.5  # context around the nodule box, as a fraction of its side
    # Smallest ROI crop side in frame pixels (0: none): keeps nodule size visible (a cue).
    roi_min_side: float = 0.0
    # Training jitter of the ROI crop (thyrocam.data.ThyroidDataset): the box's centre
    # moves up to roi_shift of its side each way and its side is scaled by 0.85-roi_zoom.
    roi_shift: float = 0.15
    roi_zoom: float = 1.25
    modalities: Modalities = "both"
    weights: str | None = "imagenet"  # used only if on disk; otherwise from scratch
    label_source: Literal["auto", "labels", "tirads"] = "auto"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train/val/test, by case
    # A safety cap, not the plan: when the elapsed epochs show the rest will not fit,
    # training stops early and metrics.json says so ("stopped_by_time_budget"). It caps
    # the run's main network (the one validated each epoch), not its synthetic
    # pretraining, a stacked fusion's half networks or the locator.
    max_minutes: float | None = None
    field_dropout: float = 0.15  # descriptors hidden at random while training
    progress: bool = True  # tqdm bars
    # Heads beyond malignancy (thyrocam.model.HEADS); None: every head the data supports
    # (an outline on some frame -> "outline", a recorded descriptor -> "descriptors").
    heads: tuple[str, ...] | None = None
    # "basic": flip + gain (the seed's); "ultrasound": affine/scale jitter, depth gain,
    # speckle, gamma (thyrocam.data.augment) - what a small real data set needs.
    augmentation: Literal["basic", "ultrasound"] = "basic"
    # Side of the whole-frame letterbox the outline head also learns (the automatic box's
    # input); None: image_size.
    outline_size: int | None = None
    outline_weight: float = 1.0  # weight of the outline loss (BCE + Dice)
    # weight of the box (projection) term added to the outline loss (train.losses)
    outline_box_weight: float = 0.0
    # the whole frames' share of the outline loss (the crops have the rest)
    outline_frame_share: float = 0.5
    # "outline": the image features are layer4 averaged with the model's own predicted
    # outline as weights (thyrocam.model.POOLS), not over the whole crop.
    pool: Pool = "mean"
    # The outline head's decoder (thyrocam.model.DECODERS): "fpn" or "unet".
    decoder: Decoder = "fpn"
    descriptor_weight: float = 1.0  # weight of the descriptor cross-entropy
    # Also train the outline (and descriptor) heads on the outlined frames of cases the
    # data gives no label (thyrocam.data.outline_only_samples): never scored or split.
    # On DDTI (82 such frames) the automatic box hit more often on two sets of folds
    # (+0.025, +0.045), but the stacked fusion then admitted the image on a fold where it
    # hurt, so the ddti presets leave it off for the classifier; their locator (below)
    # always learns them (docs/ddti.md).
    unlabelled_outlines: bool = False
    pretrain_synthetic: int = 0  # >0: first fit on this many synthetic cases (true descriptors)
    pretrain_epochs: int = 8  # epochs of that synthetic pretraining
    init_from: str | None = None  # a run folder whose weights start this run (same arch)
    # How a "both" model joins image and descriptors: "joint" trains one network end to
    # end; "stacked" trains the image-only network, then fits the descriptor regression
    # plus a weight on the image logit on cross-fitted logits (thyrocam.train.stacking).
    fusion: Literal["joint", "stacked"] = "joint"
    # A second, image-only network that only finds the nodule for the automatic box
    # (thyrocam.train.recipe.locator_config): the recipe with this outline decoder, also
    # trained on the outlines of unlabelled cases; saved in the run's locator/ folder.
    # None: the model's own outline head finds the nodule. On DDTI the outline that boxes
    # best (the "unet" decoder) is not the network whose Grad-CAM lies on the nodule
    # (the "fpn" one), so the ddti presets train one of each (docs/ddti.md).
    locator: Decoder | None = None

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            mode=self.preprocess,
            size=self.image_size,
            margin=self.roi_margin,
            min_side=self.roi_min_side,
        )


# Real data (DDTI-sized: a few hundred frames). Measured by 5-fold CV by case on
# ../shared/ddti (benchmarks/ddti_cv.py; the table in the README): a narrow
# ResNet-10 overfits less than resnet18 from scratch; crops at least 220 frame
# pixels wide keep nodule size (a cue that margin-scaled crops normalise away);
# the outline head also learns whole frames at 128 px (the automatic box's input).
# Image-only CV on the same folds (README): 40 epochs after pretraining on 1,500
# synthetic cases (true descriptors, outlines) gave the best outline (Dice 0.63 vs 0.48
# for 15 epochs from scratch) and Grad-CAM energy inside the outline (1.3x its area vs
# 0.8x); no variant moved the image-only AUC beyond its fold-to-fold spread (~0.6).
# Ultrasound augmentation and longer training without pretraining did not help.
# Averaging layer4 inside the model's own outline (pool="outline"), same folds: image
# AUC 0.646 vs 0.581, Grad-CAM empty on 23 % of test crops vs 79 %, energy inside the
# outline 1.59x its area vs 1.32x, Dice and automatic box unchanged (README).
# The combined model: trained jointly it scored under a logistic regression on the
# descriptors alone (0.921 vs 0.936), so "both" is the stacked fusion (thyrocam.train.
# stacking): that regression plus the image network's logit where, on cross-fitted
# logits, the image adds to the descriptors beyond chance.
# The outline's box term (outline_box_weight=1: Dice of the mask's row and column
# maxima, the box's extent), two sets of folds on one machine: automatic box hit 0.54 ->
# 0.61 and 0.53 -> 0.56, Grad-CAM energy inside the outline above the centred prior on
# both (0.51 vs 0.44, 0.50 vs 0.39); image AUC -0.04 on one set, +0.06 on the other.
_DDTI_RECIPE: dict[str, Any] = dict(
    epochs=40,
    arch="resnet10n",
    image_size=96,
    batch_size=32,
    lr=2e-3,
    preprocess="roi",
    roi_margin=0.075,
    roi_min_side=220.0,
    outline_size=128,
    outline_box_weight=1.0,
    augmentation="basic",
    pool="outline",
    fusion="stacked",
    pretrain_synthetic=1500,  # ~2.5 min once on 2 cores; no DDTI label is seen
    # The automatic box from a U-Net-decoder network trained on the unlabelled cases'
    # outlines too (image-only CV, the table's folds: box hit 0.713 vs 0.623, outline
    # Dice 0.692 vs 0.635); the classifier and its Grad-CAM stay the fpn network's.
    locator="unet",
)


# Presets fix the number of epochs, so the same command gives the same model on any
# machine; max_minutes only caps a pathologically slow machine.
PRESETS: dict[str, dict[str, Any]] = {
    # What `make demo` trains: crops around the nodule at 96 px keep the nodule and its
    # surroundings. With every head (the outline head also learns whole frames) 10 epochs
    # of the 400 synthetic cases took 104 s on an idle 2-core machine (test AUC 0.982), and
    # a fresh clone reached the model in 210 s (environment and data included); the
    # 4.5-minute cap only cuts training on a much slower or busier machine.
    "demo": dict(
        epochs=10,
        image_size=96,
        batch_size=16,  # more optimizer steps per epoch: the net starts from scratch
        preprocess="roi",
        roi_margin=0.5,
        lr=1.5e-3,
        max_minutes=4.5,
    ),
    "tiny": dict(epochs=1, image_size=64, batch_size=8, preprocess="letterbox"),
    # One real-data recipe (_DDTI_RECIPE above): --preset ddti for one run (9.6 min on an
    # idle 2-core machine with the locator; the image network's own 40 epochs, all that
    # max_minutes caps, under a minute of it); ddti-cv the same recipe for `thyrocam cv`
    # (the synthetic pretraining is done once for all folds).
    "ddti": dict(_DDTI_RECIPE, max_minutes=14.0),
    "ddti-cv": dict(_DDTI_RECIPE),
}


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
