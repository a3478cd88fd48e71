"""Fine-tuning and evaluation on GLUE and SQuAD with the ELECTRA reference settings.

    recipe.py   FinetuneConfig, layer-wise LR decay, warmup/decay schedule, device/precision
    loop.py     one seed's training loop and batched prediction
    runner.py   finetune() (one task, seeds, median, saved model) and evaluate() (results table)

The `electra finetune` and `electra evaluate` commands are `electra_cli/finetune.py`. The names
below are imported on first use (PEP 562), so building the `electra` parser, which reads
`FinetuneConfig`, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"FinetuneConfig": "recipe", "layer_depth": "recipe", "lr_lambda": "recipe",
            "param_groups": "recipe", "EvaluationResult": "runner", "FinetuneResult": "runner",
            "evaluate": "runner", "finetune": "runner", "format_table": "runner"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
