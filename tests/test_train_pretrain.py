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
    as_both = pretrain_once(replace(recipe.locator_config(TINY), modalities="both"), samples)
    assert any(not torch.equal(as_both[k], v) for k, v in run_start.items())
    for k, v in run_start.items():
        torch.testing.assert_close(cv_start[k], v, rtol=0, atol=0, msg=k)


STACKED = replace(TINY, fusion="stacked", locator=None)


def test_cross_validation_networks_start_where_a_run_of_their_model_does(
    partly_labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thyrocam.cv as cv
    import thyrocam.train.pipeline as pipeline

    # The weights a run's network starts training from: build_model's, before any fit.
    class Built(Exception):
        pass

    run_starts: dict[str, tuple[dict[str, torch.Tensor], str]] = {}
    real_build = pipeline.build_model

    def first_build(config: TrainConfig, **kwargs):
        model, init = real_build(config, **kwargs)
        run_starts[config.modalities] = (_state(model), init)
        raise Built

    monkeypatch.setattr(pipeline, "build_model", first_build)
    for modalities in ("both", "clinical"):  # the stacked "both" builds its image network
        with pytest.raises(Built):
            config = replace(STACKED, modalities=modalities)
            train(partly_labelled, out=tmp_path / modalities, config=config)
    assert set(run_starts) == {"image", "clinical"}
    image_start, image_init = run_starts["image"]
    assert "synthetic:3" in image_init
    assert "synthetic" not in run_starts["clinical"][1]  # descriptors only: from scratch

    # What cross-validation's networks are given to start from.
    starts: dict[str, dict[str, torch.Tensor]] = {}
    given: list[tuple[str, object]] = []
    real_pretrained, real_fit, real_stack = cv._pretrained, cv.fit_fold, cv.stack_both

    def pretrained(*args, **kwargs):
        starts.update(real_pretrained(*args, **kwargs))
        return starts

    def fit_fold(config: TrainConfig, train_s, *, start, **kwargs):
        given.append((config.modalities, start))
        return real_fit(config, train_s, start=start, **kwargs)

    def stack_both(image_model, train_s, *, start, **kwargs):
        given.append(("halves", start))
        return real_stack(image_model, train_s, start=start, **kwargs)

    monkeypatch.setattr(cv, "_pretrained", pretrained)
    monkeypatch.setattr(cv, "fit_fold", fit_fold)
    monkeypatch.setattr(cv, "stack_both", stack_both)
    models = ("both", "image", "clinical")
    cv.cross_validate(
        partly_labelled, out=tmp_path / "cv", folds=2, config=STACKED, models=models, cam_cases=1
    )
    assert set(starts) == {"image"}  # one pretraining for all folds, none for descriptors
    assert sorted({k for k, _ in given}) == ["clinical", "halves", "image"]
    for kind, start in given:
        assert start is (None if kind == "clinical" else starts["image"]), kind
    # The image network (and the fusion's halves) start where a run's does, to the bit.
    assert set(starts["image"]) == set(image_start)
    for k, v in image_start.items():
        torch.testing.assert_close(starts["image"][k], v, rtol=0, atol=0, msg=k)
    # The classifier's pretraining as a "both" network (as CV once did for every network)
    # is another start: the comparison above can tell them apart.
    seed_everything(STACKED.seed)
    samples = thyrocam.data.prepare_samples(partly_labelled, label_source=STACKED.label_source)[0]
    from thyrocam.cv.networks import pretrain_once

    as_both = pretrain_once(replace(STACKED, modalities="both"), samples)
    assert any(not torch.equal(as_both[k], v) for k, v in image_start.items())
