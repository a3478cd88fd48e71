"""The optimiser and the learning-rate schedule: AdamW with weight decay on matrices only, and
warm-up with linear decay to zero over steps, a FLOPs budget or a wall-clock budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from electra_pipeline.config import TrainConfig
from electra_pipeline.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on LayerNorm weights, biases, the MLM output bias or the
    relative-distance attention biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "relative_bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over all parameters on CUDA, and on CPU too, where it
    is 3x faster than the default per-tensor loop (64 -> 19 ms per ELECTRA-Small step)."""
    return torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                             eps=t.adam_eps, fused=device.type in ("cuda", "cpu"))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Warmup and linear decay applied together: min(1, s/warmup) x (1 - s/total), s = step + 1."""
    s = step + 1
    return min(1.0, s / max(1, warmup)) * max(0.0, 1.0 - step / total)


@dataclass
class Schedule:
    """How long a run trains and how its learning rate moves: over `max_steps`, over the steps a
    FLOPs budget buys, or over a wall-clock budget. With a budget, warm-up and the decay to zero
    are laid out over the budget ("How to Train BERT with an Academic Budget", Izsak et al. 2021;
    "Cramming", Geiping & Goldstein 2022), so the last step, checkpoint and export land at it."""

    total_steps: int  # steps the run may take
    warmup_steps: int
    budget_seconds: float | None = None  # wall-clock budget of training steps (setup not counted)
    warmup_fraction: float | None = None
    elapsed: float = 0.0  # training seconds spent so far, all sessions (updated by the loop)

    @classmethod
    def of(cls, t: TrainConfig, step_flops: float) -> Schedule:
        total = t.max_steps
        if t.budget_flops is not None:
            total = int(t.budget_flops // step_flops)
            if total < 1:
                raise ConfigError(f"train.budget_flops: {t.budget_flops:.3g} is less than one step "
                                  f"({step_flops:.3g} FLOPs at this batch and model)")
            if t.max_steps < total:
                raise ConfigError(f"train.max_steps: {t.max_steps} stops before train.budget_flops {t.budget_flops:.3g} "
                                  f"is spent ({total} steps); raise it or drop one of them")
        warmup = t.warmup_steps if t.warmup_fraction is None else int(round(t.warmup_fraction * total))
        seconds = t.budget_minutes * 60 if t.budget_minutes is not None else None
        return cls(total_steps=total, warmup_steps=warmup, budget_seconds=seconds, warmup_fraction=t.warmup_fraction)

    def progress(self, step: int) -> float:
        """Share of the run done: steps, or (with a wall-clock budget) time, whichever is further."""
        p = step / self.total_steps
        if self.budget_seconds is not None:
            p = max(p, self.elapsed / self.budget_seconds)
        return min(1.0, p)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier for optimiser step `step` (0-based)."""
        if self.budget_seconds is None:
            return lr_factor(step, self.warmup_steps, self.total_steps)
        p = self.progress(step)
        if self.warmup_fraction is not None:
            warm = min(1.0, p / self.warmup_fraction) if self.warmup_fraction > 0 else 1.0
        else:
            warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        return warm * max(0.0, 1.0 - p)

    def done(self, step: int) -> bool:
        return step >= self.total_steps or (self.budget_seconds is not None and self.elapsed >= self.budget_seconds)


def rebind(scheduler: torch.optim.lr_scheduler.LambdaLR, optimizer: torch.optim.Optimizer,
            fn: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, at the same step, driving a replacement optimizer (FSDP's over shards)."""
    state = scheduler.state_dict()
    rebound = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    rebound.load_state_dict(state)
    for group, lr in zip(optimizer.param_groups, rebound.get_last_lr()):
        group["lr"] = lr  # the constructor reset it to the schedule's first value
    return rebound
