"""Synthetic pretraining: the set is written once per process and shared by the networks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import thyrocam.data
from thyrocam.checkpoint import load_run
from thyrocam.clinical import default_cat_maps
from thyrocam.model import ThyroidNet
from thyrocam.train import TrainConfig, pretraining, recipe, seed_everything, train
from tiny_config import TINY_EVERY_HEAD

TINY = replace(  # a locator too: two networks pretrain
    TINY_EVERY_HEAD, locator="unet", pretrain_synthetic=3, pretrain_epochs=1
)


@pytest.fixture
def counted_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every synthetic set written, as ``(cases, seed)``, from an empty cache."""
    pretraining.drop_synthetic_set()
    writes: list[tuple[int, int]] = []
    real = thyrocam.data.make_synthetic_ddti

    def spy(out, *, cases: int, seed: int, **kwargs):
        writes.append((cases, seed))
        return real(out, cases=cases, seed=seed, **kwargs)

    monkeypatch.setattr(thyrocam.data, "make_synthetic_ddti", spy)
    yield writes
    pretraining.drop_synthetic_set()


def _state(model: ThyroidNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_run_with_a_locator_writes_the_synthetic_set_once(
    partly_labelled: Path,
    tmp_path: Path,
    counted_writes: list,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pretrained: list[str] = []
    real = recipe.pretrain_synthetic

    def spy(model: ThyroidNet, **kwargs) -> None:
        pretrained.append(model.decoder)
        real(model, **kwargs)

    monkeypatch.setattr(recipe, "pretrain_synthetic", spy)
    train(partly_labelled, out=tmp_path / "run", config=TINY)
    info = load_run(tmp_path / "run")
    assert info.locator is not None
    assert "synthetic:3" in info.meta["backbone_init"]
    assert sorted(pretrained) == ["fpn", "unet"]  # the classifier and the locator
    assert counted_writes == [(3, TINY.seed + 1)]


def test_pretraining_on_the_kept_set_equals_a_fresh_one(counted_writes: list) -> None:
    cat_maps = default_cat_maps()
    heads = ("malignancy", "outline", "descriptors")

    def build(config: TrainConfig) -> ThyroidNet:
        seed_everything(config.seed)  # as every caller does: the same initial weights
        return recipe.build_model(config, cat_maps=cat_maps, heads=heads)[0]

    first = build(TINY)
    second = build(TINY)
    pretraining.drop_synthetic_set()
    fresh = build(TINY)
    assert len(counted_writes) == 2  # the second model read the kept set
    a, b, c = _state(first), _state(second), _state(fresh)
    scratch = build(replace(TINY, pretrain_synthetic=0))
    assert any(not torch.equal(a[k], v) for k, v in _state(scratch).items())  # it trained
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(c[k], a[k], rtol=0, atol=0, msg=k)


def test_another_set_replaces_the_kept_one_and_removes_its_folder(counted_writes: list) -> None:
    first = pretraining.synthetic_set(cases=2, seed=5)
    folder = Path(first[0].image_path).parents[0]
    assert folder.is_dir()
    assert pretraining.synthetic_set(cases=2, seed=5) is first  # kept
    other = pretraining.synthetic_set(cases=2, seed=6)
    assert other is not first
    assert not folder.exists()
    assert Path(other[0].image_path).exists()
    assert counted_writes == [(2, 5), (2, 6)]


def test_cross_validation_locators_start_where_a_runs_locator_does(
    partly_labelled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thyrocam.clinical import fit_cat_maps
    from thyrocam.cv import _Locating
    from thyrocam.cv.networks import pretrain_once
    from thyrocam.data import prepare_samples

    samples = prepare_samples(partly_labelled, label_source=TINY.label_source)[0]
    cat_maps = fit_cat_maps([s.clinical for s in samples])  # what the CV's folds share
    starts: list[dict[str, torch.Tensor]] = []

    def no_training(config: TrainConfig, samples: list, *, start: dict, **kwargs) -> None:
        starts.append(start)  # the weights a run's locator would train from

    monkeypatch.setattr(recipe, "fit_network", no_training)
    recipe.fit_locator(TINY, samples, cat_maps=cat_maps, device=torch.device("cpu"))
    run_start = starts[0]
    cv_start = _Locating.prepare(TINY, samples, []).start
    assert cv_start is not None
    assert set(cv_start) == set(run_start)
    # Pretrained as the classifier's "both" network instead (as CV once did), the
    # backbone learns differently: the check below can tell the two apart.
    seed_everything(TINY.seed)
    as_both = pretrain_once(recipe.locator_config(TINY), samples)
    assert any(not torch.equal(as_both[k], v) for k, v in run_start.items())
    for k, v in run_start.items():
        torch.testing.assert_close(cv_start[k], v, rtol=0, atol=0, msg=k)
