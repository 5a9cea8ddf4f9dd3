"""Late fusion fitted by cross-fitting: the descriptor regression plus a weighed image logit.

Trained jointly, the image branch of a small real data set learns the training
cases by heart and the descriptor branch learns less than a plain logistic
regression would: on DDTI the jointly trained model scored under the regression
on the descriptors alone (CV AUC 0.921 vs 0.936). Stacking asks the question
directly -- how much does the image add to the descriptors? -- and answers it on
cases the image network did not train on:

1. the image-only network is trained on the whole training split (it is the
   fused model's image branch);
2. two more image networks, each trained on one half of the training cases
   (by case, stratified), score the other half: an out-of-fold image logit for
   every training frame;
3. a logistic regression on the encoded descriptors (``DESCRIPTOR_L2``, classes
   balanced) gives each frame's descriptor logit;
4. the image weight ``a >= 0`` (and a constant) is fitted on the out-of-fold
   logits with the descriptor logit as a fixed offset, penalised by
   ``IMAGE_WEIGHT_L2``. The image enters only when it adds to the descriptors
   beyond chance: a score test of ``a`` (one degree of freedom) at
   ``IMAGE_TEST_LEVEL``, the same 5 % rule that decides whether a descriptor head
   is trusted, whose variance counts cases, not frames, and which lets the
   descriptor logit's scale be refitted (:func:`image_test`: the views of one case
   are not independent evidence, and the penalised regression's logit is shrunk,
   which an image that only echoes the descriptors would otherwise undo).
   Otherwise ``a = 0`` and the fused model is the regression exactly (on DDTI an
   untested weight let out-of-fold noise, AUC 0.57, lower a fold's AUC from
   0.970 to 0.943);
5. half-data networks are less sure than the full one (fewer steps), so ``a``
   is scaled by the ratio of the spread of their logits on their own training
   frames to the full network's on its own (both in-sample, so comparable);
6. :func:`stacked_fusion` writes ``a * z(img) + descriptor
   logit`` into one ordinary ThyroidNet.

Wolpert, "Stacked generalization", 1992; Chernozhukov et al., "Double/debiased
machine learning", 2018 (cross-fitting).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from thyrocam.clinical import encode_clinical_with_mask
from thyrocam.data import Sample, ThyroidDataset, split_by_case
from thyrocam.errors import InputError
from thyrocam.metrics import roc_auc
from thyrocam.model import ThyroidNet

__all__ = [
    "DESCRIPTOR_L2",
    "IMAGE_TEST_LEVEL",
    "IMAGE_WEIGHT_L2",
    "Stacking",
    "fit_logistic",
    "fit_stacking",
    "image_logits",
    "image_test",
    "stacked_fusion",
]

log = logging.getLogger(__name__)

#: L2 penalty of the descriptor regression (scikit-learn's C = 1), as the CV's
#: ``descriptor_lr`` line uses.
DESCRIPTOR_L2 = 1.0
#: L2 penalty on the image weight ``a`` (per balanced frame weight, summed).
IMAGE_WEIGHT_L2 = 1.0
#: The image enters the fusion only when its test (:func:`image_test`) is below this.
IMAGE_TEST_LEVEL = 0.05


@torch.no_grad()
def stacked_fusion(
    image_model: ThyroidNet,
    *,
    clinical_weight: torch.Tensor,
    bias: float,
    image_weight: float,
) -> ThyroidNet:
    """One ``"both"`` ThyroidNet whose logit is ``image_weight * z(img) + clin @ w + bias``.

    ``z`` is ``image_model``'s malignancy logit (an ``"image"`` model) and ``w``
    (``clinical_weight``, ``(D,)``) a logistic regression on the encoded
    descriptors: the late fusion :mod:`thyrocam.train.stacking` fits. It is written
    into the ordinary modules, so Grad-CAM of the logit (the image model's map when
    ``image_weight > 0``, empty when it is 0), the descriptor Shapley values (exactly
    each field's ``w`` terms) and every other consumer see an ordinary ThyroidNet:
    the descriptor branch carries ``u = clin @ w`` as ``relu(u)`` and ``relu(-u)`` in
    two units (their difference is ``u``; the other units are zero), and the fusion
    head weighs the image features by ``image_weight`` times the image model's. One
    module is added (``fusion="stacked"``): ``image_head`` keeps ``z`` itself, as
    ``forward_heads(...)["image"]``, so the image network can still be explained
    when its weight is 0.

    Args:
        image_model: a trained ``modalities="image"`` ThyroidNet (left unchanged).
        clinical_weight: ``(D,)``, ``D = image_model.clinical_dim``.
        bias: the fused logit's constant.
        image_weight: the weight of the image logit (>= 0).

    Returns:
        A new ThyroidNet (``modalities="both"``, same heads and arch) on the image
        model's device, in eval mode.
    """
    w = torch.as_tensor(clinical_weight, dtype=torch.float32).flatten()
    _check_fusion_inputs(image_model, w, image_weight)
    fused = ThyroidNet(
        arch=image_model.arch,
        clinical_dim=image_model.clinical_dim,
        hidden=image_model.hidden,
        modalities="both",
        heads=image_model.heads,
        descriptor_classes=image_model.descriptor_classes or None,
        pool=image_model.pool,
        fusion="stacked",
        decoder=image_model.decoder,
    )
    missing, unexpected = fused.load_state_dict(image_model.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"image_head.weight", "image_head.bias"}
    # The image model's logit z = W_img . f_img + W_clin . clin_net(0) + b: its descriptor
    # part is a constant (the image model never sees descriptors), folded into the bias.
    head = image_model.head[-1]
    zeros = torch.zeros(1, image_model.clinical_dim, device=head.weight.device)
    hidden = image_model.hidden
    const = float(head.weight[0, hidden:] @ image_model.clin_net(zeros)[0] + head.bias[0])
    first, second = fused.clin_net[0], fused.clin_net[2]
    for layer in (first, second):
        layer.weight.zero_()
        layer.bias.zero_()
    first.weight[0] = w
    first.weight[1] = -w
    second.weight[0, 0] = second.weight[1, 1] = 1.0
    out = fused.head[-1]
    out.weight[0, :hidden] = image_weight * head.weight[0, :hidden]
    out.weight[0, hidden:] = 0.0
    out.weight[0, hidden], out.weight[0, hidden + 1] = 1.0, -1.0
    out.bias[0] = image_weight * const + bias
    fused.image_head.weight.copy_(head.weight[:, :hidden])
    fused.image_head.bias.fill_(const)
    return fused.to(head.weight.device).eval()


def _check_fusion_inputs(image_model: ThyroidNet, w: torch.Tensor, image_weight: float) -> None:
    if image_model.modalities != "image" or w.numel() != image_model.clinical_dim:
        raise InputError(
            f"stacked_fusion: got a {image_model.modalities!r} model and {w.numel()} "
            f"descriptor weights; allowed: an 'image' model and {image_model.clinical_dim}",
            field="image_model",
            value=image_model.modalities,
            allowed="image",
        )
    if not image_weight >= 0:
        raise InputError(
            f"image_weight: got {image_weight}; allowed: a number >= 0",
            field="image_weight",
            value=image_weight,
            allowed=">= 0",
        )


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1.0,
    steps: int = 200,
    offset: np.ndarray | None = None,
    balanced: bool = True,
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (LBFGS in torch), classes weighted to balance.

    Args:
        x: ``(N, D)`` features (``D`` may be 0: the bias alone); y: ``(N,)`` 0/1 labels.
        l2: penalty on the weights (not the bias), as in scikit-learn's ``1/C``.
        offset: ``(N,)`` a fixed logit added to ``x @ w + b`` (not fitted).
        balanced: weigh each class to half the total (``False``: every frame 1).

    Returns:
        ``(w (D,), b)``; ``P(y=1) = sigmoid(offset + x @ w + b)``.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(len(y), -1))
    yt = torch.as_tensor(y, dtype=torch.float64)
    off = torch.zeros_like(yt) if offset is None else torch.as_tensor(offset, dtype=torch.float64)
    n_pos = float(yt.sum())
    n_neg = float(len(yt) - n_pos)
    sample_w = torch.where(yt > 0, len(yt) / (2 * max(n_pos, 1.0)), len(yt) / (2 * max(n_neg, 1.0)))
    if not balanced:
        sample_w = torch.ones_like(yt)
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = off + xt @ w + b
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, yt, weight=sample_w, reduction="sum"
        )
        loss = nll + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def image_test(
    z: np.ndarray, y: np.ndarray, *, offset: np.ndarray, groups: Sequence[object] | None = None
) -> float:
    """p-value that logit ``b offset + a z + c`` beats ``b offset + c``: a score test of
    ``a = 0`` with ``b`` and ``c`` fitted, whose variance is summed over ``groups`` (one
    degree of freedom); 1.0 when the image's score is not positive (it would point the
    wrong way).

    ``b`` is free because the descriptor regression is penalised: its logit is
    shrunk (on DDTI's training folds an unpenalised refit scales it by 1.4-1.55), so
    with ``b = 1`` any image logit that merely echoes the descriptors' risk would
    restore the missing scale and look like evidence; the question is what the
    image adds beyond the descriptors, however scaled.

    The frames of one case share the nodule, the label and (for the out-of-fold
    logits) the half network that scored them, so they are not independent
    observations: a test that counts frames counts a case with three views three
    times. The score ``U = sum_i z~_i (y_i - p_i)`` (``p`` fitted under ``a = 0``,
    ``z~`` the residual of ``z`` on ``(1, offset)`` weighted by ``p (1 - p)``, which
    takes out the fitted ``b`` and ``c``) is summed within each group first, and its
    variance is the sum of the groups' squared sums (the cluster-robust score test of
    generalised estimating equations; Rotnitzky and Jewell, Biometrika 1990), times
    ``G / (G - 1)`` for ``G`` groups. With one frame per group it is the ordinary
    robust score test, asymptotically the likelihood-ratio test; a case repeated
    ``k`` times leaves it unchanged, where a frame-level test's statistic grows
    ``k`` times.

    Args:
        z: ``(N,)`` out-of-fold image logits; y: ``(N,)`` 0/1; offset: ``(N,)``.
        groups: ``(N,)`` the case of each frame (default: every frame its own).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    nuisance = np.stack([np.ones_like(offset), offset], axis=1)
    w0, c0 = fit_logistic(offset[:, None], y, l2=0.0, balanced=False)
    p = 1.0 / (1.0 + np.exp(-(offset * w0[0] + c0)))
    root = np.sqrt(p * (1.0 - p))
    beta = np.linalg.lstsq(nuisance * root[:, None], z * root, rcond=None)[0]
    terms = (z - nuisance @ beta) * (y - p)
    score = float(terms.sum())
    if not score > 0:
        return 1.0
    keys = (
        np.arange(len(terms))
        if groups is None
        else np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
    )
    per_group = np.bincount(keys, weights=terms)
    n_groups = len(per_group)
    variance = float((per_group**2).sum()) * n_groups / max(n_groups - 1, 1)
    if not variance > 0:
        return 1.0
    return math.erfc(score / math.sqrt(2.0 * variance))  # two-sided normal, as chi-square 1


@dataclass(frozen=True)
class Stacking:
    """What the late fusion learnt (``meta.json`` and ``metrics.json`` ``"stacking"``;
    ``cv.json``: ``stacking_<key>`` per fold).

    Attributes:
        image_weight: ``a`` as used by the fused model (after the spread ratio).
        image_weight_fitted: ``a`` as fitted on the half networks' logits.
        spread_ratio: half networks' in-sample logit spread over the full one's.
        out_of_fold_auc: AUC of the out-of-fold image logits on the training frames.
        image_p_value: :func:`image_test` of those logits beside the descriptors
            (the image enters when it is below ``IMAGE_TEST_LEVEL``).
    """

    image_weight: float
    image_weight_fitted: float
    spread_ratio: float
    out_of_fold_auc: float
    image_p_value: float

    def to_dict(self) -> dict:
        return {
            "image_weight": self.image_weight,
            "image_weight_fitted": self.image_weight_fitted,
            "spread_ratio": self.spread_ratio,
            "out_of_fold_auc": self.out_of_fold_auc,
            "image_p_value": self.image_p_value,
            "descriptor_l2": DESCRIPTOR_L2,
            "image_weight_l2": IMAGE_WEIGHT_L2,
            "image_test_level": IMAGE_TEST_LEVEL,
        }


@torch.no_grad()
def image_logits(
    model: ThyroidNet, samples: list[Sample], *, dataset: Callable[[list[Sample]], ThyroidDataset]
) -> np.ndarray:
    """The malignancy logits ``(N,)`` of ``samples`` (un-augmented crops, model in eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for x, clin, _ in DataLoader(dataset(samples), batch_size=64, shuffle=False):
        out.append(model(x.to(device), clin.to(device))[:, 0].double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def fit_stacking(
    image_model: ThyroidNet,
    train_s: list[Sample],
    *,
    cat_maps: dict,
    fit_half: Callable[[list[Sample], int], ThyroidNet],
    dataset: Callable[[list[Sample]], ThyroidDataset],
    seed: int,
) -> tuple[ThyroidNet, Stacking]:
    """The fused ``"both"`` model from a trained image-only model (steps 2-6 above).

    Args:
        image_model: the image-only network trained on ``train_s``.
        train_s: the training frames.
        cat_maps: the descriptor encoding.
        fit_half: ``(samples, half) -> image network`` trained on ``samples`` with the
            same recipe and start as ``image_model``.
        dataset: ``samples -> ThyroidDataset`` of plain (un-augmented) crops.
        seed: the seed of the split into halves.

    Returns:
        ``(fused model, Stacking)``.
    """
    y = np.array([s.label for s in train_s], dtype=np.float64)
    halves = split_by_case(train_s, fractions=(0.5, 0.5, 0.0), seed=seed)[:2]
    index = {id(s): i for i, s in enumerate(train_s)}
    out_of_fold = np.zeros(len(train_s))
    spreads = []
    for h, (fit_on, score_on) in enumerate(((halves[0], halves[1]), (halves[1], halves[0]))):
        net = fit_half(fit_on, h)
        out_of_fold[[index[id(s)] for s in score_on]] = image_logits(net, score_on, dataset=dataset)
        spreads.append(float(image_logits(net, fit_on, dataset=dataset).std()))
    full_spread = float(image_logits(image_model, train_s, dataset=dataset).std())
    ratio = float(np.mean(spreads) / full_spread) if full_spread > 0 else 1.0
    x = np.stack([encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in train_s])
    w, b = fit_logistic(x, y, l2=DESCRIPTOR_L2)
    offset = x @ w + b
    p_value = image_test(out_of_fold, y, offset=offset, groups=[s.case_id for s in train_s])
    a, c = fit_logistic(out_of_fold[:, None], y, l2=IMAGE_WEIGHT_L2, offset=offset)
    fitted = float(a[0])
    if p_value >= IMAGE_TEST_LEVEL or fitted <= 0:
        # The image adds nothing to the descriptors on unseen cases (beyond chance),
        # or points the wrong way: leave it out.
        fitted = 0.0
        _, c = fit_logistic(np.zeros((len(y), 0)), y, offset=offset)
    stacking = Stacking(
        image_weight=fitted * ratio,
        image_weight_fitted=fitted,
        spread_ratio=ratio,
        out_of_fold_auc=roc_auc(out_of_fold, y),
        image_p_value=p_value,
    )
    log.info(
        "stacked fusion: image weight %.3f (fitted %.3f x spread ratio %.2f), "
        "out-of-fold image AUC %.3f, p %.3g",
        stacking.image_weight,
        fitted,
        ratio,
        stacking.out_of_fold_auc,
        p_value,
    )
    fused = stacked_fusion(
        image_model,
        clinical_weight=torch.as_tensor(w, dtype=torch.float32),
        bias=b + c,
        image_weight=stacking.image_weight,
    )
    return fused, stacking
