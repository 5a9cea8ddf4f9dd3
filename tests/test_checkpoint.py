"""ThyroidNet shapes and the safetensors + JSON run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from thyrocam.checkpoint import load_run, save_run
from thyrocam.clinical import default_cat_maps
from thyrocam.errors import CheckpointError, InputError
from thyrocam.imaging import Preprocessing
from thyrocam.model import ThyroidNet, load_backbone_weights


@pytest.mark.parametrize("arch,feat", [("resnet18", 512), ("resnet50", 2048)])
def test_model_shapes_and_missing_clinical(arch: str, feat: int) -> None:
    torch.manual_seed(0)
    model = ThyroidNet(arch=arch, clinical_dim=28).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model.image_dim == feat
    assert model(x).shape == (2, 1)
    with torch.no_grad():
        # clin=None means every descriptor missing, which encodes to zeros
        torch.testing.assert_close(model(x), model(x, torch.zeros(2, 28)))
        assert not torch.allclose(model(x), model(x, torch.ones(2, 28)))
    with pytest.raises(InputError, match="clin"):
        model(x, torch.zeros(2, 5))


def test_modalities_ablation_ignores_the_other_input() -> None:
    torch.manual_seed(0)
    x, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    clin, clin2 = torch.rand(2, 28), torch.rand(2, 28)
    with torch.no_grad():
        image_only = ThyroidNet(modalities="image").eval()
        torch.testing.assert_close(image_only(x, clin), image_only(x, clin2))
        clinical_only = ThyroidNet(modalities="clinical").eval()
        torch.testing.assert_close(clinical_only(x, clin), clinical_only(x2, clin))
    with pytest.raises(InputError, match="modalities"):
        ThyroidNet(modalities="audio")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="arch"):
        ThyroidNet(arch="vgg16")  # type: ignore[arg-type]


def test_backbone_weights_never_download(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = ThyroidNet()
    assert load_backbone_weights(model, weights="imagenet") == "scratch"
    assert load_backbone_weights(model, weights=None) == "scratch"
    # a local state dict of the torchvision ResNet is accepted
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    path = tmp_path / "r18.safetensors"
    save_file(ref.state_dict(), str(path))
    assert load_backbone_weights(model, weights=path) == "imagenet:r18.safetensors"
    torch.testing.assert_close(model.cnn.conv1.weight, ref.conv1.weight)
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_weights(model, weights=tmp_path / "nope.pth")


def _save(tmp_path: Path) -> tuple[Path, ThyroidNet]:
    torch.manual_seed(0)
    model = ThyroidNet(arch="resnet18", clinical_dim=28).eval()
    run = save_run(
        tmp_path / "run",
        model=model,
        cat_maps=default_cat_maps(),
        preprocessing=Preprocessing(mode="roi", size=96, margin=0.4),
        threshold=0.42,
    )
    return run, model


def test_run_round_trip(tmp_path: Path) -> None:
    run, model = _save(tmp_path)
    assert sorted(p.name for p in run.iterdir()) == [
        "cat_maps.json",
        "meta.json",
        "model.safetensors",
    ]
    info = load_run(run)
    assert info.threshold == pytest.approx(0.42)
    assert info.preprocessing == Preprocessing(mode="roi", size=96, margin=0.4)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["arch"] == "resnet18" and "torch" in meta["versions"]
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(info.model(x), model(x))
    assert load_run(run / "model.safetensors").path == run


def test_stride_16_variant_round_trips_and_keeps_a_finer_layer4(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kw = dict(clinical_dim=28, heads=("malignancy", "outline"))
    fine, coarse = ThyroidNet(arch="resnet10n16", **kw).eval(), ThyroidNet(arch="resnet10n", **kw)
    # Same parameters, so only the arch name in meta.json can tell the two apart.
    assert fine.state_dict().keys() == coarse.state_dict().keys()
    grids: list[tuple[int, ...]] = []
    for net in (fine, coarse):
        hook = net.cnn.layer4.register_forward_hook(
            lambda m, i, o: grids.append(tuple(o.shape[-2:]))
        )
        net(torch.zeros(1, 3, 96, 96))
        hook.remove()
    assert grids == [(6, 6), (3, 3)]
    run = tmp_path / "run"
    save_run(run, model=fine, cat_maps=default_cat_maps(),
             preprocessing=Preprocessing(mode="roi", size=96), threshold=0.5)  # fmt: skip
    assert json.loads((run / "meta.json").read_text())["arch"] == "resnet10n16"
    loaded = load_run(run).model
    assert loaded.arch == "resnet10n16"
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_heads(x), fine.forward_heads(x))


def test_checkpoint_is_not_a_pickle(tmp_path: Path) -> None:
    run, _ = _save(tmp_path)
    head = (run / "model.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker
    assert b"PK" not in head[:2]  # not a torch zip archive


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda run: (run / "model.safetensors").write_bytes(b"garbage" * 10), "safetensors"),
        (lambda run: (run / "meta.json").write_text("{not json"), "JSON"),
        (lambda run: (run / "model.safetensors").unlink(), "model.safetensors"),
        (lambda run: (run / "cat_maps.json").write_text("[]"), "cat_maps"),
    ],
    ids=["corrupt-weights", "corrupt-meta", "no-weights", "bad-cat-maps"],
)
def test_damaged_runs_give_clear_errors(tmp_path: Path, damage, match: str) -> None:
    run, _ = _save(tmp_path)
    damage(run)
    with pytest.raises(CheckpointError, match=match):
        load_run(run)


def test_mismatched_architecture_is_a_clear_error(tmp_path: Path) -> None:
    run, _ = _save(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["arch"] = "resnet50"
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match a resnet50"):
        load_run(run)
    shutil.rmtree(run)
    with pytest.raises(CheckpointError, match="not a run folder"):
        load_run(run)
