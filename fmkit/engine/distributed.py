"""Distributed data parallel support: one process per device under ``torchrun``.

``torchrun --nproc_per_node N -m fmkit train ...`` sets ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``; ``init_distributed`` then joins the process group (NCCL on CUDA, gloo on
CPU). Every rank trains on its shard of each epoch (``DistributedSampler``), gradients
are averaged by ``DistributedDataParallel``, evaluation is sharded and gathered, and only
rank 0 writes files. With one process all of this reduces to no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank among ``world_size`` and its local device index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group ``torchrun`` describes (or one already joined); else one process."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)


def shutdown(env: DistEnv) -> None:
    """Leave the process group if ``init_distributed`` joined it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if world()[1] > 1:
        dist.barrier()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over the ranks (returned as is with one process)."""
    if world()[1] > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` with one process)."""
    if world()[1] == 1:
        return [obj]
    out: list[Any] = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite each tensor, in place, with rank ``src``'s (no-op with one process)."""
    if world()[1] > 1:
        for t in tensors:
            dist.broadcast(t, src)
