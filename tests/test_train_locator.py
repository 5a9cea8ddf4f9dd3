"""A run's locator: a second, image-only outline network that finds the nodule for the box."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from thyrocam.checkpoint import check_run_target, load_run
from thyrocam.data import outline_only_samples, prepare_samples
from thyrocam.errors import CheckpointError, InputError
from thyrocam.predictor import Predictor
from thyrocam.predictor.autobox import find_nodule
from thyrocam.train import train
from tiny_config import TINY_EVERY_HEAD

UNLABELLED = ("1", "2")  # conftest.partly_labelled: unlabelled, outlined (3 is not outlined)
TINY = replace(TINY_EVERY_HEAD, locator="unet")  # the locator gets the U-Net decoder


@pytest.fixture(scope="module")
def located_run(partly_labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("located") / "run"
    train(partly_labelled, out=out, config=TINY)
    return out


class _RectangleOutline(torch.nn.Module):
    """A stand-in locator whose outline is one rectangle of its input, whatever the image:
    where the predictor's box comes from can then be read off the box."""

    heads = ("malignancy", "outline")

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.rows, self.cols = rows, cols

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        logits = torch.full((img.shape[0], 1, *img.shape[-2:]), -20.0)
        logits[:, :, self.rows, self.cols] = 20.0
        return {"outline": logits * self.scale}


def test_a_run_with_a_locator_writes_it_as_a_run_folder_inside_the_run(
    located_run: Path, partly_labelled: Path
) -> None:
    meta = json.loads((located_run / "meta.json").read_text())
    assert meta["locator"] == "locator" and meta["decoder"] == "fpn"
    assert meta["train_config"]["locator"] == "unet"
    loc_meta = json.loads((located_run / "locator" / "meta.json").read_text())
    assert loc_meta["decoder"] == "unet" and loc_meta["modalities"] == "image"
    assert "outline" in loc_meta["heads"] and "outline_input" in loc_meta
    cfg = loc_meta["train_config"]
    assert cfg["unlabelled_outlines"] is True and cfg["locator"] is None
    # The main network did not learn the unlabelled outlines (its config did not ask).
    split = json.loads((located_run / "split.json").read_text())
    assert "train_outline_only" not in split
    info = load_run(located_run)
    assert info.locator is not None and info.locator.model.decoder == "unet"
    assert info.model.decoder == "fpn"
    # The locator's weights are its own, not a copy of the model's.
    a = info.model.cnn.conv1.weight
    b = info.locator.model.cnn.conv1.weight
    assert a.shape == b.shape and not torch.equal(a, b)
    assert outline_only_samples(partly_labelled)  # there were unlabelled frames to learn


def test_the_locator_trains_on_the_unlabelled_outlines(
    partly_labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thyrocam.train.recipe as recipe

    seen: list[tuple[str, list[str]]] = []
    cases: dict[str, set[str]] = {}
    real = recipe.fit_epochs

    def spy(model, ds, **kw):
        seen.append((model.decoder, sorted({s.case_id for s in ds.samples if s.label is None})))
        cases.setdefault(model.decoder, set()).update(s.case_id for s in ds.samples)
        return real(model, ds, **kw)

    monkeypatch.setattr(recipe, "fit_epochs", spy)
    train(partly_labelled, out=tmp_path / "run", config=replace(TINY, fusion="stacked"))
    # The stacked fusion's two half networks (fpn) without them, the locator (unet) with.
    assert ("unet", list(UNLABELLED)) in seen
    assert all(ids == [] for decoder, ids in seen if decoder == "fpn")
    assert [d for d, _ in seen].count("unet") == 1
    # The locator learns from the validation split too (nothing is chosen on it for the
    # locator), never from the test split, where the report measures its box.
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["val"] and split["test"]
    assert cases["unet"] == {*split["train"], *split["val"], *UNLABELLED}
    assert sorted(cases["unet"]) == split["locator_train"]
    assert not cases["unet"] & set(split["test"])


def test_the_predictor_boxes_with_the_locator_and_explains_with_the_model(
    located_run: Path, partly_labelled: Path
) -> None:
    predictor = Predictor.load(located_run, device="cpu")
    assert predictor.locator is not None
    frame = partly_labelled / "5_1.jpg"
    image = Image.open(frame).convert("RGB")
    stand_in = _RectangleOutline(rows=slice(20, 30), cols=slice(4, 14))
    predictor.locator = stand_in
    explanation = predictor.explain(frame)
    pred = explanation.prediction
    assert pred.roi_source == "auto"
    # The box is the stand-in's (search, then close-up, through the locator's own
    # preprocessing), on the left of the frame where the rectangle is.
    expected, _ = find_nodule(
        stand_in,
        image,
        clin=None,
        search=predictor._locator_search,
        crop=predictor._locator_crop,
    )
    assert pred.roi == pytest.approx(expected)
    assert pred.roi[2] < 0.6 * image.width
    # The map is the model's (its outline-pooled crop around that box).
    assert explanation.cam.shape[-1] > 0 and np.isfinite(explanation.cam).all()
    # With no locator the model's own outline head boxes, as before: another box.
    own = Predictor.load(located_run, device="cpu")
    own.locator = None
    mine, _ = find_nodule(
        own.model,
        image,
        clin=None,
        search=own.outline_preprocessing,
        crop=own.preprocessing,
    )
    assert own.predict(frame).roi == (None if mine is None else pytest.approx(mine))
    assert mine != expected


def test_the_locator_counts_in_the_runs_identity(located_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(located_run, copy)
    before = Predictor.load(copy, device="cpu").model_identity()["sha256"]
    assert before == Predictor.load(located_run, device="cpu").model_identity()["sha256"]
    weights = copy / "locator" / "model.safetensors"
    state = load_run(copy / "locator").model.state_dict()
    from safetensors.torch import save_file

    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(weights), metadata={"format": "thyrocam-run", "arch": "resnet10n"})
    assert Predictor.load(copy, device="cpu").model_identity()["sha256"] != before


def test_a_damaged_locator_is_named(located_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    shutil.copytree(located_run, missing)
    shutil.rmtree(missing / "locator")
    with pytest.raises(CheckpointError, match="locator/ is missing"):
        load_run(missing)
    foreign = tmp_path / "foreign"
    shutil.copytree(located_run, foreign)
    meta = json.loads((foreign / "meta.json").read_text())
    meta["locator"] = "../elsewhere"
    (foreign / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="locator is '../elsewhere'"):
        load_run(foreign)
    blind = tmp_path / "blind"
    shutil.copytree(located_run, blind)
    loc_meta = json.loads((blind / "locator" / "meta.json").read_text())
    loc_meta["heads"] = ["malignancy", "descriptors"]
    (blind / "locator" / "meta.json").write_text(json.dumps(loc_meta))
    with pytest.raises(CheckpointError):
        load_run(blind)


def test_a_run_with_a_locator_may_be_replaced_but_not_a_foreign_folder(
    located_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(located_run, run)
    assert check_run_target(run) == run  # a run with its locator/ is a run
    (run / "locator" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="locator"):
        check_run_target(run)


def test_runs_without_a_locator_load_as_before(located_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(located_run, old)
    shutil.rmtree(old / "locator")
    meta = json.loads((old / "meta.json").read_text())
    del meta["locator"]
    (old / "meta.json").write_text(json.dumps(meta))
    info = load_run(old)
    assert info.locator is None
    assert Predictor.load(old, device="cpu").locator is None


def test_the_option_reaches_the_config_and_the_ddti_presets_have_one() -> None:
    from thyrocam.cli.train import add_train_options, train_config

    p = argparse.ArgumentParser()
    add_train_options(p)
    assert train_config(p.parse_args([])).locator is None
    assert train_config(p.parse_args(["--preset", "ddti"])).locator == "unet"
    assert train_config(p.parse_args(["--preset", "ddti-cv"])).locator == "unet"
    assert train_config(p.parse_args(["--preset", "ddti", "--locator", "none"])).locator is None
    assert train_config(p.parse_args(["--locator", "fpn"])).locator == "fpn"
    with pytest.raises(SystemExit):
        p.parse_args(["--locator", "yolo"])


def test_cv_scores_the_box_and_outline_of_each_folds_locator(
    partly_labelled: Path, tmp_path: Path
) -> None:
    from thyrocam.cv import cross_validate
    from thyrocam.cv.networks import _autobox_scores, fold_test_samples

    result = cross_validate(
        partly_labelled,
        out=tmp_path / "cv",
        folds=2,
        config=TINY,
        models=("image", "clinical"),
        cam_cases=2,
        save_runs=True,
    )
    assert result["n_locator_outline_only_images"] == len(outline_only_samples(partly_labelled))
    assert result["n_outline_only_images"] == 0  # the image networks did not ask for them
    labelled, _, _ = prepare_samples(partly_labelled)
    runs = tmp_path / "cv" / "runs"
    for fold in (0, 1):
        info = load_run(runs / f"fold{fold}-image")
        assert info.locator is not None and info.locator.model.decoder == "unet"
        assert load_run(runs / f"fold{fold}-clinical").locator is None
        # The fold's box numbers are the locator's, not the image network's.
        test_s = fold_test_samples(runs / f"fold{fold}-image", labelled)
        cfg = replace(TINY, modalities="image", seed=TINY.seed + fold)
        by_locator = _autobox_scores(info.locator.model, cfg, test_s)
        row = result["models"]["image"]["per_fold"][fold]
        assert row["autobox_iou"] == pytest.approx(by_locator["autobox_iou"], abs=1e-9)
