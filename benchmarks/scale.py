"""Scale-out: explain-batch local vs Ray (2 actors), training with 1 vs 2 torchrun processes."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import Row

__all__ = ["explain_batch_rows", "training_rows"]


def explain_batch_rows(run_dir: Path, data: Path, *, batch_size: int, tmp: Path) -> list[Row]:
    """images/s of the same job, local (main process) and on a local Ray cluster (2 actors)."""
    import ray

    from thyrocam.batch import explain_batch

    t0 = time.perf_counter()
    local = explain_batch(run_dir, data, out=tmp / "eb_local", batch_size=batch_size,
                          device="cpu", progress=False)  # fmt: skip
    local_s = time.perf_counter() - t0
    # The cluster is started before the clock (about 3 s); actor start-up is timed.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    try:
        t0 = time.perf_counter()
        remote = explain_batch(run_dir, data, out=tmp / "eb_ray", batch_size=batch_size,
                               workers=2, ray=True, device="cpu", progress=False)  # fmt: skip
        ray_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    n = local.computed
    assert remote.computed == n
    local_rate, ray_rate = n / local_s, remote.computed / ray_s
    return [
        Row(f"explain-batch, local ({n} images, B={batch_size})", f"{local_rate:.1f} images/s"),
        Row("explain-batch, Ray Data, 2 actors x 0.5 CPU", f"{ray_rate:.1f} images/s",
            f"{ray_rate / local_rate:.2f}x local; includes actor start-up"),
    ]  # fmt: skip


def _train(cmd_prefix: list[str], data: Path, out: Path, *, size: int, epochs: int) -> dict:
    cmd = cmd_prefix + ["train", str(data), "--out", str(out), "--epochs", str(epochs),
                        "--image-size", str(size), "--batch-size", "16", "--device", "cpu",
                        "--no-progress", "--seed", "0"]  # fmt: skip
    # torchrun gives each of its processes one thread (OMP_NUM_THREADS=1); the single
    # process keeps torch's default (every core), so both use the whole machine.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(tail[:160])
    return json.loads((out / "metrics.json").read_text())


def _train_images(data: Path, run_dir: Path) -> int:
    from thyrocam.batch import load_items

    split = json.loads((run_dir / "split.json").read_text())
    train_ids = {str(c) for c in split["train"]}
    return sum(it.case_id in train_ids for it in load_items(data)[0])


def training_rows(data: Path, *, size: int, epochs: int, tmp: Path) -> list[Row]:
    """Training images/s (the fit loop's own clock) with 1 process and with 2 under torchrun."""
    single = [sys.executable, "-m", "thyrocam"]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    multi = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "thyrocam"]
    what = f"{size} px, {epochs} epoch(s), batch 16 per process"
    try:
        one = _train(single, data, tmp / "train1", size=size, epochs=epochs)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return [Row(f"training, 1 process ({what})", "n/a", f"failed: {exc}")]
    n = _train_images(data, tmp / "train1") * int(one.get("epochs_run", epochs))
    rate1 = n / one["train_seconds"]
    rows = [Row(f"training, 1 process ({what})", f"{rate1:.1f} images/s")]
    try:
        two = _train(multi, data, tmp / "train2", size=size, epochs=epochs)
        if int(two.get("processes", 1)) != 2:
            raise RuntimeError("the run says it trained in one process")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        rows.append(Row("training, 2 torchrun processes (gloo)", "n/a (DDP not available)",
                        str(exc)))  # fmt: skip
        return rows
    rate2 = n / two["train_seconds"]
    rows.append(Row("training, 2 torchrun processes (gloo)", f"{rate2:.1f} images/s",
                    f"{rate2 / rate1:.2f}x 1 process"))  # fmt: skip
    return rows
