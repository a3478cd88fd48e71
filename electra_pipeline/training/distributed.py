"""Data parallelism applied *to* a plain model: torchrun's environment -> process group -> DDP.

The model files know nothing of this. One process per device (NCCL on GPUs, gloo on CPUs);
rank 0 logs and checkpoints. What each rank sees:

- data: `batches.micro_batches` gives rank r rows [r x B/W, (r+1) x B/W) of every global batch of B
  examples, so the stream position (`examples_seen`) is global and a run resumes under any
  world size W that divides the batch;
- randomness: the same initial weights everywhere, dropout and masking generators seeded per
  rank (`train.pretrain`);
- gradients: all-reduced once per optimiser step (`no_sync` on the other micro-batches);
- metrics: averaged over ranks when they are read (`mean_across`), every `log_every` steps.

FSDP2 (`fully_shard`) replaces DDP when `train.fsdp` is set: parameters, gradients and optimizer
state are sharded over ranks (each encoder layer gathered just before use), for `large` on
GPUs that cannot hold the replicated optimizer state. Checkpoints and exports gather the full
state on rank 0, so they are the same files as a DDP or single-process run writes and resume
under either.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
    def from_env(cls) -> World:
        """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE and join the process group once."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = not dist.is_initialized()
        if owns:
            if torch.cuda.is_available():  # NCCL for CUDA tensors; gloo still serves a CPU run (--train.device cpu)
                torch.cuda.set_device(local_rank)
                dist.init_process_group(backend="cpu:gloo,cuda:nccl")
            else:
                dist.init_process_group(backend="gloo")
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
    if hasattr(inner, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(inner)
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(module: nn.Module) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


# --- FSDP2 ---------------------------------------------------------------------------------

def fsdp_requested(world: World, enabled: bool) -> bool:
    """Shard with FSDP2 instead of replicating with DDP: `train.fsdp` on a multi-rank run."""
    return world.size > 1 and enabled


def shard(model: nn.Module, optimizer: torch.optim.Optimizer, world: World, *, param_dtype: torch.dtype | None,
          make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """FSDP2 `model` in place: every encoder `Layer` is a unit of its own, the rest (the shared
    embeddings, projections, heads) belongs to the root. `optimizer` (plain, possibly holding a
    resumed state) is replaced by one over the shards, with that state carried over.

    With `param_dtype` (bf16 on CUDA) the gathered parameters are cast once per step and
    gradients reduced in fp32, instead of autocast casting at every matmul."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from electra_pipeline.modeling.model import Layer

    full = StateDictOptions(full_state_dict=True)
    resumed = get_optimizer_state_dict(model, optimizer, options=full) if optimizer.state else None
    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world.size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    for module in list(model.modules()):
        if isinstance(module, Layer):
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    sharded = make_optimizer(model)
    if resumed is not None:
        _load_optimizer(model, sharded, resumed, full)
    return sharded


def _load_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, options: object) -> None:
    """Load a full (FQN-keyed) optimizer state; a fresh optimizer first gets the groups' extra
    keys (the scheduler's `initial_lr`), which the loader expects to find."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    for group, saved in zip(optimizer.param_groups, state["param_groups"]):
        for key, value in saved.items():
            group.setdefault(key, value)
    set_optimizer_state_dict(model, optimizer, state, options=options)


def gather(model: nn.Module, optimizer: torch.optim.Optimizer | None, world: World, *,
           make_model: Callable[[], nn.Module],
           make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]) -> tuple[nn.Module, torch.optim.Optimizer | None]:
    """Plain CPU copies of a sharded model (and optimizer) on rank 0, for checkpoints and export.
    A collective: every rank calls it; the others get their sharded objects back."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    to_rank0 = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=to_rank0)
    optim_state = get_optimizer_state_dict(model, optimizer, options=to_rank0) if optimizer is not None else None
    if not world.is_main:
        return model, optimizer
    plain = make_model()
    plain.load_state_dict(model_state)
    plain_optimizer = None
    if optimizer is not None:
        plain_optimizer = make_optimizer(plain)
        _load_optimizer(plain, plain_optimizer, optim_state, StateDictOptions(full_state_dict=True))
    return plain, plain_optimizer


def mean_across(metrics: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """Average scalar metric tensors over ranks in one all-reduce (a sync: call it when logging)."""
    if world.size == 1 or not metrics or not dist.is_initialized():
        return metrics
    keys = sorted(metrics)
    stacked = torch.stack([torch.as_tensor(metrics[k]).float().reshape(()) for k in keys])
    dist.all_reduce(stacked)  # SUM: gloo has no AVG
    stacked /= world.size
    return dict(zip(keys, stacked.unbind()))


def rank0_value(value: float, world: World, device: torch.device) -> float:
    """Rank 0's `value` on every rank (a wall-clock budget must stop every rank at the same step)."""
    if world.size == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave the process group if `World.from_env` created it (one a caller made is theirs)."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()
