"""What every benchmark shares: the machine's description, a tiny run, synthetic data, timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Row", "describe_machine", "make_run", "make_data", "median_seconds", "percentile"]


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, the number, and what to read it against."""

    name: str
    value: str
    note: str = ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def describe_machine() -> str:
    """CPU, cores, memory, GPU, torch and the load average (shared machines vary)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = _memory_gib()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    parts = [
        _cpu_model(),
        f"{cores} cores",
        f"{mem:.0f} GiB" if mem else "",
        gpu,
        f"Python {platform.python_version()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"load average {load}",
    ]
    return ", ".join(p for p in parts if p)


def make_run(out: Path, *, size: int, mode: str = "letterbox", seed: int = 0) -> Path:
    """A run folder with a freshly initialised ResNet18 (timings do not depend on training)."""
    from thyrocam.checkpoint import save_run
    from thyrocam.clinical import default_cat_maps
    from thyrocam.clinical.encoding import clinical_dim
    from thyrocam.imaging import Preprocessing
    from thyrocam.model import ThyroidNet

    torch.manual_seed(seed)
    cat_maps = default_cat_maps()
    model = ThyroidNet(arch="resnet18", clinical_dim=clinical_dim(cat_maps))
    pre = Preprocessing(mode=mode, size=size)  # type: ignore[arg-type]
    return save_run(out, model=model, cat_maps=cat_maps, preprocessing=pre, threshold=0.5)


def make_data(out: Path, *, cases: int, seed: int = 0) -> Path:
    """A synthetic DDTI-format folder (560x360 frames, outlines, labels.csv)."""
    from thyrocam.data import make_synthetic_ddti

    make_synthetic_ddti(out, cases=cases, seed=seed)
    return out


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
