"""Ray Data backend of explain-batch: the same per-batch function, in actors.

Each actor of an ``ActorPoolStrategy`` pool is a :class:`_RayExplainer`: it
loads the run once, then decodes, explains and summarises batches exactly as
the local backend does (:class:`~thyrocam.batch.engine.BatchExplainer`). The
results (CAMs, rows, overlay bytes) come back to the driver, which writes them
atomically, so no shared file system is needed and a job resumes the same way.

Ray is imported only here (the optional extra ``thyrocam[ray]``). Multi-node::

    ray start --head                        # on the head node
    ray start --address HEAD:6379           # on every other node
    thyrocam explain-batch RUN DATA --out DIR --ray HEAD:6379 --workers 8

Measured on a 2-core machine: two 1-CPU actors deadlock (Ray Data's own tasks
never get a CPU), so on small clusters actors ask for half a CPU each.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thyrocam.batch.engine import BatchExplainer, ItemResult, collate_items
from thyrocam.batch.items import Item
from thyrocam.errors import InputError

__all__ = ["run_ray"]

log = logging.getLogger(__name__)


def _item_to_row(item: Item) -> dict[str, Any]:
    return {
        "order": item.order,
        "id": item.id,
        "path": str(item.path),
        "case_id": item.case_id,
        # Variable-length and optional values travel as JSON text: one Arrow type per column.
        "polygons": json.dumps([[list(p) for p in poly] for poly in item.polygons]),
        "clinical": json.dumps(item.clinical),
        "true_label": json.dumps(item.true_label),
    }


def _row_to_item(batch: dict[str, np.ndarray], i: int) -> Item:
    return Item(
        order=int(batch["order"][i]),
        id=str(batch["id"][i]),
        path=Path(str(batch["path"][i])),
        case_id=str(batch["case_id"][i]),
        polygons=tuple(
            tuple((float(x), float(y)) for x, y in poly)
            for poly in json.loads(str(batch["polygons"][i]))
        ),
        clinical=json.loads(str(batch["clinical"][i])),
        true_label=json.loads(str(batch["true_label"][i])),
    )


class _RayExplainer:
    """A Ray Data callable class: loads the run once per actor."""

    def __init__(self, run: str, threads: int, **options: Any) -> None:
        import torch

        torch.set_num_threads(threads)
        self.explainer = BatchExplainer(run, **options)
        self.size = self.explainer.input_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [_row_to_item(batch, i) for i in range(len(batch["id"]))]
        dataset = self.explainer.dataset(items)
        results = self.explainer.explain_collated(
            collate_items([dataset[i] for i in range(len(items))])
        )
        blank = np.zeros((self.size, self.size), np.float16)
        return {
            "id": np.array([r.item.id for r in results], dtype=object),
            "row": np.array([json.dumps(r.row) for r in results], dtype=object),
            "has_cam": np.array([r.cam is not None for r in results]),
            "cam": np.stack([blank if r.cam is None else r.cam for r in results]),
            "overlay": np.array([r.overlay_png or b"" for r in results], dtype=object),
        }


def _results(out: dict[str, np.ndarray], by_id: dict[str, Item]) -> list[ItemResult]:
    return [
        ItemResult(
            item=by_id[str(item_id)],
            row=json.loads(str(out["row"][i])),
            cam=out["cam"][i] if out["has_cam"][i] else None,
            overlay_png=bytes(out["overlay"][i]) or None,
        )
        for i, item_id in enumerate(out["id"])
    ]


def _actor_resources(ray: Any, *, actors: int, device: str | None) -> tuple[dict, int, str]:
    """``(ray_remote_args, actors, device)`` for the pool, from what the cluster has."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if device not in (None, "cpu") and gpus >= 1:
        return {"num_gpus": 1}, min(actors, gpus), "cuda"
    if device not in (None, "auto", "cpu"):
        raise InputError(
            f"device: got {device!r} but the Ray cluster has no GPU; allowed: cpu or auto",
            field="device",
            value=device,
            allowed="cpu, auto",
        )
    cpus = float(resources.get("CPU", 1))
    # A whole CPU each only when one is left for Ray Data's own tasks (see module doc).
    per_actor = 1.0 if cpus >= actors + 1 else 0.5
    return {"num_cpus": per_actor}, actors, "cpu"


def run_ray(
    run: Path,
    items: Sequence[Item],
    stored: Callable[[Sequence[ItemResult]], None],
    *,
    batch_size: int,
    actors: int,
    address: str | None,
    method: str,
    target: str,
    device: str | None,
    overlays: bool,
    alpha: float,
) -> None:
    """Explain ``items`` on a Ray cluster; ``stored`` gets each batch's results on the driver."""
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            # A local cluster on this machine's cores; Ray Data needs at least two.
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    try:
        with warnings.catch_warnings():
            # Ray Data's default context sets a deprecated option of its own on creation.
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        remote_args, actors, actor_device = _actor_resources(ray, actors=actors, device=device)
        threads = max(1, math.floor(remote_args.get("num_cpus", 1)))
        dataset = ray.data.from_items(
            [_item_to_row(it) for it in items],
            override_num_blocks=max(1, math.ceil(len(items) / batch_size)),
        )
        explained = dataset.map_batches(
            _RayExplainer,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={
                "run": str(run),
                "threads": threads,
                "method": method,
                "target": target,
                "device": actor_device,
                "overlays": overlays,
                "alpha": alpha,
            },
            **remote_args,
        )
        by_id = {it.id: it for it in items}
        for out in explained.iter_batches(batch_size=None, batch_format="numpy"):
            stored(_results(out, by_id))
    finally:
        if started:
            ray.shutdown()
