"""Explain vs predict latency, and our Grad-CAM vs pytorch-grad-cam's, side by side.

Measured in one process on the same model, input and threads, interleaved so
that machine noise hits all three alike, after checking that both libraries
give the same map. Targets: explain/predict <= 1.05 and a speed-up over
pytorch-grad-cam >= 2.5x (CPU, ResNet18, 224 px, batch 1).

    python benchmarks/explain_vs_predict.py [--size 224] [--arch resnet18] [--repeats 30]

Also part of the suite (``python -m benchmarks``), through :func:`measure`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
from torch import nn

from thyrocam import GradCAM
from thyrocam.model import ThyroidNet, default_target_layer


class OneInput(nn.Module):
    def __init__(self, model: nn.Module, clin: torch.Tensor) -> None:
        super().__init__()
        self.model, self.clin = model, clin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.clin)


def measure(
    *, arch: str = "resnet18", size: int = 224, repeats: int = 30, device: str = "cpu"
) -> dict[str, float]:
    """Median seconds of predict, explain and pytorch-grad-cam at batch 1; the maps' max |diff|."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = ThyroidNet(arch=arch, clinical_dim=28).eval().to(dev)
    layer = default_target_layer(model)
    x = torch.randn(1, 3, size, size, device=dev)
    clin = torch.rand(1, 28, device=dev)
    ours = GradCAM(model, layer)
    reference = ReferenceGradCAM(model=OneInput(model, clin), target_layers=[layer])
    targets = [BinaryClassifierOutputTarget(1)]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def predict() -> None:
        with torch.no_grad():
            model(x, clin)
        sync()

    def explain() -> None:
        ours.compute(x, clinical=clin)
        sync()

    def pgc() -> None:
        reference(input_tensor=x, targets=targets)
        sync()

    # Equal maps first: a speed-up between different maps would mean nothing.
    diff = float(
        np.abs(
            ours.compute(x, clinical=clin).cam[0] - reference(input_tensor=x, targets=targets)[0]
        ).max()
    )
    runs = {"predict": predict, "explain": explain, "pytorch-grad-cam": pgc}
    for fn in runs.values():  # warm-up: allocator, kernels, first-call costs
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    reference.__exit__(None, None, None)
    result = {name: statistics.median(ts) for name, ts in times.items()}
    result["max_map_diff"] = diff
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", choices=("resnet18", "resnet50"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    med = measure(arch=args.arch, size=args.size, repeats=args.repeats, device=args.device)
    print(
        f"{args.arch}, {args.size} px, batch 1, {args.device}, {args.threads} threads, "
        f"median of {args.repeats} interleaved runs"
    )
    for name in ("predict", "explain", "pytorch-grad-cam"):
        print(f"  {name:<20} {med[name] * 1000:8.1f} ms")
    print(f"maps: max |ours - pytorch-grad-cam| = {med['max_map_diff']:.1e}")
    ratio = med["explain"] / med["predict"]
    speedup = med["pytorch-grad-cam"] / med["explain"]
    print(f"explain / predict              = {ratio:.2f}x   (target <= 1.05)")
    print(f"pytorch-grad-cam / ours        = {speedup:.2f}x   (target >= 2.5)")
    print(f"pytorch-grad-cam / predict     = {med['pytorch-grad-cam'] / med['predict']:.2f}x")


if __name__ == "__main__":
    main()
