"""Case-level stratified K-fold cross-validation of the modalities and the descriptor-only line.

In each fold the same test cases score four models: ``both`` (image +
descriptors), ``image`` (image only), ``clinical`` (descriptors only, through
the network) and ``descriptor_lr`` (a logistic regression on the encoded
descriptors: the line any number on TI-RADS-derived labels must beat, since
the descriptors largely determine the grade), and ``outline_lr`` (a logistic
regression on plain statistics of the pixels inside the radiologist's outline:
what the image holds for a reader given a perfect outline, the line the image
networks must beat). Besides AUC, sensitivity and
specificity, the image models are scored on what the extra heads promise:
Dice of the predicted outline on whole frames (the input of the automatic
box), descriptor-head accuracy, and how much Grad-CAM energy falls inside the
radiologist's outline compared with the outline's share of the crop. An image
network with an outline head also feeds the fold's ``outline_lr`` the
statistics inside *its own* outline of each test frame (found from the whole
frame, as the page does): ``outline_lr_auto_auc``, and that regression's logit
added to the network's, ``image_plus_outline_lr_auc``.

Nothing is chosen on a test fold: each fold trains for the configured number of
epochs and scores the last epoch's weights at the threshold 0.5 (the loss is
class-weighted, so 0.5 is the balanced point).

With ``save_runs`` each fold's networks are also written as ordinary run folders
(``out/runs/fold<k>-<model>``, ``split.json`` naming the fold's training and test
cases): every held-out number can then be reproduced, or a change to inference
(the automatic box, say) measured, with ``thyrocam predict`` on the held-out
frames and no retraining.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from thyrocam.clinical import fit_cat_maps
from thyrocam.cv.lines import THRESHOLD, case_folds, descriptor_lr, fit_logistic, outline_lr
from thyrocam.cv.models import CV_MODELS
from thyrocam.cv.networks import fit_fold, pretrain_once, save_fold_run, score_network
from thyrocam.cv.report import CV_COLUMNS, write_cv_html
from thyrocam.data import Sample, outline_only_samples, prepare_samples
from thyrocam.errors import InputError
from thyrocam.model import ThyroidNet, resolve_device
from thyrocam.train.config import TrainConfig, seed_everything
from thyrocam.train.recipe import (
    fit_locator,
    fit_modalities,
    is_stacked,
    locator_start,
    stack_both,
)

__all__ = [
    "CV_COLUMNS",
    "CV_MODELS",
    "case_folds",
    "cross_validate",
    "fit_logistic",
    "write_cv_html",
]

log = logging.getLogger(__name__)


def cross_validate(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    folds: int = 5,
    config: TrainConfig | None = None,
    models: Sequence[str] = CV_MODELS,
    cam_cases: int = 40,
    save_runs: bool = False,
) -> dict:
    """K-fold CV by case; writes ``out/cv.json`` and ``out/cv.html`` and returns the dict.

    Args:
        data: a DDTI folder or CSV manifest (as ``train``).
        folds: K (stratified by label, all views of a case in one fold).
        config: the training recipe of the network models (epochs, size, heads, ...).
        models: which of :data:`CV_MODELS` to run.
        cam_cases: test images per fold on which Grad-CAM energy is measured.
        save_runs: also write each fold's networks as run folders under ``out/runs``.

    Returns:
        ``{"folds": K, "models": {name: {"auc": [...], "auc_mean", "auc_sd", ...}}, ...}``.
    """
    config = config or TrainConfig()
    _check_models(models)
    device = resolve_device(config.device)
    samples, problems, label_definition = prepare_samples(data, label_source=config.label_source)
    fold_idx = case_folds(samples, folds=folds, seed=config.seed)
    # Unlabelled cases are in no fold: their outlines join every fold's training set
    # (the image networks' when the recipe asks, the locator's always).
    images = any(m in ("both", "image") for m in models)
    unlabelled = []
    if config.unlabelled_outlines or (config.locator is not None and images):
        unlabelled = outline_only_samples(data, label_source=config.label_source)
    outline_only = unlabelled if config.unlabelled_outlines else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    start = time.perf_counter()
    pretrained = _pretrained(config, samples, models)
    locating = None
    if config.locator is not None and images:
        locating = _Locating.prepare(config, samples, unlabelled)
    per_fold: dict[str, list[dict]] = {m: [] for m in models}
    statistics_cache: dict[str, np.ndarray] = {}  # outline statistics by frame, for every fold
    for k, test_idx in enumerate(fold_idx):
        held = set(test_idx)
        rows = _run_fold(
            config,
            models,
            fold=k,
            train_s=[s for i, s in enumerate(samples) if i not in held],
            test_s=[samples[i] for i in test_idx],
            device=device,
            pretrained=pretrained,
            cam_cases=cam_cases,
            statistics_cache=statistics_cache,
            runs=out / "runs" if save_runs else None,
            outline_only=outline_only,
            locating=locating,
        )
        for name, res in rows.items():
            per_fold[name].append(res)
            log.info("fold %d/%d %s: %s", k + 1, folds, name, _brief(res))
    result = {
        "folds": folds,
        "data": str(Path(data).resolve()),
        "label_definition": label_definition,
        "n_images": len(samples),
        "n_cases": len({s.case_id for s in samples}),
        "n_outline_only_images": len(outline_only),
        "n_locator_outline_only_images": 0 if locating is None else len(locating.outline_only),
        "threshold": THRESHOLD,
        "config": asdict(replace(config, device=str(device))),
        "models": {name: _summarise(rows) for name, rows in per_fold.items()},
        "seconds": time.perf_counter() - start,
        "data_problems": len(problems),
    }
    _write_json(out / "cv.json", result)
    write_cv_html(result, out / "cv.html")
    return result


def _network_modalities(config: TrainConfig, name: str) -> str:
    """The modalities the network of CV model ``name`` is pretrained and fitted as: those
    of a run of that model (a stacked ``"both"`` is built on the image network)."""
    return fit_modalities(replace(config, modalities=name))


def _pretrained(
    config: TrainConfig, samples: list[Sample], models: Sequence[str]
) -> dict[str, dict[str, torch.Tensor]]:
    """The synthetic pretraining each network of ``models`` starts from, by its modalities,
    once for all folds: where a run of that model starts ({}: the recipe has none; a
    descriptors-only network is never pretrained, in a run or here)."""
    if config.pretrain_synthetic <= 0:
        return {}
    starts: dict[str, dict[str, torch.Tensor]] = {}
    for name in models:
        kind = _network_modalities(config, name) if name in ("both", "image") else None
        if kind is None or kind in starts:
            continue
        t0 = time.perf_counter()
        seed_everything(config.seed)
        starts[kind] = pretrain_once(replace(config, modalities=kind), samples)
        log.info(
            "synthetic pretraining of the %s networks (%d cases): %.0f s",
            kind,
            config.pretrain_synthetic,
            time.perf_counter() - t0,
        )
    return starts


def _check_models(models: Sequence[str]) -> None:
    if not models or any(m not in CV_MODELS for m in models):
        raise InputError(
            f"models: got {list(models)!r}; allowed: a non-empty subset of {', '.join(CV_MODELS)}",
            field="models",
            value=list(models),
            allowed=CV_MODELS,
        )


@dataclass
class _Locating:
    """What every fold's locator network (``config.locator``) starts from and adds."""

    outline_only: list[Sample]
    start: dict[str, torch.Tensor] | None = None

    @classmethod
    def prepare(
        cls, config: TrainConfig, samples: list[Sample], unlabelled: list[Sample]
    ) -> _Locating:
        """The locator's own synthetic pretraining, done once for all folds as the image
        network's is: image-only with its own decoder, where a run's locator starts."""
        cat_maps = fit_cat_maps([s.clinical for s in samples])  # as pretrain_once's
        return cls(outline_only=unlabelled, start=locator_start(config, samples, cat_maps=cat_maps))

    def fit(
        self, config: TrainConfig, train_s: list[Sample], *, cat_maps: dict, device: torch.device
    ) -> ThyroidNet | None:
        """One fold's locator, from the shared start."""
        t0 = time.perf_counter()
        locator = fit_locator(
            config,
            train_s,
            cat_maps=cat_maps,
            device=device,
            outline_only=self.outline_only,
            start=self.start,
        )
        log.info("locator: %.0f s", time.perf_counter() - t0)
        return locator


def _run_fold(
    config: TrainConfig,
    models: Sequence[str],
    *,
    fold: int,
    train_s: list[Sample],
    test_s: list[Sample],
    device: torch.device,
    pretrained: dict[str, dict[str, torch.Tensor]],
    cam_cases: int,
    statistics_cache: dict[str, np.ndarray],
    runs: Path | None = None,
    outline_only: Sequence[Sample] = (),
    locating: _Locating | None = None,
) -> dict[str, dict]:
    """Every model of one fold, scored on its test cases: ``{model: scores}`` (``outline_only``:
    unlabelled outlined frames the image networks train on; ``locating``: the locator's)."""
    cat_maps = fit_cat_maps([s.clinical for s in train_s])
    # What every network of the fold is fitted with (its stacking halves too); each
    # starts from the pretraining of its own modalities.
    fitting = dict(cat_maps=cat_maps, device=device, outline_only=outline_only)
    rows: dict[str, dict] = {}
    statistics_lr = image_model = locator = None
    if "outline_lr" in models:  # first: the image networks are also scored through it
        t0 = time.perf_counter()
        rows["outline_lr"], statistics_lr = outline_lr(train_s, test_s, statistics_cache)
        rows["outline_lr"]["seconds"] = time.perf_counter() - t0
    for name in models:
        t0 = time.perf_counter()
        if name == "outline_lr":
            continue
        if name == "descriptor_lr":
            res = descriptor_lr(train_s, test_s, cat_maps)
        else:
            cfg = replace(config, modalities=name, seed=config.seed + fold, pretrain_synthetic=0)
            stacked = is_stacked(cfg)
            start = pretrained.get(_network_modalities(config, name))  # where a run starts
            if name == "image" or stacked:
                # A stacked "both" is built on the fold's image-only network: one training
                # serves both rows (the image row then reports no seconds of its own).
                if image_model is None:
                    image_cfg = replace(cfg, modalities="image")
                    seed_everything(image_cfg.seed)
                    image_model = fit_fold(image_cfg, train_s, start=start, **fitting)
                model = image_model
            else:
                seed_everything(cfg.seed)
                model = fit_fold(cfg, train_s, start=start, **fitting)
            stacking = None
            if stacked:  # the half networks start where the image network starts
                model, stacking = stack_both(
                    image_model, train_s, config=cfg, start=start, **fitting
                )
            if locating is not None and locator is None and cfg.modalities != "clinical":
                locator = locating.fit(cfg, train_s, cat_maps=cat_maps, device=device)
            boxer = locator if cfg.modalities != "clinical" else None  # image models only
            res = score_network(
                model, cfg, test_s, cat_maps, device,
                cam_cases=cam_cases, train_s=train_s, outline_lr=statistics_lr, locator=boxer,
            )
            if stacking is not None:
                res.update({f"stacking_{k}": v for k, v in stacking.to_dict().items()})
            if runs is not None:
                save_fold_run(
                    runs / f"fold{fold}-{name}",
                    model=model,
                    config=cfg,
                    cat_maps=cat_maps,
                    split=(fold, train_s, test_s),
                    metrics=res,
                    stacking=stacking,
                    outline_only=outline_only,
                    locator=boxer,
                )
        res["seconds"] = time.perf_counter() - t0
        rows[name] = res
    return {name: rows[name] for name in models}  # in the order asked for


def _brief(res: dict) -> str:
    return ", ".join(
        f"{k} {v:.3f}" for k, v in res.items() if isinstance(v, float) and k != "seconds"
    )


def _summarise(rows: list[dict]) -> dict:
    """Per-fold lists plus ``<key>_mean`` / ``<key>_sd`` (population sd over folds)."""
    out: dict = {"per_fold": rows}
    keys = list(
        dict.fromkeys(
            k for r in rows for k, v in r.items() if v is None or isinstance(v, (int, float))
        )
    )
    for key in keys:
        values = [r.get(key) for r in rows]
        out[key] = values
        nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        out[f"{key}_mean"] = float(np.mean(nums)) if nums else None
        out[f"{key}_sd"] = float(np.std(nums)) if nums else None
    return out


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
