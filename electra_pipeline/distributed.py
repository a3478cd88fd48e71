"""Data parallelism applied *to* a plain model: torchrun's environment -> process group -> DDP.

The model files know nothing of this. One process per device; rank 0 logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "World":
        """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE and join the process group once."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        world = cls(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", "0")), size=size)
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(world.local_rank)
            dist.init_process_group(backend=backend)
        return world

    def device(self, requested: str) -> torch.device:
        if requested == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank)


def wrap(model: nn.Module, world: World) -> nn.Module:
    """DDP across ranks; the bare model on one process."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [world.local_rank] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids)


def no_sync(runner: nn.Module) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    inner = getattr(runner, "_orig_mod", runner)  # through torch.compile's wrapper
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()


def barrier(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
