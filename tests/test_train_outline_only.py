"""Outlined frames of unlabelled cases: read, trained on by the outline head, never scored."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from thyrocam.clinical import fit_cat_maps
from thyrocam.data import ThyroidDataset, outline_only_samples, prepare_samples
from thyrocam.train import TrainConfig, train
from thyrocam.train.losses import malignancy_bce
from thyrocam.train.recipe import build_model, step_loss_for, with_outline_only
from tiny_config import TINY_EVERY_HEAD

UNLABELLED = ("1", "2", "3")  # conftest.partly_labelled: case 3 has no outline either
TINY = replace(TINY_EVERY_HEAD, unlabelled_outlines=True)


def test_outline_only_samples_are_the_outlined_views_of_unlabelled_cases(
    partly_labelled: Path, synth_dir: Path
) -> None:
    labelled, problems, _ = prepare_samples(partly_labelled)
    extra = outline_only_samples(partly_labelled)
    assert {s.case_id for s in extra} == {"1", "2"}  # case 3 has no outline to learn from
    assert all(s.label is None and any(len(p) >= 3 for p in s.polygons) for s in extra)
    assert not {s.case_id for s in labelled} & set(UNLABELLED)
    assert any("3 cases have" in p for p in problems)  # still reported as left out
    assert outline_only_samples(synth_dir) == []  # every case labelled


def test_malignancy_bce_leaves_unlabelled_frames_out() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, requires_grad=True)
    label = torch.tensor([1.0, float("nan"), 0.0, 1.0, float("nan"), 0.0])
    loss = malignancy_bce(logits, label, pos_weight=2.5)
    has = ~torch.isnan(label)
    expected = F.binary_cross_entropy_with_logits(
        logits[has], label[has], pos_weight=torch.tensor([2.5])
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~has] == 0) and torch.all(logits.grad[has] != 0)
    # All labelled: the plain class-weighted mean, as before unlabelled frames existed.
    full = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    plain = F.binary_cross_entropy_with_logits(logits, full, pos_weight=torch.tensor([2.5]))
    assert torch.equal(malignancy_bce(logits, full, pos_weight=2.5), plain)
    # None labelled: zero, and still differentiable.
    none = malignancy_bce(logits, torch.full((6,), float("nan")), pos_weight=1.0)
    assert none.item() == 0.0 and none.requires_grad


def test_unlabelled_frames_reach_only_an_outline_heads_training_set(
    partly_labelled: Path,
) -> None:
    labelled, _, _ = prepare_samples(partly_labelled)
    extra = outline_only_samples(partly_labelled)
    config = TrainConfig(image_size=32, preprocess="roi")
    with_outlines = with_outline_only(labelled, extra, heads=("malignancy", "outline"))
    assert with_outlines == [*labelled, *extra]
    assert with_outline_only(labelled, extra, heads=("malignancy", "descriptors")) == labelled
    cat_maps = fit_cat_maps([s.clinical for s in labelled])
    ds = ThyroidDataset(
        with_outlines, preprocessing=config.preprocessing(), cat_maps=cat_maps, targets=True
    )
    items = [ds[i] for i in range(len(labelled) - 1, len(ds))]
    assert not torch.isnan(items[0]["label"])
    assert all(torch.isnan(it["label"]) and it["has_mask"] == 1 for it in items[1:])
    # The class weight counts labelled frames only.
    pos = sum(s.label for s in labelled)
    model, _ = build_model(TINY, cat_maps=cat_maps, heads=("malignancy", "outline"))
    loss = step_loss_for(config, model, with_outlines)
    assert loss.pos_weight == pytest.approx((len(labelled) - pos) / pos)


def test_train_records_the_unlabelled_cases_it_learnt_outlines_from(
    partly_labelled: Path, tmp_path: Path
) -> None:
    config = TINY
    metrics = train(partly_labelled, out=tmp_path / "run", config=config)
    n_extra = len(outline_only_samples(partly_labelled))
    assert metrics["outline_only_frames"] == n_extra > 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["train_outline_only"] == ["1", "2"]
    scored = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert not scored & set(UNLABELLED)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["train_config"]["unlabelled_outlines"] is True
    # Without the option nothing changes.
    plain = train(
        partly_labelled,
        out=tmp_path / "plain",
        config=TrainConfig(**{**config.__dict__, "unlabelled_outlines": False}),
    )
    assert plain["outline_only_frames"] == 0
    assert "train_outline_only" not in json.loads((tmp_path / "plain" / "split.json").read_text())
    # Asked for, but no outline head to learn them: none used, none recorded.
    no_outline = replace(config, heads=("descriptors",))
    metrics = train(partly_labelled, out=tmp_path / "descriptors", config=no_outline)
    assert metrics["outline_only_frames"] == 0
    split = json.loads((tmp_path / "descriptors" / "split.json").read_text())
    assert "train_outline_only" not in split


def test_the_option_reaches_the_config_from_the_command_line() -> None:
    from thyrocam.cli.train import add_train_options, train_config

    p = argparse.ArgumentParser()
    add_train_options(p)
    assert train_config(p.parse_args([])).unlabelled_outlines is False
    assert train_config(p.parse_args(["--preset", "ddti"])).unlabelled_outlines is False
    on = train_config(p.parse_args(["--preset", "ddti", "--unlabelled-outlines"]))
    assert on.unlabelled_outlines is True and on.epochs == 40  # the preset's other values stay
    assert train_config(p.parse_args(["--no-unlabelled-outlines"])).unlabelled_outlines is False


def test_cv_trains_every_folds_image_network_on_them_and_scores_none(
    partly_labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thyrocam.train.recipe as recipe
    from thyrocam.cv import cross_validate

    seen: list[list] = []
    real = recipe.train_dataset

    def spy(config, samples, **kw):
        seen.append([s.case_id for s in samples if s.label is None])
        return real(config, samples, **kw)

    monkeypatch.setattr(recipe, "train_dataset", spy)
    config = TINY
    result = cross_validate(
        partly_labelled,
        out=tmp_path / "cv",
        folds=2,
        config=config,
        models=("image", "clinical"),
        cam_cases=2,
        save_runs=True,
    )
    n_extra = len(outline_only_samples(partly_labelled))
    labelled, _, _ = prepare_samples(partly_labelled)
    assert result["n_outline_only_images"] == n_extra and result["n_images"] == len(labelled)
    # One image network per fold trains on them; the descriptors-only one has no outline head.
    assert sorted(len(ids) for ids in seen) == [0, 0, n_extra, n_extra]
    for fold in (0, 1):
        runs = tmp_path / "cv" / "runs"
        split = json.loads((runs / f"fold{fold}-image" / "split.json").read_text())
        assert split["train_outline_only"] == ["1", "2"]
        assert not set(split["test"]) & set(UNLABELLED)
        clinical = json.loads((runs / f"fold{fold}-clinical" / "split.json").read_text())
        assert "train_outline_only" not in clinical
