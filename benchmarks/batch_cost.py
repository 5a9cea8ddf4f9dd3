"""Per-image explain cost at batch sizes 1, 8, 16, 32: one forward + one gradient per batch."""

from __future__ import annotations

import torch

from benchmarks._common import Row, median_seconds
from thyrocam import GradCAM
from thyrocam.model import ThyroidNet, default_target_layer

__all__ = ["run"]


def run(*, size: int, batches: tuple[int, ...], repeats: int) -> list[Row]:
    torch.manual_seed(0)
    model = ThyroidNet(arch="resnet18", clinical_dim=28).eval()
    engine = GradCAM(model, default_target_layer(model))
    per_image: dict[int, float] = {}
    for b in batches:
        x = torch.randn(b, 3, size, size)
        clin = torch.rand(b, 28)
        per_image[b] = (
            median_seconds(
                lambda x=x, clin=clin: engine.compute(x, clinical=clin), repeats=repeats, warmup=1
            )
            / b
        )
    base = per_image[batches[0]]
    rows = []
    for b in batches:
        note = "target at B=16: <= 0.80x B=1" if b == 16 else ""
        rows.append(
            Row(
                f"explain cost per image, B={b} ({size} px)",
                f"{per_image[b] * 1000:.1f} ms ({per_image[b] / base:.2f}x B={batches[0]})",
                note,
            )
        )
    return rows
