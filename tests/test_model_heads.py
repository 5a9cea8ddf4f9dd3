"""ThyroidNet's outline and descriptor heads, their masked losses, and the run format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from thyrocam.checkpoint import load_run, save_run
from thyrocam.clinical import clinical_dim, default_cat_maps
from thyrocam.data import ThyroidDataset, prepare_samples
from thyrocam.data.dataset import descriptor_targets
from thyrocam.errors import InputError
from thyrocam.explain import GradCAM
from thyrocam.imaging import Preprocessing
from thyrocam.model import DESCRIPTOR_FIELDS, ThyroidNet, descriptor_classes_from
from thyrocam.train.losses import box_projection_loss, descriptor_loss, outline_loss

ALL_HEADS = ("malignancy", "outline", "descriptors")


def _net(arch: str = "resnet18", heads: tuple[str, ...] = ALL_HEADS, **kw) -> ThyroidNet:
    cat_maps = default_cat_maps()
    torch.manual_seed(0)
    return ThyroidNet(
        arch=arch,
        clinical_dim=clinical_dim(cat_maps),
        heads=heads,
        descriptor_classes=descriptor_classes_from(cat_maps),
        **kw,
    ).eval()


@pytest.mark.parametrize("arch", ["resnet18", "resnet10n"])
def test_forward_heads_shapes_order_and_malignancy_equals_forward(arch: str) -> None:
    cat_maps = default_cat_maps()
    model = _net(arch)
    x = torch.randn(3, 3, 64, 48)
    clin = torch.randn(3, clinical_dim(cat_maps))
    out = model.forward_heads(x, clin)
    assert list(out) == ["malignancy", "outline", *DESCRIPTOR_FIELDS]
    assert out["malignancy"].shape == (3, 1)
    assert out["outline"].shape == (3, 1, 64, 48)  # the input's resolution
    for field in DESCRIPTOR_FIELDS:
        assert out[field].shape == (3, len(cat_maps["fields"][field]))
    torch.testing.assert_close(out["malignancy"], model(x, clin))
    assert model(x, clin).shape == (3, 1)
    assert model.descriptor_classes == {f: len(cat_maps["fields"][f]) for f in DESCRIPTOR_FIELDS}


def test_heads_are_canonical_and_malignancy_only_has_no_extra_modules() -> None:
    model = _net(heads=("descriptors", "malignancy"))
    assert model.heads == ("malignancy", "descriptors")
    plain = _net(heads=("malignancy",))
    assert list(plain.forward_heads(torch.randn(1, 3, 64, 64))) == ["malignancy"]
    assert not any(k.startswith(("outline.", "descriptor_heads.")) for k in plain.state_dict())


@pytest.mark.parametrize(
    "heads, classes",
    [
        (("outline",), None),  # no malignancy
        (("malignancy", "shape"), None),  # unknown head
        (("malignancy", "malignancy"), None),
        (("malignancy", "descriptors"), None),  # no class counts
        (("malignancy", "descriptors"), {"composition": 3}),  # fields missing
    ],
)
def test_bad_heads_are_input_errors(heads, classes) -> None:
    with pytest.raises(InputError) as err:
        ThyroidNet(clinical_dim=28, heads=heads, descriptor_classes=classes)
    assert err.value.field in ("heads", "descriptor_classes")


def test_descriptor_heads_read_the_image_only() -> None:
    model = _net()
    x = torch.randn(2, 3, 64, 64)
    a = model.forward_heads(x, torch.zeros(2, model.clinical_dim))
    b = model.forward_heads(x, torch.randn(2, model.clinical_dim))
    for key in ("outline", *DESCRIPTOR_FIELDS):
        torch.testing.assert_close(a[key], b[key])
    assert not torch.allclose(a["malignancy"], b["malignancy"])


def test_gradcam_on_the_usual_layer_still_works_with_heads() -> None:
    model = _net()
    with GradCAM(model, model.cnn.layer4[-1].conv2) as engine:
        cam, idx = engine(torch.randn(1, 3, 64, 64))
    assert cam.shape == (64, 64) and idx == 0 and np.isfinite(cam).all()


def test_outline_loss_ignores_frames_without_outline() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    both = outline_loss(logits, target, torch.tensor([1.0, 0.0]))
    first = outline_loss(logits[:1], target[:1], torch.tensor([1.0]))
    torch.testing.assert_close(both, first)
    both.backward()
    assert logits.grad[1].abs().sum() == 0  # the frame without outline adds nothing
    assert logits.grad[0].abs().sum() > 0
    none = outline_loss(logits, target, torch.zeros(2))
    assert float(none.detach()) == 0.0
    # A perfect prediction scores lower than the opposite one.
    good = outline_loss(target * 20 - 10, target, torch.ones(2))
    bad = outline_loss(10 - target * 20, target, torch.ones(2))
    assert float(good.detach()) < 0.05 < float(bad.detach())


def test_box_projection_loss_weighs_the_masks_extent() -> None:
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:16, 8:20] = 1.0
    exact = target * 20 - 10
    has = torch.ones(2)
    assert float(box_projection_loss(exact, target, has)) < 0.01
    # Only the outline's one-pixel border: a poor mask, but exactly the right box.
    border = exact.clone()
    border[:, :, 9:15, 9:19] = -10.0
    assert float(outline_loss(border, target, has)) > 0.5
    assert float(box_projection_loss(border, target, has)) < 0.01
    # A thin tail from the nodule to the right: few pixels, a much wider box.
    tail = exact.clone()
    tail[:, :, 12, 20:30] = 10.0
    assert float(box_projection_loss(tail, target, has)) > 0.1
    # Frames without an outline add nothing and get no gradient.
    logits = tail.clone().requires_grad_(True)
    masked = box_projection_loss(logits, target, torch.tensor([1.0, 0.0]))
    masked.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    torch.testing.assert_close(masked, box_projection_loss(tail[:1], target[:1], has[:1]))
    assert float(box_projection_loss(tail, torch.zeros_like(target), torch.zeros(2))) == 0.0


def test_descriptor_loss_masks_unrecorded_fields() -> None:
    torch.manual_seed(0)
    classes = descriptor_classes_from(default_cat_maps())
    logits = {f: torch.randn(2, k, requires_grad=True) for f, k in classes.items()}
    targets = torch.tensor([[1, -1, 0, 2], [-1, -1, 3, -1]])
    loss, logs = descriptor_loss(logits, targets)
    assert set(logs) == {"composition", "margins", "calcifications"}  # echogenicity: none
    loss.backward()
    assert logits["echogenicity"].grad is None or logits["echogenicity"].grad.abs().sum() == 0
    assert logits["composition"].grad[1].abs().sum() == 0  # row 1 has no composition
    assert logits["composition"].grad[0].abs().sum() > 0
    expected = torch.nn.functional.cross_entropy(logits["composition"][:1], targets[:1, 0])
    assert logs["composition"] == pytest.approx(float(expected.detach()))
    empty, _ = descriptor_loss(logits, torch.full((2, 4), -1))
    assert float(empty.detach()) == 0.0


def test_multi_head_run_round_trips_and_old_runs_load(tmp_path: Path) -> None:
    cat_maps = default_cat_maps()
    pre = Preprocessing(mode="roi", size=64, min_side=200.0)
    model = _net()
    save_run(tmp_path / "new", model=model, cat_maps=cat_maps, preprocessing=pre, threshold=0.4)
    meta = json.loads((tmp_path / "new" / "meta.json").read_text())
    assert meta["heads"] == list(ALL_HEADS)
    assert meta["descriptor_classes"] == model.descriptor_classes
    info = load_run(tmp_path / "new")
    assert info.model.heads == ALL_HEADS
    assert info.preprocessing == pre
    x = torch.randn(2, 3, 64, 64)
    for key, value in model.forward_heads(x).items():
        torch.testing.assert_close(info.model.forward_heads(x)[key], value)

    old = _net(heads=("malignancy",))
    save_run(tmp_path / "old", model=old, cat_maps=cat_maps, preprocessing=pre, threshold=0.5)
    meta_path = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_path.read_text())
    # As written before the heads (and pooling and decoder choices) existed.
    del meta["heads"], meta["descriptor_classes"], meta["pool"], meta["decoder"]
    meta["preprocessing"].pop("min_side")
    meta_path.write_text(json.dumps(meta))
    info = load_run(tmp_path / "old")
    assert info.model.heads == ("malignancy",) and info.model.pool == "mean"
    assert info.model.decoder == "fpn"
    assert info.preprocessing.min_side == 0.0
    torch.testing.assert_close(info.model(x), old(x))


def test_outline_pooling_reads_through_the_detached_outline(tmp_path: Path) -> None:
    model = _net("resnet10n16", pool="outline")
    x, clin = torch.randn(2, 3, 96, 96), torch.randn(2, clinical_dim(default_cat_maps()))
    out = model.forward_heads(x, clin)
    torch.testing.assert_close(out["malignancy"], model(x, clin))
    for field in DESCRIPTOR_FIELDS:
        assert out[field].shape == (2, model.descriptor_classes[field])
    # The malignancy logit reads through the predicted outline ...
    before = model(x, clin).detach()
    with torch.no_grad():
        model.outline.out.bias += 3.0
    assert (model(x, clin) - before).abs().max() > 1e-4
    # ... but never trains it: no malignancy gradient reaches the outline head.
    model(x, clin).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.outline.parameters())
    assert model.cnn.layer4[-1].conv2.weight.grad.abs().sum() > 0
    with GradCAM(model, model.cnn.layer4[-1].conv2) as engine:
        cam, _ = engine(x[:1], clinical=clin[:1])
    assert cam.shape == (96, 96) and cam.max() == pytest.approx(1.0)
    save_run(tmp_path / "run", model=model, cat_maps=default_cat_maps(),
             preprocessing=Preprocessing(mode="roi", size=96), threshold=0.5)  # fmt: skip
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["pool"] == "outline"
    torch.testing.assert_close(load_run(tmp_path / "run").model(x, clin), model(x, clin))
    # A mean-pooled model's logit does not depend on the outline head.
    plain = _net("resnet10n16")
    before = plain(x, clin).detach()
    with torch.no_grad():
        plain.outline.out.bias += 3.0
    torch.testing.assert_close(plain(x, clin), before)


class _FixedOutline(torch.nn.Module):
    """An outline head that says: the nodule is the top-left quadrant of the input."""

    def forward(self, feats: list, *, size: tuple[int, int]) -> torch.Tensor:
        logits = torch.full((feats[0].shape[0], 1, *size), -30.0)
        logits[:, :, : size[0] // 2, : size[1] // 2] = 30.0
        return logits


def test_outline_pooling_averages_layer4_inside_the_outline() -> None:
    model = _net("resnet10n", pool="outline")
    model.outline = _FixedOutline()
    x = torch.randn(2, 3, 96, 96)
    last = model.forward_stages(x)[-1]  # (2, 128, 3, 3)
    # The quadrant covers cell (0, 0) wholly, a half of (0, 1) and (1, 0), a quarter of (1, 1).
    w = torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.0]])
    expected = (last * w).sum((2, 3)) / (w.sum() + 1e-3)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_image(x), model.img_proj(expected))
        torch.testing.assert_close(
            model.forward_heads(x)["composition"], model.descriptor_heads["composition"](expected)
        )


def test_a_pooling_preset_on_data_without_outlines_averages(caplog) -> None:
    from thyrocam.train import TrainConfig
    from thyrocam.train.recipe import build_model

    config = TrainConfig(pool="outline", weights=None, arch="resnet10n")
    cat_maps = default_cat_maps()
    pooled, _ = build_model(config, cat_maps=cat_maps, heads=("malignancy", "outline"))
    assert pooled.pool == "outline"
    with caplog.at_level("WARNING"):
        plain, _ = build_model(config, cat_maps=cat_maps, heads=("malignancy", "descriptors"))
    assert plain.pool == "mean" and "no outline head" in caplog.text


# The "fpn" decoder's parameters, as runs written before the "unet" one store them:
# they must keep loading with strict=True.
FPN_KEYS = {
    *(f"lateral.{i}.{p}" for i in range(4) for p in ("weight", "bias")),
    "smooth.0.weight",
    *(f"smooth.1.{p}" for p in ("weight", "bias", "running_mean", "running_var")),
    "smooth.1.num_batches_tracked",
    "out.weight",
    "out.bias",
}


def test_the_unet_decoder_refines_every_merge_and_round_trips(tmp_path: Path) -> None:
    assert set(_net("resnet10n").outline.state_dict()) == FPN_KEYS
    model = _net("resnet10n", pool="outline", decoder="unet")
    assert model.decoder == "unet" and len(model.outline.merge) == 3
    x, clin = torch.randn(2, 3, 96, 80), torch.randn(2, clinical_dim(default_cat_maps()))
    out = model.forward_heads(x, clin)
    assert out["outline"].shape == (2, 1, 96, 80)
    torch.testing.assert_close(out["malignancy"], model(x, clin))
    # Each merge's convolution is on the path to the mask (the finest one last).
    for k in range(3):
        before = model.forward_heads(x)["outline"]
        with torch.no_grad():
            model.outline.merge[k][0].weight.mul_(-1.0)
        assert (model.forward_heads(x)["outline"] - before).abs().max() > 1e-4
    with GradCAM(model, model.cnn.layer4[-1].conv2) as engine:
        cam, _ = engine(x[:1], clinical=clin[:1])
    assert cam.shape == (96, 80)
    save_run(tmp_path / "run", model=model, cat_maps=default_cat_maps(),
             preprocessing=Preprocessing(mode="roi", size=96), threshold=0.5)  # fmt: skip
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["decoder"] == "unet"
    loaded = load_run(tmp_path / "run").model
    assert loaded.decoder == "unet"
    for key, value in model.forward_heads(x, clin).items():
        torch.testing.assert_close(loaded.forward_heads(x, clin)[key], value)
    with pytest.raises(InputError) as err:
        _net(decoder="deeplab")
    assert err.value.field == "decoder" and "unet" in str(err.value)


def test_the_unet_decoder_trains_an_auxiliary_outline_with_the_same_loss() -> None:
    from thyrocam.train.losses import MultiTaskLoss

    model = _net("resnet10n", pool="outline", decoder="unet")
    assert set(model.outline_aux.state_dict()) == FPN_KEYS  # the light decoder
    assert not hasattr(_net("resnet10n"), "outline_aux")
    x = torch.randn(2, 3, 64, 64)
    assert "outline_aux" not in model.eval().forward_heads(x)  # inference: the heads only
    out = model.train().forward_heads(x)
    assert out["outline_aux"].shape == out["outline"].shape == (2, 1, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1.0
    batch = {
        "image": x,
        "clinical": torch.zeros(2, model.clinical_dim),
        "label": torch.tensor([0.0, 1.0]),
        "mask": mask,
        "has_mask": torch.tensor([1.0, 1.0]),
        "descriptors": torch.full((2, 4), -1),
        "frame": torch.randn(2, 3, 48, 48),
        "frame_mask": torch.zeros(2, 1, 48, 48),
    }
    loss = MultiTaskLoss()
    torch.manual_seed(1)
    before, logs = loss(model, batch)
    # The auxiliary head's logits enter the loss (on crops and frames alike) ...
    with torch.no_grad():
        model.outline_aux.out.bias += 5.0
    torch.manual_seed(1)
    after, _ = loss(model, batch)
    assert float(after.detach()) > float(before.detach()) + 0.5
    # ... and train the backbone beside the U-Net decoder.
    model.zero_grad()
    after.backward()
    assert model.outline_aux.out.weight.grad.abs().sum() > 0
    assert model.cnn.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_outline_pooling_needs_the_outline_head() -> None:
    with pytest.raises(InputError) as err:
        _net(heads=("malignancy", "descriptors"), pool="outline")
    assert err.value.field == "pool" and "outline head" in str(err.value)
    with pytest.raises(InputError) as err:
        _net(pool="max")
    assert err.value.field == "pool"


def test_min_side_keeps_nodule_size() -> None:
    small, large = (100, 100, 120, 120), (50, 50, 250, 250)
    pre = Preprocessing(mode="roi", size=64, margin=0.1, min_side=150.0)
    s0 = pre.source_box((560, 360), roi=small)
    s1 = pre.source_box((560, 360), roi=large)
    assert s0[2] - s0[0] == 150  # the small nodule stays small in the input
    assert s1[2] - s1[0] == 240  # a large one still gets its margin
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert "min_side" not in Preprocessing(mode="roi", size=64).to_dict()


def test_dataset_yields_masks_and_descriptor_targets(synth_dir: Path) -> None:
    samples, _, _ = prepare_samples(synth_dir)
    cat_maps = default_cat_maps()
    pre = Preprocessing(mode="roi", size=64)
    ds = ThyroidDataset(
        samples[:4],
        preprocessing=pre,
        cat_maps=cat_maps,
        targets=True,
        outline_input=Preprocessing(mode="letterbox", size=64),
    )
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert item["frame"].shape == (3, 64, 64) and item["frame_mask"].shape == (1, 64, 64)
    assert float(item["has_mask"]) == 1.0
    # The ROI crop is centred on the nodule: its mask covers the centre, not the corners.
    assert item["mask"][0, 32, 32] > 0.5 and item["mask"][0, 0, 0] == 0
    assert 0 < float(item["frame_mask"].mean()) < float(item["mask"].mean())
    expected = descriptor_targets(samples[0].clinical, cat_maps)
    assert item["descriptors"].tolist() == expected.tolist()
    for j, field in enumerate(DESCRIPTOR_FIELDS):
        value = samples[0].clinical[field]
        assert expected[j] == (cat_maps["fields"][field].index(value) if value else -1)
    # Without targets the Dataset still yields the (image, clinical, label) triple.
    plain = ThyroidDataset(samples[:1], preprocessing=pre, cat_maps=cat_maps)[0]
    assert isinstance(plain, tuple) and len(plain) == 3


def test_ultrasound_augmentation_moves_mask_with_image(synth_dir: Path) -> None:
    samples, _, _ = prepare_samples(synth_dir)
    torch.manual_seed(3)
    ds = ThyroidDataset(
        samples[:1],
        preprocessing=Preprocessing(mode="roi", size=64),
        cat_maps=default_cat_maps(),
        augment=True,
        augmentation="ultrasound",
        targets=True,
    )
    plain = ThyroidDataset(
        samples[:1],
        preprocessing=Preprocessing(mode="roi", size=64),
        cat_maps=default_cat_maps(),
        targets=True,
    )[0]
    items = [ds[0] for _ in range(4)]
    assert any(not torch.allclose(it["image"], items[0]["image"]) for it in items[1:])
    for it in items:
        m = it["mask"]
        assert 0.3 * float(plain["mask"].sum()) < float(m.sum()) < 3 * float(plain["mask"].sum())
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_a_descriptors_only_run_has_only_the_malignancy_head(
    synth_dir: Path, tmp_path: Path
) -> None:
    from thyrocam.train import TrainConfig, train

    config = TrainConfig(
        epochs=1, image_size=32, batch_size=8, preprocess="roi", progress=False,
        device="cpu", weights=None, modalities="clinical",
    )
    train(synth_dir, out=tmp_path / "clin", config=config)
    meta = json.loads((tmp_path / "clin" / "meta.json").read_text())
    assert meta["heads"] == ["malignancy"]  # though the data has outlines and descriptors
    assert "outline_input" not in meta
    history = json.loads((tmp_path / "clin" / "metrics.json").read_text())["history"][0]
    assert "train_outline" not in history
    train(synth_dir, out=tmp_path / "named", config=replace(config, heads=("outline",)))
    named = json.loads((tmp_path / "named" / "meta.json").read_text())
    assert named["heads"] == ["malignancy", "outline"]  # named heads are still trained


def test_training_writes_heads_and_outline_input(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["heads"] == list(ALL_HEADS)  # every head the synthetic data supports
    assert meta["outline_input"] == {"mode": "letterbox", "size": 64, "margin": 0.5}
    history = json.loads((tiny_run / "metrics.json").read_text())["history"][0]
    assert {"train_bce", "train_outline", "train_descriptors"} <= set(history)
    info = load_run(tiny_run)
    assert info.model.heads == ALL_HEADS
    # Each descriptor head's accuracy on the test split, beside the commonest value's.
    split = json.loads((tiny_run / "split.json").read_text())
    test_cases = set(split["test"])
    samples, _, _ = prepare_samples(meta["data"], label_source="auto")
    test = [s for s in samples if s.case_id in test_cases]
    quality = meta["descriptor_quality"]
    assert quality["split"] == "test" and set(quality["fields"]) == set(DESCRIPTOR_FIELDS)
    for f, q in quality["fields"].items():
        assert q["n"] == sum(s.clinical.get(f) is not None for s in test) > 0
        assert 0.0 <= q["accuracy"] <= 1.0 and 0.0 <= q["baseline"] <= 1.0


class _Constant(ThyroidNet):
    """Descriptor heads that always answer one fixed class per field (a known answer)."""

    answers: dict[str, int] = {}

    def forward_heads(self, img, clin=None):
        out = super().forward_heads(img, clin)
        for f, j in self.answers.items():
            logits = torch.full_like(out[f], -10.0)
            logits[:, j] = 10.0
            out[f] = logits
        return out


def test_descriptor_quality_counts_against_the_training_splits_commonest_value(
    synth_dir: Path,
) -> None:
    from thyrocam.clinical import fit_cat_maps
    from thyrocam.data.dataset import descriptor_targets
    from thyrocam.train.scoring import descriptor_quality

    samples, _, _ = prepare_samples(synth_dir, label_source="auto")
    train, test = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    cat_maps = fit_cat_maps([s.clinical for s in samples])
    truth_train = np.stack([descriptor_targets(s.clinical, cat_maps) for s in train])
    truth_test = np.stack([descriptor_targets(s.clinical, cat_maps) for s in test])
    commonest = [int(np.bincount(c[c >= 0]).argmax()) for c in truth_train.T]
    # Composition answers the training split's commonest value (a head that learnt
    # nothing: accuracy == baseline); the other fields a fixed other class.
    answers = {f: (commonest[j] if j == 0 else (commonest[j] + 1) % len(cat_maps["fields"][f]))
               for j, f in enumerate(DESCRIPTOR_FIELDS)}
    torch.manual_seed(0)
    net = _Constant(arch="resnet10n", clinical_dim=clinical_dim(cat_maps), heads=ALL_HEADS,
                    descriptor_classes=descriptor_classes_from(cat_maps))
    net.answers = answers
    quality = descriptor_quality(
        net.eval(), train=train, test=test, preprocessing=Preprocessing(mode="letterbox", size=64),
        cat_maps=cat_maps, device=torch.device("cpu"), batch_size=5,
    )
    for j, f in enumerate(DESCRIPTOR_FIELDS):
        t = truth_test[:, j][truth_test[:, j] >= 0]
        q = quality["fields"][f]
        assert q["n"] == len(t) > 0
        assert q["accuracy"] == pytest.approx(float((t == answers[f]).mean()))
        assert q["baseline"] == pytest.approx(float((t == commonest[j]).mean()))
        assert q["commonest"] == cat_maps["fields"][f][commonest[j]]
    composition = quality["fields"]["composition"]
    assert composition["accuracy"] == composition["baseline"]
    assert descriptor_quality(_net(heads=("malignancy",)), train=train, test=test,
                              preprocessing=Preprocessing(mode="letterbox", size=64),
                              cat_maps=cat_maps, device=torch.device("cpu")) is None


def test_init_from_copies_matching_weights_and_refuses_other_arch(tmp_path: Path) -> None:
    from thyrocam.train import TrainConfig
    from thyrocam.train.recipe import build_model

    cat_maps = default_cat_maps()
    source = _net()
    save_run(
        tmp_path / "run",
        model=source,
        cat_maps=cat_maps,
        preprocessing=Preprocessing(mode="roi", size=64),
        threshold=0.5,
    )
    config = TrainConfig(weights=None, init_from=str(tmp_path / "run"))
    model, init = build_model(config, cat_maps=cat_maps, heads=("malignancy", "outline"))
    assert init.startswith("run:run")
    torch.testing.assert_close(model.cnn.conv1.weight, source.cnn.conv1.weight)
    torch.testing.assert_close(model.outline.out.weight, source.outline.out.weight)
    with pytest.raises(InputError) as err:
        build_model(
            TrainConfig(weights=None, arch="resnet10n", init_from=str(tmp_path / "run")),
            cat_maps=cat_maps,
            heads=("malignancy",),
        )
    assert err.value.field == "init_from"


@pytest.mark.parametrize("shift,zoom", [(0.15, 1.25), (0.5, 2.0)])
def test_roi_jitter_moves_and_scales_the_box_within_its_bounds(
    synth_dir: Path, shift: float, zoom: float
) -> None:
    samples, _, _ = prepare_samples(synth_dir)
    ds = ThyroidDataset(
        samples[:1],
        preprocessing=Preprocessing(mode="roi", size=64),
        cat_maps=default_cat_maps(),
        augment=True,
        roi_jitter=(shift, zoom),
    )
    x0, y0, x1, y1 = box = (100.0, 80.0, 160.0, 120.0)
    jittered = np.array([ds._jitter_box(box) for _ in range(2000)])
    cx = (jittered[:, 0] + jittered[:, 2]) / 2 - (x0 + x1) / 2
    cy = (jittered[:, 1] + jittered[:, 3]) / 2 - (y0 + y1) / 2
    side = (jittered[:, 2] - jittered[:, 0]) / (x1 - x0)
    assert np.abs(cx).max() <= shift * (x1 - x0) + 1e-9
    assert np.abs(cy).max() <= shift * (y1 - y0) + 1e-9
    assert side.min() >= 0.85 - 1e-9 and side.max() <= zoom + 1e-9
    # the whole range is used: the bounds are reached, not only respected
    assert np.abs(cx).max() > 0.9 * shift * (x1 - x0) and side.max() > zoom - 0.05
    heights = (jittered[:, 3] - jittered[:, 1]) / (y1 - y0)
    assert np.allclose(heights, side)  # one scale for both sides: the aspect ratio is kept
