"""Training: plain functions that return metric dicts, and a run folder on disk.

- :mod:`~thyrocam.train.config`: :class:`TrainConfig` and the presets.
- :mod:`~thyrocam.train.fit`: the fit loop and the per-batch step losses.
- :mod:`~thyrocam.train.scoring`: the threshold on validation, the test split once.
- :mod:`~thyrocam.train.pipeline`: :func:`train`, data to run folder.
- :mod:`~thyrocam.train.distributed`: DDP under ``torchrun``.
"""

from thyrocam.data.samples import LABEL_CAVEAT, prepare_samples
from thyrocam.evaluate import predict_probs
from thyrocam.train.config import PRESETS, TrainConfig, seed_everything
from thyrocam.train.fit import (
    FitResult,
    MalignancyLoss,
    StepLoss,
    SumOfLosses,
    WarmupCosine,
    fit,
    train_one_epoch,
)
from thyrocam.train.pipeline import PreparedData, make_step_loss, prepare_data, train
from thyrocam.train.scoring import Scores, score_fitted

# The schedule's former private name, kept for code that imported it.
_WarmupCosine = WarmupCosine

__all__ = [
    "TrainConfig",
    "PRESETS",
    "LABEL_CAVEAT",
    "seed_everything",
    "train",
    "prepare_data",
    "PreparedData",
    "make_step_loss",
    "fit",
    "FitResult",
    "train_one_epoch",
    "StepLoss",
    "MalignancyLoss",
    "SumOfLosses",
    "WarmupCosine",
    "score_fitted",
    "Scores",
    "predict_probs",
    "prepare_samples",
]
