"""Data parallelism applied *to* a plain model: torchrun's environment -> process group -> DDP.

The model files know nothing of this. One process per device (NCCL on GPUs, gloo on CPUs);
rank 0 logs and checkpoints. What each rank sees:

- data: `data.micro_batches` gives rank r rows [r x B/W, (r+1) x B/W) of every global batch of B
  examples, so the stream position (`examples_seen`) is global and a run resumes under any
  world size W that divides the batch;
- randomness: the same initial weights everywhere, dropout and masking generators seeded per
  rank (`train.pretrain`);
- gradients: all-reduced once per optimiser step (`no_sync` on the other micro-batches);
- metrics: averaged over ranks when they are read (`mean_across`), every `log_every` steps.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    owns_group: bool = field(default=False, compare=False)  # from_env created the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "World":
        """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE and join the process group once."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = not dist.is_initialized()
        if owns:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend)
        return cls(rank=rank, local_rank=local_rank, size=size, owns_group=owns)

    def device(self, requested: str) -> torch.device:
        if requested == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank)


def wrap(model: nn.Module, world: World) -> nn.Module:
    """DDP across ranks; the bare model on one process.

    Gradients are reduced straight from the buckets (`gradient_as_bucket_view`: no copy, less
    memory). Every parameter gets a gradient in every step of both objectives, so no search for
    unused parameters."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [world.local_rank] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)


def no_sync(runner: nn.Module) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    inner = getattr(runner, "_orig_mod", runner)  # through torch.compile's wrapper
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()


def mean_across(metrics: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """Average scalar metric tensors over ranks in one all-reduce (a sync: call it when logging)."""
    if world.size == 1 or not metrics or not dist.is_initialized():
        return metrics
    keys = sorted(metrics)
    stacked = torch.stack([torch.as_tensor(metrics[k]).float().reshape(()) for k in keys])
    dist.all_reduce(stacked)  # SUM: gloo has no AVG
    stacked /= world.size
    return dict(zip(keys, stacked.unbind()))


def barrier(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave the process group if `World.from_env` created it (one a caller made is theirs)."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()
