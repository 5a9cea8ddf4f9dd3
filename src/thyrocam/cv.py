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
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from thyrocam.clinical import encode_clinical_with_mask, fit_cat_maps
from thyrocam.data import Sample, ThyroidDataset, prepare_samples
from thyrocam.errors import DataError, InputError
from thyrocam.explain import GradCAM
from thyrocam.explain.measures import centre_map
from thyrocam.imaging import (
    OUTLINE_STATISTICS,
    Box,
    load_frame,
    outline_boxes,
    outline_statistics,
    outlines_by_area,
    polygons_to_mask,
    to_tensor,
)
from thyrocam.metrics import binary_metrics
from thyrocam.model import ThyroidNet, default_target_layer, resolve_device
from thyrocam.predictor.autobox import (
    MASK_THRESHOLD,
    REFINE_THRESHOLD,
    autobox_ious,
    find_nodule,
    largest_component,
)
from thyrocam.train.config import TrainConfig, seed_everything
from thyrocam.train.recipe import (
    build_model,
    fit_epochs,
    load_matching,
    outline_input,
    run_heads,
    train_dataset,
)
from thyrocam.train.scoring import descriptor_quality

__all__ = [
    "CV_COLUMNS",
    "CV_MODELS",
    "case_folds",
    "cross_validate",
    "fit_logistic",
    "write_cv_html",
]

log = logging.getLogger(__name__)

CV_MODELS = ("both", "image", "clinical", "descriptor_lr", "outline_lr")
#: L2 penalty of the outline-statistics regression (scikit-learn's C = 1/3 on
#: standardised statistics; 8 statistics, ~185 training frames).
OUTLINE_LR_L2 = 3.0
THRESHOLD = 0.5


def case_folds(samples: Sequence[Sample], *, folds: int, seed: int = 0) -> list[list[int]]:
    """Stratified folds of sample indices; all views of a case fall in one fold.

    Cases are shuffled per class with ``seed`` and dealt round-robin, so each fold
    gets about the same number of benign and malignant cases.

    Raises:
        DataError: fewer than ``folds`` cases of a class, or ``folds < 2``.
    """
    labels: dict[str, int] = {}
    for s in samples:
        labels.setdefault(s.case_id, s.label)
    counts = [sum(1 for v in labels.values() if v == c) for c in (0, 1)]
    if folds < 2 or min(counts) < folds:
        raise DataError(
            f"folds: got {folds} with {counts[0]} benign and {counts[1]} malignant cases; "
            "allowed: 2 <= folds <= the cases of the smaller class",
            field="folds",
            value=folds,
            allowed=f"2..{min(counts)}",
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for cls in (0, 1):
        cases = sorted(c for c, v in labels.items() if v == cls)
        rng.shuffle(cases)
        for j, case in enumerate(cases):
            fold_of[case] = j % folds
    return [[i for i, s in enumerate(samples) if fold_of[s.case_id] == f] for f in range(folds)]


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 200
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (LBFGS in torch), classes weighted to balance.

    Args:
        x: ``(N, D)`` features; y: ``(N,)`` 0/1 labels.
        l2: penalty on the weights (not the bias), as in scikit-learn's ``1/C``.

    Returns:
        ``(w (D,), b)``; ``P(y=1) = sigmoid(x @ w + b)``.
    """
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    n_pos = float(yt.sum())
    n_neg = float(len(yt) - n_pos)
    sample_w = torch.where(yt > 0, len(yt) / (2 * max(n_pos, 1.0)), len(yt) / (2 * max(n_neg, 1.0)))
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xt @ w + b
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, yt, weight=sample_w, reduction="sum"
        )
        loss = nll + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def _score(probs: np.ndarray, labels: np.ndarray) -> dict:
    m = binary_metrics(probs, labels, threshold=THRESHOLD)
    return {k: m[k] for k in ("auc", "sensitivity", "specificity")}


def _descriptor_lr(train_s: list[Sample], test_s: list[Sample], cat_maps: dict) -> dict:
    def enc(samples: list[Sample]) -> np.ndarray:
        return np.stack([encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in samples])

    w, b = fit_logistic(enc(train_s), np.array([s.label for s in train_s], dtype=np.float64))
    logits = enc(test_s) @ w + b
    return _score(1.0 / (1.0 + np.exp(-logits)), np.array([s.label for s in test_s]))


def _gray(path: str | os.PathLike) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _outline_mask(sample: Sample, size: tuple[int, int]) -> np.ndarray | None:
    """The radiologist's (largest) outline of a frame, filled, ``(H, W)`` bool."""
    outlines = outlines_by_area(sample.polygons)
    if outlines:
        mask = polygons_to_mask(outlines[:1], size=size)
    elif sample.mask_path is not None:
        mask = np.asarray(Image.open(sample.mask_path).convert("L")) > 127
    else:
        return None
    return mask if mask.any() else None


def _statistics(gray: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``(len(OUTLINE_STATISTICS),)``; NaN without a usable outline."""
    if mask is None or not mask.any():
        return np.full(len(OUTLINE_STATISTICS), np.nan)
    return np.array(list(outline_statistics(gray=gray, mask=mask).values()))


class _OutlineLR:
    """Logistic regression on the outline statistics of one fold's training frames.

    Frames without an outline (no statistics) get the bias alone.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        ok = ~np.isnan(x).any(axis=1)
        self.mean = x[ok].mean(axis=0)
        self.sd = x[ok].std(axis=0) + 1e-6
        self.w, self.b = fit_logistic((x[ok] - self.mean) / self.sd, y[ok], l2=OUTLINE_LR_L2)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((x - self.mean) / self.sd, nan=0.0)
        return np.where(np.isnan(x).any(axis=1), self.b, z @ self.w + self.b)


def _truth_statistics(samples: Sequence[Sample], cache: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, len(OUTLINE_STATISTICS))`` inside the radiologist's outlines (cached by path)."""
    rows = []
    for s in samples:
        key = str(s.image_path)
        if key not in cache:
            gray = _gray(s.image_path)
            cache[key] = _statistics(gray, _outline_mask(s, (gray.shape[1], gray.shape[0])))
        rows.append(cache[key])
    return np.stack(rows)


def _outline_lr(
    train_s: list[Sample], test_s: list[Sample], cache: dict[str, np.ndarray]
) -> tuple[dict, _OutlineLR]:
    labels = np.array([s.label for s in train_s], dtype=np.float64)
    lr = _OutlineLR(_truth_statistics(train_s, cache), labels)
    logits = lr.logits(_truth_statistics(test_s, cache))
    res = _score(_sigmoid(logits), np.array([s.label for s in test_s]))
    return res, lr


@torch.no_grad()
def _own_outline_statistics(model: ThyroidNet, config: TrainConfig, sample: Sample) -> np.ndarray:
    """The statistics inside the network's own outline of a whole frame, found as the
    page finds it: the automatic box, then the close-up pass's mask (probability >=
    REFINE_THRESHOLD) inside that box, in frame pixels. NaN when nothing is found."""
    frame = load_frame(sample.image_path)
    search, crop = outline_input(config), config.preprocessing()
    box, prob = find_nodule(
        model, frame.image, clin=None, search=search, crop=crop, region=frame.region
    )
    if box is None:
        return _statistics(np.zeros((1, 1), np.float32), None)
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
    return _statistics(np.asarray(frame.image.convert("L"), np.float32) / 255.0, mask)


def _pretrain_once(config: TrainConfig, samples: list[Sample]) -> dict[str, torch.Tensor]:
    """The synthetic pretraining every fold starts from (no DDTI label is seen).

    Done once rather than per fold and network: it depends on no fold. The
    descriptor vocabulary is read from all cases (values, never labels).
    """
    cat_maps = fit_cat_maps([s.clinical for s in samples])
    cfg = replace(config, modalities="both")
    model, _ = build_model(cfg, cat_maps=cat_maps, heads=run_heads(cfg, samples))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fit_fold(
    config: TrainConfig,
    train_s: list[Sample],
    cat_maps: dict,
    device: torch.device,
    *,
    start: dict[str, torch.Tensor] | None = None,
) -> ThyroidNet:
    """Train one fold's network for ``config.epochs`` epochs; the last weights are kept.

    ``start``: weights to begin from (those whose name and shape fit this network).
    """
    heads = run_heads(config, train_s) if config.modalities != "clinical" else ("malignancy",)
    model, _ = build_model(config, cat_maps=cat_maps, heads=heads)
    if start is not None and config.modalities != "clinical":
        load_matching(model, start)
    model.to(device)
    ds = train_dataset(config, train_s, cat_maps=cat_maps, heads=heads, seed=config.seed)
    ds.preload()
    fit_epochs(
        model,
        ds,
        config=config,
        samples=train_s,
        epochs=config.epochs,
        seed=config.seed,
        desc=f"{config.modalities} epoch",
    )
    return model.eval()


@torch.no_grad()
def _score_network(
    model: ThyroidNet,
    config: TrainConfig,
    test_s: list[Sample],
    cat_maps: dict,
    device: torch.device,
    *,
    cam_cases: int,
    train_s: list[Sample],
    outline_lr: _OutlineLR | None = None,
) -> dict:
    """AUC/sensitivity/specificity, and for image models Dice, descriptor accuracy, CAM;
    with ``outline_lr`` and an outline head, that regression on the network's own outline."""
    ds = ThyroidDataset(
        test_s,
        preprocessing=config.preprocessing(),
        cat_maps=cat_maps,
        targets=True,
        outline_input=outline_input(config) if "outline" in model.heads else None,
    )
    probs, labels, dices = [], [], []
    for batch in DataLoader(ds, batch_size=config.batch_size, shuffle=False):
        out = model.forward_heads(batch["image"].to(device), batch["clinical"].to(device))
        probs.append(torch.sigmoid(out["malignancy"][:, 0]).cpu().numpy())
        labels.append(batch["label"].numpy())
        if "outline" in model.heads:
            logits = model.forward_heads(batch["frame"].to(device))["outline"].cpu()
            pred, truth = torch.sigmoid(logits) > MASK_THRESHOLD, batch["frame_mask"] > 0.5
            dices += _dice(pred, truth, batch["has_mask"])
    res = _score(np.concatenate(probs), np.concatenate(labels))
    if dices:
        res["dice"] = float(np.mean(dices))
        res.update(_autobox_scores(model, config, test_s))
    if outline_lr is not None and "outline" in model.heads:
        own = np.stack([_own_outline_statistics(model, config, s) for s in test_s])
        stats_logit = outline_lr.logits(own)
        p = np.clip(np.concatenate(probs), 1e-6, 1 - 1e-6)
        both = np.log(p / (1 - p)) + stats_logit
        y = np.concatenate(labels)
        res["outline_lr_auto_auc"] = _score(_sigmoid(stats_logit), y)["auc"]
        res["image_plus_outline_lr_auc"] = _score(_sigmoid(both), y)["auc"]
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
        res.update(_cam_energy(model, ds, device, cam_cases=cam_cases))
    return res


def _dice(pred: torch.Tensor, truth: torch.Tensor, has: torch.Tensor) -> list[float]:
    inter = (pred & truth).flatten(1).sum(1).float()
    total = (pred.flatten(1).sum(1) + truth.flatten(1).sum(1)).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return dice[has > 0].tolist()


def _outline_boxes(sample: Sample) -> list[Box]:
    """The box of each outline of a frame (frame pixels), the largest outline first
    (the one training crops use); a manifest's mask file gives its largest component."""
    boxes = outline_boxes(sample.polygons)
    if not boxes and sample.mask_path is not None:
        found = largest_component(np.asarray(Image.open(sample.mask_path).convert("L")) > 127)
        boxes = [tuple(float(v) for v in found[1])] if found else []  # type: ignore[misc]
    return boxes


def _autobox_scores(model: ThyroidNet, config: TrainConfig, test_s: Sequence[Sample]) -> dict:
    """The automatic box as the predictor makes it, on each whole test frame with an outline."""
    best, largest = [], []
    search, crop = outline_input(config), config.preprocessing()
    for s in test_s:
        outlines = _outline_boxes(s)
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


def _cam_energy(
    model: ThyroidNet, ds: ThyroidDataset, device: torch.device, *, cam_cases: int
) -> dict:
    """Mean share of Grad-CAM energy inside the outline, the outline's mean area share, and
    the share a centred Gaussian (the report's centre-bias baseline) puts inside."""
    inside, share, prior = [], [], []
    with torch.enable_grad(), GradCAM(model, default_target_layer(model)) as engine:
        for i in range(min(cam_cases, len(ds))):
            item = ds[i]
            if float(item["has_mask"]) == 0:
                continue
            cam, _ = engine(
                item["image"][None].to(device), clinical=item["clinical"][None].to(device)
            )
            mask = item["mask"][0].numpy() > 0.5
            if cam.sum() > 0 and mask.any():
                centre = centre_map(mask.shape)
                inside.append(float(cam[mask].sum() / cam.sum()))
                share.append(float(mask.mean()))
                prior.append(float(centre[mask].sum() / centre.sum()))
    if not inside:
        return {}
    e, a = float(np.mean(inside)), float(np.mean(share))
    return {
        "cam_energy_inside": e,
        "outline_area_share": a,
        "cam_ratio": e / a if a else None,
        "centre_prior_inside": float(np.mean(prior)),
    }


def cross_validate(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    folds: int = 5,
    config: TrainConfig | None = None,
    models: Sequence[str] = CV_MODELS,
    cam_cases: int = 40,
) -> dict:
    """K-fold CV by case; writes ``out/cv.json`` and ``out/cv.html`` and returns the dict.

    Args:
        data: a DDTI folder or CSV manifest (as ``train``).
        folds: K (stratified by label, all views of a case in one fold).
        config: the training recipe of the network models (epochs, size, heads, ...).
        models: which of :data:`CV_MODELS` to run.
        cam_cases: test images per fold on which Grad-CAM energy is measured.

    Returns:
        ``{"folds": K, "models": {name: {"auc": [...], "auc_mean", "auc_sd", ...}}, ...}``.
    """
    config = config or TrainConfig()
    bad = [m for m in models if m not in CV_MODELS]
    if bad or not models:
        raise InputError(
            f"models: got {list(models)!r}; allowed: a non-empty subset of {', '.join(CV_MODELS)}",
            field="models",
            value=list(models),
            allowed=CV_MODELS,
        )
    device = resolve_device(config.device)
    samples, problems, label_definition = prepare_samples(data, label_source=config.label_source)
    fold_idx = case_folds(samples, folds=folds, seed=config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    start = time.perf_counter()
    pretrained = None
    if config.pretrain_synthetic > 0 and any(m in ("both", "image") for m in models):
        seed_everything(config.seed)
        pretrained = _pretrain_once(config, samples)
        log.info(
            "synthetic pretraining (%d cases): %.0f s",
            config.pretrain_synthetic,
            time.perf_counter() - start,
        )
    per_fold: dict[str, list[dict]] = {m: [] for m in models}
    statistics_cache: dict[str, np.ndarray] = {}  # outline statistics by frame, for every fold
    for k, test_idx in enumerate(fold_idx):
        test_s = [samples[i] for i in test_idx]
        held = set(test_idx)
        train_s = [s for i, s in enumerate(samples) if i not in held]
        cat_maps = fit_cat_maps([s.clinical for s in train_s])
        outline_lr = None
        if "outline_lr" in models:
            t0 = time.perf_counter()
            outline_res, outline_lr = _outline_lr(train_s, test_s, statistics_cache)
            outline_res["seconds"] = time.perf_counter() - t0
        for name in models:
            t0 = time.perf_counter()
            if name == "descriptor_lr":
                res = _descriptor_lr(train_s, test_s, cat_maps)
            elif name == "outline_lr":
                res = outline_res
            else:
                cfg = replace(config, modalities=name, seed=config.seed + k, pretrain_synthetic=0)
                seed_everything(cfg.seed)
                model = _fit_fold(cfg, train_s, cat_maps, device, start=pretrained)
                res = _score_network(
                    model,
                    cfg,
                    test_s,
                    cat_maps,
                    device,
                    cam_cases=cam_cases,
                    train_s=train_s,
                    outline_lr=outline_lr,
                )
            res["seconds"] = time.perf_counter() - t0
            per_fold[name].append(res)
            log.info("fold %d/%d %s: %s", k + 1, folds, name, _brief(res))
    result = {
        "folds": folds,
        "data": str(Path(data).resolve()),
        "label_definition": label_definition,
        "n_images": len(samples),
        "n_cases": len({s.case_id for s in samples}),
        "threshold": THRESHOLD,
        "config": asdict(replace(config, device=str(device))),
        "models": {name: _summarise(rows) for name, rows in per_fold.items()},
        "seconds": time.perf_counter() - start,
        "data_problems": len(problems),
    }
    _write_json(out / "cv.json", result)
    write_cv_html(result, out / "cv.html")
    return result


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


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thyrocam cross-validation</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:64rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;
text-align:right}th:first-child,td:first-child{text-align:left}caption{text-align:left;
font-weight:600}.note{color:#555;font-size:.9rem}
</style></head><body>
<h1>Cross-validation: {{ r.folds }} folds by case</h1>
<p>{{ r.n_images }} images of {{ r.n_cases }} cases from <code>{{ r.data }}</code>;
{{ "%.0f"|format(r.seconds) }} s. Labels: {{ r.label_definition }}</p>
<table><caption>Mean &plusmn; sd over folds</caption>
<tr><th>model</th>{% for c in cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name, m in r.models.items() %}<tr><td>{{ name }}</td>
{% for c in cols %}<td>{% if m.get(c ~ '_mean') is not none %}{{ "%.3f"|format(m[c ~ '_mean'])
}} &plusmn; {{ "%.3f"|format(m[c ~ '_sd']) }}{% else %}&ndash;{% endif %}</td>{% endfor %}
</tr>{% endfor %}</table>
<table><caption>AUC per fold</caption><tr><th>model</th>
{% for k in range(r.folds) %}<th>fold {{ k + 1 }}</th>{% endfor %}</tr>
{% for name, m in r.models.items() %}<tr><td>{{ name }}</td>{% for v in m.auc %}<td>
{% if v is not none %}{{ "%.3f"|format(v) }}{% else %}&ndash;{% endif %}</td>{% endfor %}
</tr>{% endfor %}</table>
<p class="note">Sensitivity and specificity at P(malignant) &ge; {{ r.threshold }}.
Dice: predicted outline on whole frames (the input of the automatic box).
autobox hit rate: share of whole frames whose automatic box overlaps an outline's box
with IoU &ge; 0.5 (a two-panel frame outlines the nodule once per panel; either counts);
autobox hit rate largest: the same against the largest outline only.
CAM energy inside: share of Grad-CAM energy inside the radiologist's outline on the crop;
outline area share: the outline's share of the crop (what a map spread evenly would get);
centre prior inside: the same share for a Gaussian at the crop's centre, which a CAM must beat.
descriptor_lr: logistic regression on the descriptors alone, the line the other models must beat.
outline_lr: logistic regression on plain statistics of the pixels inside the radiologist's
outline (level against the surroundings, texture, bright spots, edge sharpness), the line
the image networks must beat; outline_lr_auto_auc: the same regression on each image
network's own outline of the whole frame; image_plus_outline_lr_auc: its logit added to
the network's.
</p></body></html>
"""

#: The summary columns of cv.html (mean ± sd over folds), in order.
CV_COLUMNS = (
    "auc",
    "sensitivity",
    "specificity",
    "dice",
    "autobox_hit_rate",
    "autobox_hit_rate_largest",
    "descriptor_accuracy",
    "outline_lr_auto_auc",
    "image_plus_outline_lr_auc",
    "cam_energy_inside",
    "outline_area_share",
    "centre_prior_inside",
    "seconds",
)


def write_cv_html(result: dict, path: str | os.PathLike) -> Path:
    """A self-contained page (no scripts, no external files) of a ``cv.json`` dict."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    html = env.from_string(_HTML).render(r=result, cols=CV_COLUMNS)
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path
