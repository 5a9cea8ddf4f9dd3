"""Data-parallel training under ``torchrun``: the process group, samplers, rank checks.

``torchrun --nproc-per-node N -m thyrocam train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` then joins the group
(gloo on CPU, NCCL on CUDA). Without those variables training is one process
and nothing here does anything.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DistContext",
    "init_distributed",
    "close_distributed",
    "broadcast_int",
    "broadcast_json",
    "unwrap",
    "wrap_ddp",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group.

    Attributes:
        rank: global rank (0 writes the run).
        world_size: number of processes.
        local_rank: rank on this machine (picks the CUDA device).
        owns_group: whether :func:`init_distributed` created the group (and so
            :func:`close_distributed` destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    owns_group: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext | None:
    """Join the ``torchrun`` process group when there is one; ``None`` otherwise.

    Args:
        device: the resolved training device; CUDA picks NCCL and the local
            rank's GPU, anything else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch_dist.is_initialized():
        return DistContext(rank, world, local_rank, owns_group=False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group(backend=backend)
    log.info("DDP: rank %d of %d (%s)", rank, world, backend)
    return DistContext(rank, world, local_rank)


def close_distributed(ctx: DistContext | None) -> None:
    """Leave the group :func:`init_distributed` created (no-op otherwise)."""
    if ctx is not None and ctx.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def broadcast_int(value: int, ctx: DistContext | None) -> int:
    """Rank 0's ``value`` on every rank (``value`` itself without a group)."""
    if ctx is None:
        return value
    backend = torch_dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
    t = torch.tensor([value], dtype=torch.int64, device=device)
    torch_dist.broadcast(t, src=0)
    return int(t.item())


def broadcast_json(value: Any, ctx: DistContext | None) -> Any:
    """Rank 0's JSON-serialisable ``value`` on every rank (as JSON bytes, never a pickle)."""
    if ctx is None:
        return value
    backend = torch_dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
    data = json.dumps(value).encode() if ctx.is_main else b""
    size = broadcast_int(len(data), ctx)
    buf = torch.zeros(size, dtype=torch.uint8, device=device)
    if ctx.is_main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    torch_dist.broadcast(buf, src=0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` (already on ``device``) wrapped for data-parallel training.

    DDP synchronises gradients only of what goes through its own ``forward``: a
    step loss that needs every head calls ``model(img, clin, all_heads=True)``,
    never ``model.module.forward_heads``.
    """
    ids = [device.index] if device.type == "cuda" else None
    # A step loss may leave parameters without a gradient (a head it does not train,
    # the ignored branch of a one-modality model); DDP must then look for them.
    partial = len(getattr(model, "heads", ())) > 1 or getattr(model, "modalities", "both") != "both"
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=partial)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
