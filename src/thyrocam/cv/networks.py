"""One fold's network: trained from the shared start, scored on its test cases."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from thyrocam.checkpoint import SPLIT, save_run
from thyrocam.clinical import fit_cat_maps
from thyrocam.cv.lines import THRESHOLD, OutlineLR, outline_features, score, sigmoid
from thyrocam.data import Sample, ThyroidDataset
from thyrocam.explain import get_method
from thyrocam.explain.measures import centre_map
from thyrocam.imaging import load_frame, to_tensor
from thyrocam.model import ThyroidNet
from thyrocam.predictor.autobox import (
    MASK_THRESHOLD,
    REFINE_THRESHOLD,
    autobox_ious,
    find_nodule,
    frame_outline,
    sample_outline_boxes,
)
from thyrocam.train.config import TrainConfig
from thyrocam.train.recipe import (
    build_model,
    fit_network,
    fitted_meta,
    locator_meta,
    outline_input,
    run_heads,
    with_outline_only,
)
from thyrocam.train.scoring import descriptor_quality
from thyrocam.train.stacking import Stacking


def pretrain_once(config: TrainConfig, samples: list[Sample]) -> dict[str, torch.Tensor]:
    """The synthetic pretraining every fold's network of ``config.modalities`` starts
    from (no DDTI label is seen), as a run of that network pretrains.

    Done once rather than per fold and network: it depends on no fold. The
    descriptor vocabulary is read from all cases (values, never labels).
    """
    cat_maps = fit_cat_maps([s.clinical for s in samples])
    model, _ = build_model(config, cat_maps=cat_maps, heads=run_heads(config, samples))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit_fold(
    config: TrainConfig,
    train_s: list[Sample],
    cat_maps: dict,
    device: torch.device,
    *,
    start: dict[str, torch.Tensor] | None = None,
    outline_only: Sequence[Sample] = (),
) -> ThyroidNet:
    """Train one fold's network for ``config.epochs`` epochs; the last weights are kept.

    ``start``: weights to begin from (those whose name and shape fit this network);
    ``outline_only``: unlabelled outlined frames its outline head also learns from.
    """
    return fit_network(
        config, train_s, cat_maps=cat_maps, device=device, start=start, outline_only=outline_only
    )


def save_fold_run(
    out: Path,
    *,
    model: ThyroidNet,
    config: TrainConfig,
    cat_maps: dict,
    split: tuple[int, Sequence[Sample], Sequence[Sample]],
    metrics: dict,
    stacking: Stacking | None = None,
    outline_only: Sequence[Sample] = (),
    locator: ThyroidNet | None = None,
) -> Path:
    """Write one fold's network as a run folder (loadable by ``Predictor``, ``thyrocam
    predict``), with the fold's cases in ``split.json`` and its scores in ``metrics.json``.

    ``split``: ``(fold, training samples, test samples)``; ``outline_only``: the
    unlabelled outlined frames the fold's networks trained on (listed as
    ``train_outline_only`` when this network has an outline head, as ``train`` does);
    ``locator``: the fold's locator network (``config.locator``), written in ``locator/``.

    The threshold is cross-validation's (:data:`~thyrocam.cv.lines.THRESHOLD`): no
    validation split chose another.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_run(
        out,
        model=copy.deepcopy(model).cpu(),  # the fold's scoring may still use it on its device
        cat_maps=cat_maps,
        preprocessing=config.preprocessing(),
        threshold=THRESHOLD,
        extra_meta=fitted_meta(config, device="cpu", heads=model.heads, stacking=stacking),
        metrics={k: v for k, v in metrics.items() if not isinstance(v, dict)},
        split={
            "fold": split[0],
            "train": sorted({s.case_id for s in split[1]}),
            "test": sorted({s.case_id for s in split[2]}),
            **(
                {"train_outline_only": sorted({s.case_id for s in learnt})}
                if (learnt := with_outline_only((), outline_only, heads=model.heads))
                else {}
            ),
        },
        locator=None if locator is None else copy.deepcopy(locator).cpu(),
        locator_meta=None if locator is None else locator_meta(config, locator, device="cpu"),
    )


def fold_test_samples(run: Path, samples: Sequence[Sample]) -> list[Sample]:
    """The samples of a :func:`save_fold_run` folder's test cases, in ``split.json``'s
    case order (each case's samples in the order of ``samples``)."""
    test = json.loads((run / SPLIT).read_text(encoding="utf-8"))["test"]
    by_case: dict[str, list[Sample]] = {}
    for s in samples:
        by_case.setdefault(s.case_id, []).append(s)
    return [sample for case in test for sample in by_case.get(case, [])]


@torch.no_grad()
def score_network(
    model: ThyroidNet,
    config: TrainConfig,
    test_s: list[Sample],
    cat_maps: dict,
    device: torch.device,
    *,
    cam_cases: int,
    train_s: list[Sample],
    outline_lr: OutlineLR | None = None,
    locator: ThyroidNet | None = None,
) -> dict:
    """AUC/sensitivity/specificity, and for image models Dice, descriptor accuracy, CAM;
    with ``outline_lr`` and an outline head, that regression on the network's own outline.

    ``locator``: the fold's locator network (``config.locator``): the whole-frame outline
    (Dice) and the automatic box are then its, as the predictor's are."""
    finder = locator if locator is not None else model
    ds = ThyroidDataset(
        test_s,
        preprocessing=config.preprocessing(),
        cat_maps=cat_maps,
        targets=True,
        outline_input=outline_input(config) if "outline" in finder.heads else None,
    )
    probs, labels, dices = [], [], []
    for batch in DataLoader(ds, batch_size=config.batch_size, shuffle=False):
        out = model.forward_heads(batch["image"].to(device), batch["clinical"].to(device))
        probs.append(torch.sigmoid(out["malignancy"][:, 0]).cpu().numpy())
        labels.append(batch["label"].numpy())
        if "outline" in finder.heads:
            # The outline the product shows and boxes from (mirror-averaged); a locator
            # reads the same whole-frame letterbox (locator_config keeps outline_size).
            pred = frame_outline(finder, batch["frame"].to(device)).cpu() > MASK_THRESHOLD
            truth = batch["frame_mask"] > 0.5
            dices += _dice(pred, truth, batch["has_mask"])
    res = score(np.concatenate(probs), np.concatenate(labels))
    if dices:
        res["dice"] = float(np.mean(dices))
        res.update(_autobox_scores(finder, config, test_s))
    if outline_lr is not None and "outline" in model.heads:
        own = np.stack(
            [own_outline_statistics(model, config, s, locator=locator) for s in test_s]
        )
        stats_logit = outline_lr.logits(own)
        p = np.clip(np.concatenate(probs), 1e-6, 1 - 1e-6)
        both = np.log(p / (1 - p)) + stats_logit
        y = np.concatenate(labels)
        res["outline_lr_auto_auc"] = score(sigmoid(stats_logit), y)["auc"]
        res["image_plus_outline_lr_auc"] = score(sigmoid(both), y)["auc"]
    # The same measure training records for the page (meta.json "descriptor_quality").
    quality = descriptor_quality(
        model,
        train=train_s,
        test=test_s,
        preprocessing=config.preprocessing(),
        cat_maps=cat_maps,
        device=device,
        batch_size=config.batch_size,
    )
    if quality is not None:
        per_field = {
            f: q["accuracy"] for f, q in quality["fields"].items() if q["accuracy"] is not None
        }
        res["descriptor_accuracy"] = float(np.mean(list(per_field.values()))) if per_field else None
        res["descriptor_accuracy_by_field"] = per_field
    if config.modalities != "clinical" and cam_cases > 0:
        res.update(cam_energy(model, ds, device, cam_cases=cam_cases))
    return res


def _dice(pred: torch.Tensor, truth: torch.Tensor, has: torch.Tensor) -> list[float]:
    inter = (pred & truth).flatten(1).sum(1).float()
    total = (pred.flatten(1).sum(1) + truth.flatten(1).sum(1)).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return dice[has > 0].tolist()


def _autobox_scores(model: ThyroidNet, config: TrainConfig, test_s: Sequence[Sample]) -> dict:
    """The automatic box as the predictor makes it, on each whole test frame with an outline."""
    best, largest = [], []
    search, crop = outline_input(config), config.preprocessing()
    for s in test_s:
        outlines = sample_outline_boxes(s)
        if not outlines:
            continue
        frame = load_frame(s.image_path)
        box, _ = find_nodule(
            model, frame.image, clin=None, search=search, crop=crop, region=frame.region
        )
        iou_best, iou_largest = autobox_ious(box, outlines)
        best.append(iou_best)
        largest.append(iou_largest)
    if not best:
        return {}
    return {
        "autobox_iou": float(np.mean(best)),
        "autobox_hit_rate": float(np.mean(np.asarray(best) >= 0.5)),
        "autobox_hit_rate_largest": float(np.mean(np.asarray(largest) >= 0.5)),
    }


def cam_energy(
    model: ThyroidNet,
    ds: ThyroidDataset,
    device: torch.device,
    *,
    cam_cases: int,
    method: str = "gradcam",
) -> dict:
    """Mean share of the malignant logit's CAM energy inside the outline, the outline's mean
    area share, and the share a centred Gaussian (the report's centre-bias baseline) puts
    inside, over the maps with positive evidence; and the share of outlined crops whose map
    has none (all zero), which the energy shares cannot count. ``method``: a name from
    :data:`thyrocam.explain.METHODS` (``cv.json`` reports Grad-CAM's)."""
    m = get_method(method)
    inside, share, prior, empty = [], [], [], 0
    with torch.enable_grad(), m.cam_class(model, m.layers(model)) as engine:
        for i in range(min(cam_cases, len(ds))):
            item = ds[i]
            mask = item["mask"][0].numpy() > 0.5
            if float(item["has_mask"]) == 0 or not mask.any():
                continue  # no outline in this crop: nothing to measure, no map needed
            cam, _ = engine(
                item["image"][None].to(device), clinical=item["clinical"][None].to(device)
            )
            if not cam.sum() > 0:
                empty += 1
                continue
            centre = centre_map(mask.shape)
            inside.append(float(cam[mask].sum() / cam.sum()))
            share.append(float(mask.mean()))
            prior.append(float(centre[mask].sum() / centre.sum()))
    if not inside:
        return {"cam_empty_share": 1.0} if empty else {}
    e, a = float(np.mean(inside)), float(np.mean(share))
    return {
        "cam_empty_share": empty / (empty + len(inside)),
        "cam_energy_inside": e,
        "outline_area_share": a,
        "cam_ratio": e / a if a else None,
        "centre_prior_inside": float(np.mean(prior)),
    }


@torch.no_grad()
def own_outline_statistics(
    model: ThyroidNet, config: TrainConfig, sample: Sample, *, locator: ThyroidNet | None = None
) -> np.ndarray:
    """The statistics inside the network's own outline of a whole frame, found as the
    page finds it: the automatic box (``locator``'s when given), then the network's
    close-up mask (probability >= REFINE_THRESHOLD) inside that box, in frame pixels.
    NaN when nothing is found."""
    frame = load_frame(sample.image_path)
    search, crop = outline_input(config), config.preprocessing()
    box, prob = find_nodule(
        locator if locator is not None else model,
        frame.image,
        clin=None,
        search=search,
        crop=crop,
        region=frame.region,
    )
    if box is None:
        return outline_features(np.zeros((1, 1), np.float32), None)
    threshold = MASK_THRESHOLD
    if crop.mode == "roi":  # the close-up pass, as the box's refinement uses it
        device = next(model.parameters()).device
        close, mapping = crop.apply(frame.image, roi=box, region=frame.region)
        logits = model.forward_heads(to_tensor(close)[None].to(device))["outline"]
        prob = mapping.cam_to_frame(torch.sigmoid(logits[0, 0]).float().cpu().numpy())
        threshold = REFINE_THRESHOLD
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside_box = np.zeros(prob.shape, dtype=bool)
    inside_box[y0:y1, x0:x1] = True
    mask = (prob >= threshold) & inside_box
    return outline_features(np.asarray(frame.image.convert("L"), np.float32) / 255.0, mask)
