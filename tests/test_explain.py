"""The CAM engine: equality with pytorch-grad-cam, thread safety, no side effects."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from thyrocam import GradCAM, overlay_cam_on_pil
from thyrocam.errors import InputError
from thyrocam.model import ThyroidNet, default_target_layer


def _minmax(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return (a - a.min()) / (a.max() - a.min())


class _OneInput(nn.Module):
    """pytorch-grad-cam calls model(x); bind the descriptors for it."""

    def __init__(self, model: nn.Module, clin: torch.Tensor | None) -> None:
        super().__init__()
        self.model, self.clin = model, clin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.clin)


def _model(arch: str, seed: int = 0) -> ThyroidNet:
    torch.manual_seed(seed)
    return ThyroidNet(arch=arch, clinical_dim=28).eval()


# Seeds whose random-init model gives a map with positive evidence for the
# malignant logit at this input (many random ResNets give an all-zero map).
@pytest.mark.parametrize("arch,seed", [("resnet18", 2), ("resnet50", 0)])
@pytest.mark.parametrize("with_clinical", [False, True])
def test_gradcam_equals_pytorch_grad_cam(arch: str, seed: int, with_clinical: bool) -> None:
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    model = _model(arch, seed=seed)
    layer = model.cnn.layer4[-1].conv2 if arch == "resnet18" else model.cnn.layer4[-1].conv3
    assert layer is default_target_layer(model)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 128, 128)
    clin = torch.rand(1, 28) if with_clinical else None

    ours, used_idx = GradCAM(model, layer)(x, clinical=clin)
    assert ours.shape == (128, 128) and ours.dtype == np.float32 and used_idx == 0
    assert ours.max() == 1.0 and ours.min() == 0.0, "the comparison needs a non-trivial map"
    assert all(p.grad is None for p in model.parameters())

    with ReferenceGradCAM(model=_OneInput(model, clin), target_layers=[layer]) as ref_engine:
        ref = ref_engine(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)])[0]
    assert np.abs(_minmax(ours) - _minmax(ref)).max() < 1e-4


def test_benign_target_is_the_negated_logit() -> None:
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    model = _model("resnet18", seed=2)
    layer = model.cnn.layer4[-1].conv2
    torch.manual_seed(1)
    x = torch.randn(1, 3, 128, 128)
    benign, idx = GradCAM(model, layer)(x, target="benign")
    malignant, _ = GradCAM(model, layer)(x)
    with ReferenceGradCAM(model=_OneInput(model, None), target_layers=[layer]) as ref_engine:
        ref = ref_engine(input_tensor=x, targets=[BinaryClassifierOutputTarget(0)])[0]
    assert idx == 0
    assert benign.max() == 1.0
    assert np.abs(_minmax(benign) - _minmax(ref)).max() < 1e-4
    assert not np.allclose(benign, malignant)


def test_two_class_output_honours_class_idx() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    engine = GradCAM(net, net[0])
    cams, used = engine(x, class_idx=1)
    assert cams.shape == (2, 16, 16) and used == [1, 1]
    _, used_default = engine(x)
    assert used_default == net(x).argmax(1).tolist()
    with pytest.raises(InputError, match="class_idx"):
        engine(x, class_idx=2)


def test_concurrent_calls_on_one_model_match_sequential() -> None:
    model = _model("resnet18", seed=5)
    layer = model.cnn.layer4[-1].conv2
    engine = GradCAM(model, layer)
    torch.manual_seed(2)
    inputs = [torch.randn(1, 3, 64, 64) for _ in range(4)]
    clins = [torch.rand(1, 28) for _ in range(4)]
    # One intra-op thread for the reference and the concurrent calls alike: a different
    # thread count sums convolutions in another order (~2e-5 apart), which is not what
    # this test is about.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    expected = [engine(x, clinical=c)[0] for x, c in zip(inputs, clins, strict=True)]
    assert not np.allclose(expected[0], expected[1])

    errors: list[BaseException] = []
    worst = [0.0]
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(tid: int) -> None:
        try:
            barrier.wait()
            for call in range(50):
                k = (tid + call) % 4
                cam, _ = engine(inputs[k], clinical=clins[k])
                with lock:
                    worst[0] = max(worst[0], float(np.abs(cam - expected[k]).max()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        torch.set_num_threads(threads_before)
    assert not errors, errors[:3]
    assert worst[0] <= 1e-5
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_no_grad_frozen_params_and_training_mode_are_handled() -> None:
    model = _model("resnet18", seed=6)
    for p in model.parameters():
        p.requires_grad_(False)
    layer = model.cnn.layer4[-1].conv2
    x = torch.randn(1, 3, 64, 64)
    reference, _ = GradCAM(model, layer)(x)
    model.train()
    with torch.no_grad():
        cam, _ = GradCAM(model, layer)(x)
    assert model.training, "train mode must be restored"
    np.testing.assert_allclose(cam, reference, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_when_the_model_raises() -> None:
    model = _model("resnet18")
    layer = model.cnn.layer4[-1].conv2
    with GradCAM(model, layer) as engine, pytest.raises(InputError, match="clin"):
        engine(torch.randn(1, 3, 64, 64), clinical=torch.zeros(1, 5))
    assert not layer._forward_hooks


def test_proxy_model_can_replace_engine_model() -> None:
    model = _model("resnet18", seed=8)
    layer = model.cnn.layer4[-1].conv2
    x, clin = torch.randn(1, 3, 64, 64), torch.rand(1, 28)
    engine = GradCAM(model, layer)
    direct, _ = engine(x, clinical=clin)
    engine.model = _OneInput(model, clin)  # as users of the seed already do
    proxied, _ = engine(x)
    np.testing.assert_allclose(proxied, direct, atol=1e-6)


def test_all_zero_map_is_reported_not_nan() -> None:
    class Dead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)
            self.fc = nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x) * 0.0).mean((2, 3)))

    net = Dead().eval()
    res = GradCAM(net, net.conv).compute(torch.randn(1, 3, 8, 8))
    assert res.all_zero == [True]
    assert np.isfinite(res.cam).all() and (res.cam == 0).all()


def test_overlay_is_rgb_at_the_image_size_and_follows_alpha() -> None:
    from PIL import Image

    img = Image.new("L", (120, 80), 100)
    cam = np.zeros((80, 120), np.float32)
    cam[40, 60] = 1.0
    out = overlay_cam_on_pil(img, cam, alpha=0.0)
    assert out.mode == "RGB" and out.size == (120, 80)
    assert np.asarray(out)[0, 0].tolist() == [100, 100, 100]
    hot = np.asarray(overlay_cam_on_pil(img, cam, alpha=1.0))
    assert hot[40, 60, 0] > 100 and hot[40, 60, 2] < 100  # jet's top is red, in RGB order
    small = overlay_cam_on_pil(img, np.ones((7, 7), np.float32), alpha=0.5)
    assert small.size == (120, 80)
    with pytest.raises(InputError, match="alpha"):
        overlay_cam_on_pil(img, cam, alpha=1.5)
