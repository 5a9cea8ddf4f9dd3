"""The tiny recipe the training tests share: seconds on CPU, with every head."""

from __future__ import annotations

from thyrocam.train import TrainConfig

TINY_EVERY_HEAD = TrainConfig(
    epochs=1,
    image_size=32,
    outline_size=48,
    batch_size=8,
    preprocess="roi",
    arch="resnet10n",
    device="cpu",
    weights=None,
    progress=False,
)
