"""Training writes a complete, seeded run; evaluation scores only held-out cases."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from thyrocam.errors import InputError
from thyrocam.metrics import binary_metrics, roc_auc, youden_threshold
from thyrocam.model import resolve_device
from thyrocam.train import TrainConfig, train


def test_run_folder_and_split_by_case(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["preprocessing"] == {"mode": "letterbox", "size": 64, "margin": 0.5}
    assert meta["label_definition"].startswith("explicit")
    assert meta["backbone_init"] == "scratch"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and metrics["best_epoch"] == 1
    assert 0.0 <= metrics["validation"]["threshold"] <= 1.0
    split = json.loads((tiny_run / "split.json").read_text())
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_training_is_seeded(synth_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1, image_size=32, batch_size=8, progress=False, device="cpu", weights=None, seed=11
    )
    train(synth_dir, out=tmp_path / "a", config=config)
    train(synth_dir, out=tmp_path / "b", config=config)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_metrics_against_hand_computed_values() -> None:
    probs = [0.1, 0.4, 0.35, 0.8]
    labels = [0, 0, 1, 1]
    assert roc_auc(probs, labels) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    m = binary_metrics(probs, labels, threshold=0.35)
    assert m["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.5 and m["accuracy"] == 0.75
    assert youden_threshold(probs, labels) in (0.35, 0.8)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(InputError, match="device"):
        resolve_device("tpu")


def test_lr_schedule_warms_up_decays_and_can_be_compressed() -> None:
    from thyrocam.train import _WarmupCosine

    schedule = _WarmupCosine(total_steps=100)
    assert schedule(0) == pytest.approx(0.02)
    assert schedule(15) == pytest.approx(1.0)
    assert schedule(60) < schedule(30) < 1.0
    assert schedule(100) == pytest.approx(0.02)
    schedule.total_steps = 50  # a time budget shortened the run: decay completes sooner
    assert schedule(50) == pytest.approx(0.02)


def test_presets_fix_the_number_of_epochs() -> None:
    from thyrocam.train import PRESETS

    for name, values in PRESETS.items():
        assert isinstance(values["epochs"], int) and values["epochs"] >= 1, name
        TrainConfig(**values)  # every preset is a valid configuration


def test_the_box_weight_reaches_the_loss_from_the_command_line() -> None:
    import argparse

    from thyrocam.cli.train import add_train_options, train_config
    from thyrocam.train import PRESETS
    from thyrocam.train.losses import MultiTaskLoss
    from thyrocam.train.recipe import step_loss_for

    p = argparse.ArgumentParser()
    add_train_options(p)
    preset = train_config(p.parse_args(["--preset", "ddti"]))
    assert preset.outline_box_weight == PRESETS["ddti"]["outline_box_weight"] > 0
    given = train_config(p.parse_args(["--preset", "ddti", "--outline-box-weight", "2.5"]))
    assert given.outline_box_weight == 2.5
    model = _tiny_heads_model()
    loss = step_loss_for(given, model, [])
    assert isinstance(loss, MultiTaskLoss) and loss.box_weight == 2.5
    assert step_loss_for(TrainConfig(), model, []).box_weight == 0.0


def test_the_decoder_reaches_the_model_from_the_command_line(capsys) -> None:
    import argparse

    from thyrocam.cli.train import add_train_options, train_config
    from thyrocam.clinical import default_cat_maps
    from thyrocam.train.recipe import build_model

    p = argparse.ArgumentParser()
    add_train_options(p)
    assert train_config(p.parse_args([])).decoder == "fpn"
    assert train_config(p.parse_args(["--preset", "ddti"])).decoder == "fpn"
    given = train_config(p.parse_args(["--preset", "tiny", "--decoder", "unet"]))
    model, _ = build_model(
        replace(given, weights=None, arch="resnet10n"),
        cat_maps=default_cat_maps(),
        heads=("malignancy", "outline"),
    )
    assert model.decoder == "unet" and hasattr(model.outline, "merge")
    with pytest.raises(SystemExit):
        p.parse_args(["--decoder", "deeplab"])
    err = capsys.readouterr().err
    assert "--decoder" in err and "'deeplab'" in err and "unet" in err


def _tiny_heads_model():
    from thyrocam.clinical import clinical_dim, default_cat_maps
    from thyrocam.model import ThyroidNet, descriptor_classes_from

    cat_maps = default_cat_maps()
    return ThyroidNet(
        arch="resnet10n",
        clinical_dim=clinical_dim(cat_maps),
        heads=("malignancy", "outline", "descriptors"),
        descriptor_classes=descriptor_classes_from(cat_maps),
    )


def test_metrics_record_whether_the_time_cap_cut_training(
    tiny_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["epochs_planned"] == metrics["epochs_run"] == 1
    assert metrics["stopped_by_time_budget"] is False
    config = TrainConfig(
        epochs=3,
        image_size=32,
        batch_size=8,
        progress=False,
        device="cpu",
        weights=None,
        max_minutes=1e-6,  # no second epoch fits
    )
    metrics = train(synth_dir, out=tmp_path / "capped", config=config)
    assert metrics["epochs_planned"] == 3 and metrics["epochs_run"] == 1
    assert metrics["stopped_by_time_budget"] is True
    assert len(metrics["history"]) == 1
    saved = json.loads((tmp_path / "capped" / "metrics.json").read_text())
    assert saved["stopped_by_time_budget"] is True and saved["epochs_run"] == 1


def test_step_loss_hook_and_dict_batches(synth_dir: Path) -> None:
    """The fit loop takes any step loss, and batches may be dicts."""
    import torch

    from thyrocam.clinical import clinical_dim, fit_cat_maps
    from thyrocam.data import ThyroidDataset, prepare_samples
    from thyrocam.model import ThyroidNet
    from thyrocam.train import MalignancyLoss, SumOfLosses, train_one_epoch

    samples, _, _ = prepare_samples(synth_dir)
    cat_maps = fit_cat_maps([s.clinical for s in samples])
    ds = ThyroidDataset(
        samples[:16], preprocessing=TrainConfig(image_size=32).preprocessing(), cat_maps=cat_maps
    )

    def as_dict(items):
        img, clin, y = torch.utils.data.default_collate(items)
        return {"image": img, "clinical": clin, "label": y, "extra": torch.ones(len(y))}

    loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=as_dict)
    seen = []

    def extra_loss(model, batch):
        seen.append(batch["extra"].device.type)
        return batch["extra"].sum() * 0.0 + 0.5, {"n": float(len(batch["extra"]))}

    torch.manual_seed(0)
    model = ThyroidNet(clinical_dim=clinical_dim(cat_maps))
    step_loss = SumOfLosses(
        [("bce", 1.0, MalignancyLoss(pos_weight=2.0)), ("extra", 0.1, extra_loss)]
    )
    stats = train_one_epoch(
        model,
        loader,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        scheduler=None,
        device=torch.device("cpu"),
        step_loss=step_loss,
        progress=False,
    )
    assert seen == ["cpu", "cpu"]
    assert stats["extra"] == pytest.approx(0.5) and stats["extra.n"] == pytest.approx(8.0)
    assert stats["loss"] == pytest.approx(stats["bce"] + 0.05, rel=1e-5)


def test_the_jitter_and_frame_share_reach_training_from_the_command_line(capsys) -> None:
    import argparse

    from thyrocam.cli.train import add_train_options, train_config
    from thyrocam.train.recipe import step_loss_for, train_dataset

    p = argparse.ArgumentParser()
    add_train_options(p)
    default = train_config(p.parse_args([]))
    assert (default.roi_shift, default.roi_zoom, default.outline_frame_share) == (0.15, 1.25, 0.5)
    args = ["--roi-shift", "0.3", "--roi-zoom", "1.5", "--outline-frame-share", "0.75"]
    given = train_config(p.parse_args(args))
    assert step_loss_for(given, _tiny_heads_model(), []).frame_share == 0.75
    ds = train_dataset(given, [], cat_maps={}, heads=("malignancy",), seed=0)
    assert ds.roi_jitter == (0.3, 1.5)
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            p.parse_args(["--outline-frame-share", bad])
        assert bad in capsys.readouterr().err
    for option, bad in (("--roi-zoom", "0.5"), ("--roi-zoom", "x"), ("--roi-shift", "-1")):
        with pytest.raises(SystemExit):
            p.parse_args([option, bad])
        err = capsys.readouterr().err
        assert option in err and repr(bad) in err


def test_the_frame_share_splits_the_outline_term_between_crops_and_frames() -> None:
    from thyrocam.train.losses import MultiTaskLoss, outline_loss

    torch.manual_seed(0)
    model = _tiny_heads_model().eval()  # eval: BatchNorm does not depend on the batch
    n, s = 2, 32
    batch = {
        "image": torch.randn(n, 3, s, s),
        "clinical": torch.zeros(n, model.clinical_dim),
        "label": torch.tensor([0.0, 1.0]),
        "mask": (torch.rand(n, 1, s, s) > 0.7).float(),
        "has_mask": torch.ones(n),
        "descriptors": torch.full((n, 4), -1, dtype=torch.long),
        "frame": torch.randn(n, 3, s, s),
        "frame_mask": (torch.rand(n, 1, s, s) > 0.9).float(),
    }
    with torch.no_grad():
        crop = float(outline_loss(model.forward_heads(batch["image"])["outline"], batch["mask"],
                                  batch["has_mask"]))
        frame = float(outline_loss(model.forward_heads(batch["frame"])["outline"],
                                   batch["frame_mask"], batch["has_mask"]))
        for share in (0.0, 0.5, 0.75, 1.0):
            _, logs = MultiTaskLoss(frame_share=share)(model, batch)
            assert logs["outline"] == pytest.approx((1 - share) * crop + share * frame, rel=1e-5)
    assert abs(crop - frame) > 1e-3  # the shares are told apart
