"""Descriptor attributions: exact Shapley values checked against independent computations."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from thyrocam.clinical import (
    FIELDS,
    default_cat_maps,
    encode_clinical_with_mask,
    feature_slices,
    mask_slice,
)
from thyrocam.errors import InputError
from thyrocam.explain.attribution import coalition_inputs, descriptor_attributions
from thyrocam.model import ThyroidNet

CAT_MAPS = default_cat_maps()
PAYLOAD = {
    "composition": "solid",
    "echogenicity": None,  # missing: its attribution must be exactly 0
    "margins": "ill defined",
    "calcifications": "microcalcifications",
    "sex": "F",
    "age": 61,
}


def _net(modalities: str = "both", seed: int = 0) -> ThyroidNet:
    torch.manual_seed(seed)
    return ThyroidNet(arch="resnet18", clinical_dim=28, modalities=modalities).eval()


def _inputs(payload: dict = PAYLOAD) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    vec, _ = encode_clinical_with_mask(payload, CAT_MAPS)
    return x, torch.from_numpy(vec)[None]


def _set_missing(vec: torch.Tensor, fields: list[str]) -> torch.Tensor:
    out = vec.clone()
    slices, start = feature_slices(CAT_MAPS), mask_slice(CAT_MAPS).start
    for field in fields:
        out[..., slices[field]] = 0.0
        out[..., start + FIELDS.index(field)] = 0.0
    return out


def _brute_force_values(model: nn.Module, x: torch.Tensor, clin: torch.Tensor) -> dict:
    """Every coalition through the *full* model (no shared image features)."""
    values = {}
    with torch.no_grad():
        for r in range(len(FIELDS) + 1):
            for kept in itertools.combinations(FIELDS, r):
                dropped = [f for f in FIELDS if f not in kept]
                values[frozenset(kept)] = float(model(x, _set_missing(clin, dropped))[0, 0])
    return values


def _permutation_shapley(values: dict) -> np.ndarray:
    """The textbook definition: mean marginal contribution over all 720 orders."""
    phi = np.zeros(len(FIELDS))
    for order in itertools.permutations(range(len(FIELDS))):
        kept: set[str] = set()
        for i in order:
            before = values[frozenset(kept)]
            kept.add(FIELDS[i])
            phi[i] += values[frozenset(kept)] - before
    return phi / math.factorial(len(FIELDS))


@pytest.mark.parametrize("modalities", ["both", "clinical"])
def test_shapley_equals_brute_force_over_the_full_model(modalities: str) -> None:
    model = _net(modalities)
    x, clin = _inputs()
    values = _brute_force_values(model, x, clin)
    att = descriptor_attributions(model, x, clin, cat_maps=CAT_MAPS)
    expected = _permutation_shapley(values)
    np.testing.assert_allclose(att.shapley[0], expected, atol=1e-5)
    assert np.abs(expected).max() > 1e-3  # the check is not all zeros
    everything, nothing = values[frozenset(FIELDS)], values[frozenset()]
    assert att.logit_full[0] == pytest.approx(everything, abs=1e-5)
    assert att.logit_none[0] == pytest.approx(nothing, abs=1e-5)
    occlusion = [everything - values[frozenset(FIELDS) - {f}] for f in FIELDS]
    np.testing.assert_allclose(att.occlusion[0], occlusion, atol=1e-5)


def test_completeness_and_missing_fields_get_zero() -> None:
    x, clin = _inputs()
    att = descriptor_attributions(_net(seed=4), x, clin, cat_maps=CAT_MAPS)
    assert att.completeness_error[0] < 1e-9
    assert att.shapley[0].sum() == pytest.approx(att.logit_full[0] - att.logit_none[0], abs=1e-9)
    shap = att.as_dict()
    assert list(shap) == list(FIELDS)
    assert shap["echogenicity"] == 0.0 and att.occlusion[0, FIELDS.index("echogenicity")] == 0.0
    assert all(shap[f] != 0.0 for f in FIELDS if f != "echogenicity")


def test_image_only_model_gives_all_zero_attributions() -> None:
    x, clin = _inputs()
    att = descriptor_attributions(_net("image"), x, clin, cat_maps=CAT_MAPS)
    assert np.all(att.shapley == 0.0) and np.all(att.occlusion == 0.0)


def test_batch_rows_equal_single_calls() -> None:
    model = _net(seed=5)
    x1, c1 = _inputs()
    x2 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    c2 = torch.from_numpy(encode_clinical_with_mask({"sex": "M", "age": 30}, CAT_MAPS)[0])[None]
    both = descriptor_attributions(
        model, torch.cat([x1, x2]), torch.cat([c1, c2]), cat_maps=CAT_MAPS
    )
    for i, (x, c) in enumerate([(x1, c1), (x2, c2)]):
        one = descriptor_attributions(model, x, c, cat_maps=CAT_MAPS)
        np.testing.assert_allclose(both.shapley[i], one.shapley[0], atol=1e-5)


def test_coalition_inputs_drop_value_and_mask_entries() -> None:
    _, clin = _inputs()
    rows = coalition_inputs(clin[0], cat_maps=CAT_MAPS)
    assert rows.shape == (64, 28)
    assert torch.equal(rows[63], clin[0]) and torch.count_nonzero(rows[0]) == 0
    only_age = rows[1 << FIELDS.index("age")]
    assert torch.equal(only_age, _set_missing(clin, [f for f in FIELDS if f != "age"])[0])


def test_agrees_with_captum_shapley_values() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    model = _net(seed=6)
    # captum enumerates 720 orders through the whole forward pass: a stand-in
    # image trunk (same output width) keeps that to a second; ThyroidNet.forward
    # itself, and so the fusion being checked, is unchanged.
    model.cnn = nn.Sequential(
        nn.Conv2d(3, model.image_dim, 4, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).eval()
    x, clin = _inputs()
    groups = torch.zeros(1, 28, dtype=torch.long)
    slices, start = feature_slices(CAT_MAPS), mask_slice(CAT_MAPS).start
    for i, field in enumerate(FIELDS):
        groups[0, slices[field]] = i
        groups[0, start + i] = i
    engine = captum_attr.ShapleyValues(lambda c: model(x.expand(len(c), -1, -1, -1), c))
    with torch.no_grad():
        ref = engine.attribute(
            clin,
            baselines=torch.zeros_like(clin),  # the all-missing encoding
            target=0,
            feature_mask=groups,
            perturbations_per_eval=256,
        )
    expected = [float(ref[0, start + i]) for i in range(len(FIELDS))]
    att = descriptor_attributions(model, x, clin, cat_maps=CAT_MAPS)
    np.testing.assert_allclose(att.shapley[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("clin_shape", "message"),
    [((27,), "clin: got shape (1, 27); allowed: (1, 28)"), ((2, 28), "clin: got shape (2, 28)")],
)
def test_bad_descriptor_shapes_are_input_errors(clin_shape: tuple, message: str) -> None:
    x, _ = _inputs()
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        descriptor_attributions(_net(), x, torch.zeros(clin_shape), cat_maps=CAT_MAPS)


def test_training_mode_is_refused() -> None:
    x, clin = _inputs()
    with pytest.raises(InputError, match="model: got a model in training mode"):
        descriptor_attributions(_net().train(), x, clin, cat_maps=CAT_MAPS)


def test_predictor_explain_returns_attributions(tiny_run: Path, synth_dir: Path) -> None:
    from thyrocam.predictor import Predictor

    predictor = Predictor.load(tiny_run, device="cpu")
    image = sorted(synth_dir.glob("*_1.jpg"))[0]
    clinical = {"composition": "solid", "margins": "spiculated", "sex": "F", "age": 70}
    exp = predictor.explain(image, clinical, attributions=True)
    assert list(exp.attributions) == list(FIELDS)
    assert exp.attributions["echogenicity"] == 0.0
    none = predictor.predict(image, None)
    total = sum(exp.attributions.values())
    assert total == pytest.approx(exp.prediction.logit - none.logit, abs=1e-4)
    assert predictor.explain(image, clinical).attributions is None
