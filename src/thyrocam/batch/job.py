"""``explain_batch``: explain a whole data set into a resumable output folder.

The local backend feeds a torch DataLoader (``workers`` processes decode and
preprocess) into :class:`~thyrocam.batch.engine.BatchExplainer`; the Ray
backend (:mod:`thyrocam.batch.ray_backend`) runs the same per-batch function in
Ray Data actors. Either way the driver writes each result atomically, so an
interrupted job resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from thyrocam.batch.engine import BatchExplainer, ItemResult, collate_items, weights_sha256
from thyrocam.batch.items import Item, load_items, parse_shard, select_shard
from thyrocam.batch.store import ResultStore
from thyrocam.checkpoint import read_meta, resolve_run_dir
from thyrocam.errors import InputError, check_choice
from thyrocam.explain import canonical_method
from thyrocam.explain.cam import TARGETS
from thyrocam.explain.overlay import check_alpha

__all__ = ["BatchSummary", "explain_batch"]

log = logging.getLogger(__name__)

#: Called after each stored batch with the number of items stored so far in this job.
OnBatch = Callable[[int], None]


@dataclass(frozen=True)
class BatchSummary:
    """What one call did.

    Attributes:
        out: the output folder.
        index: its ``index.parquet``.
        total: images in this shard.
        skipped: already done by an earlier (interrupted) call.
        computed: explained now.
        failed: of those, unreadable images (rows with ``error`` set).
        problems: the data readers' problem lines.
    """

    out: Path
    index: Path
    total: int
    skipped: int
    computed: int
    failed: int
    problems: list[str]


def _check_options(
    *, method: str, target: str, batch_size: int, workers: int, alpha: float, ray: bool
) -> None:
    canonical_method(method)
    check_choice(target, field="target", allowed=TARGETS)
    low_workers = 1 if ray else 0  # Ray needs at least one actor; locally 0 = main process
    for name, value, low in (("batch_size", batch_size, 1), ("workers", workers, low_workers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(
                f"{name}: got {value!r}; allowed: an integer >= {low}",
                field=name,
                value=value,
                allowed=f">= {low}",
            )
    check_alpha(alpha)


def _open_store(
    run_dir: Path, data: str | os.PathLike, out: str | os.PathLike, *, method: str, target: str
) -> ResultStore:
    meta = read_meta(run_dir)
    return ResultStore(
        out,
        job={
            "run": str(run_dir.resolve()),
            "weights_sha256": weights_sha256(run_dir),
            "method": canonical_method(method),
            "target": target,
            "data": str(Path(data).resolve()),
            "input_size": meta["preprocessing"].get("size"),
            "preprocessing": meta["preprocessing"],
        },
    )


class _Writer:
    """Stores each batch's results on the driver, advances the bar, counts."""

    def __init__(self, store: ResultStore, bar: tqdm, on_batch: OnBatch | None) -> None:
        self.store, self.bar, self.on_batch = store, bar, on_batch
        self.computed = 0
        self.failed = 0

    def __call__(self, results: Sequence[ItemResult]) -> None:
        for result in results:
            self.store.write(result)
            self.computed += 1
            self.failed += result.cam is None
        self.bar.update(len(results))
        if self.on_batch is not None:
            self.on_batch(self.computed)


def explain_batch(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    method: str = "gradcam",
    target: str = "malignant",
    batch_size: int = 16,
    workers: int | None = None,
    shard: str | tuple[int, int] | None = None,
    overlays: bool = False,
    alpha: float = 0.35,
    device: str | None = "auto",
    ray: bool = False,
    ray_address: str | None = None,
    progress: bool = True,
    on_batch: OnBatch | None = None,
) -> BatchSummary:
    """Explain every image of ``data`` (or of one shard of it) with ``run``.

    Args:
        run: a run folder.
        data: a DDTI folder, a CSV manifest or a folder of images.
        out: the output folder (see :mod:`thyrocam.batch.store` for its layout);
            calling again with the same job resumes it.
        method, target: the CAM method and the class explained.
        batch_size: images per forward/gradient pass.
        workers: local: DataLoader processes decoding images (default 0: the
            main process); Ray: actors (default 2).
        shard: ``"I/N"``: only the images of shard ``I`` of ``N`` (by a hash of the id).
        overlays: also write overlay PNGs on the frame (``alpha``: their opacity).
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        ray: run through Ray Data; ``ray_address`` joins a cluster, else a local one starts.
        progress: show a progress bar.
        on_batch: called after each stored batch with the count stored so far
            (tests interrupt jobs with it).

    Raises:
        InputError: bad options, unreadable data, or an ``out`` holding another job.
        CheckpointError: ``run`` is not a usable run folder.
    """
    workers = (2 if ray else 0) if workers is None else workers
    _check_options(
        method=method, target=target, batch_size=batch_size, workers=workers, alpha=alpha, ray=ray
    )
    shard_pair = parse_shard(shard) if shard is None or isinstance(shard, str) else shard
    run_dir = resolve_run_dir(run)
    items, problems = load_items(data)
    mine = select_shard(items, shard_pair)
    store = _open_store(run_dir, data, out, method=method, target=target)
    done = store.done_ids(overlays=overlays)
    pending = [it for it in mine if it.id not in done]
    log.info(
        "explain-batch: %d images in shard %d/%d, %d already done",
        len(mine), shard_pair[0], shard_pair[1], len(mine) - len(pending),
    )  # fmt: skip
    options = {"method": method, "target": target, "device": device, "overlays": overlays,
               "alpha": alpha}  # fmt: skip
    with tqdm(total=len(pending), disable=not progress, unit="img", desc="explain") as bar:
        writer = _Writer(store, bar, on_batch)
        if pending and ray:
            from thyrocam.batch.ray_backend import run_ray

            run_ray(run_dir, pending, writer, batch_size=batch_size, actors=workers,
                    address=ray_address, **options)  # fmt: skip
        elif pending:
            _run_local(run_dir, pending, writer, batch_size=batch_size, workers=workers, **options)
    return BatchSummary(
        out=store.out,
        index=store.write_index(),
        total=len(mine),
        skipped=len(mine) - len(pending),
        computed=writer.computed,
        failed=writer.failed,
        problems=list(problems),
    )


def _worker_init(_: int) -> None:
    # Decoding workers need no intra-op threads; the main process's model does.
    torch.set_num_threads(1)


def _run_local(
    run: Path,
    items: list[Item],
    stored: Callable[[Sequence], None],
    *,
    batch_size: int,
    workers: int,
    **options,
) -> None:
    explainer = BatchExplainer(run, **options)
    loader = DataLoader(
        explainer.dataset(items),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_items,
        worker_init_fn=_worker_init if workers else None,
        pin_memory=explainer.device.type == "cuda",
    )
    for batch in loader:
        stored(explainer.explain_collated(batch))
