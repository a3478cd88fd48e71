"""Task registry: GLUE's nine tasks and SQuAD v1.1/v2.0 behind the `Task` interface.

The task names are plain constants; the task classes (which import torch, tokenizers and the
metrics) are imported on first use, so the CLI lists the names without loading them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from electra_pipeline.errors import ConfigError

if TYPE_CHECKING:
    from electra_pipeline.evaluation.tasks.base import Task

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
SQUAD_TASKS = ("squad_v1", "squad_v2")
TASK_NAMES = GLUE_TASKS + SQUAD_TASKS

_ALIASES = {"squad": "squad_v1", "squad1": "squad_v1", "squad2": "squad_v2", "squadv1": "squad_v1",
            "squadv2": "squad_v2", "sts": "stsb"}
_CLASSES = {"Feature": "base", "Task": "base", "GlueTask": "glue", "SquadTask": "squad"}


def canonical_name(name: str) -> str:
    """`SST-2`, `sst_2`, `sst2` -> `sst2`; unknown names raise ConfigError listing the known ones."""
    key = name.strip().lower().replace("-", "").replace(".", "")
    key = key if key in TASK_NAMES else key.replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in TASK_NAMES:
        raise ConfigError(f"task: unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return key


def get_task(name: str) -> Task:
    key = canonical_name(name)
    if key in SQUAD_TASKS:
        from electra_pipeline.evaluation.tasks.squad import SquadTask

        return SquadTask(key.removeprefix("squad_"))
    from electra_pipeline.evaluation.tasks.glue import SPECS, GlueTask

    return GlueTask(SPECS[key])


def glue_tasks_present(data_dir: str | Path) -> list[str]:
    """GLUE tasks whose train file and every dev file exist under `data_dir`, in GLUE order."""
    from electra_pipeline.evaluation.tasks.glue import SPECS, task_dir

    out = []
    for name in GLUE_TASKS:
        spec = SPECS[name]
        d = task_dir(data_dir, spec.dir_name)
        if all((d / f"{s}.tsv").is_file() for s in ("train", *spec.eval_splits)):
            out.append(name)
    return out


def __getattr__(name: str) -> Any:  # PEP 562: the task classes, imported on first use
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)


__all__ = ["Feature", "GLUE_TASKS", "SQUAD_TASKS", "TASK_NAMES", "GlueTask", "SquadTask", "Task",
           "canonical_name", "get_task", "glue_tasks_present"]
