"""CUDA rows (only where a GPU exists): batch-explain latency and the bf16-vs-fp32 CAM difference.

The batch path (:class:`thyrocam.batch.BatchExplainer`) runs channels_last under
autocast (bf16 where supported) and computes the CAM in float32 from the
autocast activations; this compares it with the same engine in plain fp32.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import Row

__all__ = ["run"]


def _timed(fn, *, repeats: int) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def run(run_dir: Path, *, batch: int, repeats: int) -> list[Row]:
    if not torch.cuda.is_available():
        return []
    from thyrocam.batch import BatchExplainer

    explainer = BatchExplainer(run_dir, device="cuda")
    size = explainer.input_size
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    clin = torch.zeros(batch, explainer.predictor.model.clinical_dim)
    mixed = explainer.compute(x, clin)
    # The same engine without autocast: the fp32 reference.
    plain = explainer.engine.compute(x.cuda(), clinical=clin.cuda(), target="malignant")
    diff = float(np.abs(mixed.cam - plain.cam).max())
    t_mixed = _timed(lambda: explainer.compute(x, clin), repeats=repeats)
    t_plain = _timed(
        lambda: explainer.engine.compute(x.cuda(), clinical=clin.cuda()), repeats=repeats
    )
    name = torch.cuda.get_device_name(0)
    dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return [
        Row(f"GPU explain per image, B={batch}, {dtype} autocast ({name})",
            f"{t_mixed / batch * 1000:.2f} ms", f"fp32: {t_plain / batch * 1000:.2f} ms"),
        Row(f"GPU CAM {dtype} vs fp32, max |difference|", f"{diff:.1e}", "maps in [0, 1]"),
    ]  # fmt: skip
