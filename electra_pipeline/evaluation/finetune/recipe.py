"""The fine-tuning recipe: a typed config and the reference optimiser settings.

Layer-wise learning-rate decay, warmup + linear decay and the size-dependent defaults live
here, apart from the loop, so they can be read (and tested) against REFERENCE.md directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import presets
from electra_pipeline.modeling.config import POOLINGS, ModelConfig

if TYPE_CHECKING:  # torch is imported where it runs, so the config (and `electra --help`) loads without it
    import torch
    from torch import nn

    from electra_pipeline.evaluation.tasks import Task

LR_DECAY_FORMS = ("code", "paper")
SELECT = ("last", "best")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def _require(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"finetune.{name}: {msg}")


@dataclass(kw_only=True)
class FinetuneConfig:
    """One fine-tuning recipe; `None` fields resolve per model size or task (REFERENCE.md)."""

    lr: float | None = None
    """peak learning rate; None: 1e-4 (small/base), 5e-5 (large)"""
    lr_grid: list[float] = field(default_factory=list)
    """peak learning rates to choose from on a split of the training data (never dev); [] keeps `lr`"""
    lr_select_fraction: float = 0.2
    """share of the training examples held out to choose from `lr_grid`"""
    layer_decay: float | None = None
    """layer-wise LR decay; None: 0.8 (0.9 large); 1.0 disables"""
    layer_decay_form: str = "code"
    """code: head depth n+2 (reference code); paper: head n+1"""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (0 for GLUE in the paper)"""
    warmup_fraction: float = 0.1
    """share of steps with linear warmup; linear decay to 0 after"""
    epochs: int | None = None
    """None: the task's (3; RTE and STS-B 10; SQuAD 2)"""
    batch_size: int = 32
    """training sequences per optimiser step"""
    eval_batch_size: int = 128
    """sequences per evaluation forward pass"""
    max_seq_length: int | None = None
    """None: 128 for GLUE, 512 for SQuAD"""
    doc_stride: int = 128
    """SQuAD: token step between context windows"""
    max_query_length: int = 64
    """SQuAD: question tokens kept"""
    max_answer_length: int = 30
    """SQuAD: longest answer span decoded, in tokens"""
    n_best_size: int = 20
    """SQuAD: span candidates kept per question"""
    pooling: str = "cls"
    """sequence tasks' head input: cls ([CLS] row, the paper) or mean (of all tokens)"""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """one run each; the median is reported"""
    select: str = "last"
    """weights a seed keeps: last epoch (reference) or best dev epoch"""
    grad_clip: float = 1.0
    """max global grad norm; 0 disables"""
    adam_eps: float = 1e-6
    """AdamW epsilon"""
    eval_every_epoch: bool = True
    """dev metrics after every epoch (else only after the last)"""
    predict_test: bool = True
    """write test-set predictions in the leaderboard format"""
    max_train_examples: int | None = None
    """random subset of train (quick runs, tests); None: all"""
    max_eval_examples: int | None = None
    """random subset of each dev split; None: all"""
    model_preset: str = "small"
    """model size when no checkpoint is given (random init baseline)"""
    device: str = "auto"
    """auto: cuda when available"""
    precision: str = "auto"
    """auto: bf16 autocast on CUDA and bf16-capable CPUs (AMX, AVX512-BF16), else fp32"""
    log_every: int = 50
    """optimiser steps between train-loss logs"""
    data_seed: int = 0
    """seed of the train/dev subsets, fixed across fine-tuning seeds"""

    def __post_init__(self) -> None:
        if self.lr is not None:
            _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in self.lr_grid),
                 "lr_grid", f"must be positive numbers, got {self.lr_grid}")
        _require(0 < self.lr_select_fraction < 1, "lr_select_fraction",
                 f"must be in (0, 1), got {self.lr_select_fraction}")
        if self.layer_decay is not None:
            _require(0 < self.layer_decay <= 1, "layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        _require(self.layer_decay_form in LR_DECAY_FORMS, "layer_decay_form",
                 f"must be one of {LR_DECAY_FORMS}, got {self.layer_decay_form!r}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(0 <= self.warmup_fraction < 1, "warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}")
        for name in ("epochs", "max_seq_length", "max_train_examples", "max_eval_examples"):
            v = getattr(self, name)
            _require(v is None or v > 0, name, f"must be > 0, got {v}")
        for name in ("batch_size", "eval_batch_size", "doc_stride", "max_query_length", "max_answer_length",
                     "n_best_size", "log_every"):
            _require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        if self.max_seq_length is not None:
            _require(self.max_seq_length >= 8, "max_seq_length", f"must be >= 8, got {self.max_seq_length}")
        _require(len(self.seeds) > 0, "seeds", "needs at least one seed")
        _require(all(isinstance(x, int) and not isinstance(x, bool) for x in self.seeds), "seeds",
                 f"must be integers, got {self.seeds}")
        _require(len(set(self.seeds)) == len(self.seeds), "seeds", f"has duplicates: {self.seeds}")
        _require(self.pooling in POOLINGS, "pooling", f"must be one of {POOLINGS}, got {self.pooling!r}")
        _require(self.select in SELECT, "select", f"must be one of {SELECT}, got {self.select!r}")
        _require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _require(self.model_preset in presets.PRESETS, "model_preset",
                 f"must be one of {sorted(presets.PRESETS)}, got {self.model_preset!r}")
        _require(self.device in DEVICES or self.device.startswith("cuda:"), "device",
                 f"must be one of {DEVICES} or cuda:N, got {self.device!r}")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")


# --- recipe -----------------------------------------------------------------------------------


def is_large(model_cfg: ModelConfig) -> bool:
    return model_cfg.hidden_size >= 1024


def resolved(cfg: FinetuneConfig, task: Task, model_cfg: ModelConfig) -> FinetuneConfig:
    """Fill the size- and task-dependent defaults so the saved config states what ran."""
    large = is_large(model_cfg)
    out = dataclasses.replace(
        cfg, lr=cfg.lr if cfg.lr is not None else (5e-5 if large else 1e-4),
        layer_decay=cfg.layer_decay if cfg.layer_decay is not None else (0.9 if large else 0.8),
        epochs=cfg.epochs or task.default_epochs,
        max_seq_length=cfg.max_seq_length or task.default_max_seq_length)
    _require(out.max_seq_length <= model_cfg.max_position_embeddings, "max_seq_length",
             f"{out.max_seq_length} exceeds the model's max_position_embeddings={model_cfg.max_position_embeddings}")
    return out


def layer_depth(name: str, num_layers: int, form: str) -> tuple[int, int]:
    """(depth, top depth) of a parameter: embeddings 0, encoder layer i -> i + 1, head top.

    The reference code puts the head at n + 2 (the top encoder layer gets decay^2); the paper's
    description at n + 1 (top layer decay^1)."""
    top = num_layers + 2 if form == "code" else num_layers + 1
    if name.startswith(("electra.embeddings.", "electra.embeddings_project.")):
        return 0, top
    if name.startswith("electra.layers."):
        return int(name.split(".")[2]) + 1, top
    return top, top


def param_groups(model: nn.Module, lr: float, decay: float, form: str, weight_decay: float) -> list[dict[str, Any]]:
    """One group per (depth, decayed?) with lr = base x decay^(top - depth)."""
    n = model.electra.config.num_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        depth, top = layer_depth(name, n, form)
        wd = weight_decay > 0 and p.ndim >= 2 and "LayerNorm" not in name and "relative_bias" not in name
        g = groups.setdefault((depth, wd), {"params": [], "lr": lr * decay ** (top - depth),
                                            "weight_decay": weight_decay if wd else 0.0, "depth": depth})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup to the peak, then linear decay to 0 at `total`."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def resolve_device(name: str) -> torch.device:
    from electra_pipeline.training import runtime

    return runtime.resolve_device(name, field="finetune.device")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The pre-training rule (`runtime.autocast_dtype`): bf16 where the hardware has bf16 matrix
    units, unless `fp32` is asked for."""
    import torch

    from electra_pipeline.training.runtime import autocast_dtype

    amp = autocast_dtype(precision, device)
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
