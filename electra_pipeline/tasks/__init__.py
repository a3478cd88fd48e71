"""Task registry: GLUE's nine tasks and SQuAD v1.1/v2.0 behind the `Task` interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from electra_pipeline.errors import ConfigError
from electra_pipeline.tasks.base import Feature, Task
from electra_pipeline.tasks.glue import SPECS, GlueTask, task_dir
from electra_pipeline.tasks.squad import SquadTask

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
SQUAD_TASKS = ("squad_v1", "squad_v2")
TASK_NAMES = GLUE_TASKS + SQUAD_TASKS

_FACTORIES: dict[str, Callable[[], Task]] = {
    **{name: (lambda spec=SPECS[name]: GlueTask(spec)) for name in GLUE_TASKS},
    "squad_v1": lambda: SquadTask("v1"),
    "squad_v2": lambda: SquadTask("v2"),
}
_ALIASES = {"squad": "squad_v1", "squad1": "squad_v1", "squad2": "squad_v2", "squadv1": "squad_v1",
            "squadv2": "squad_v2", "sts": "stsb"}


def canonical_name(name: str) -> str:
    """`SST-2`, `sst_2`, `sst2` -> `sst2`; unknown names raise ConfigError listing the known ones."""
    key = name.strip().lower().replace("-", "").replace(".", "")
    key = key if key in _FACTORIES else key.replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in _FACTORIES:
        raise ConfigError(f"task: unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return key


def get_task(name: str) -> Task:
    return _FACTORIES[canonical_name(name)]()


def glue_tasks_present(data_dir: str | Path) -> list[str]:
    """GLUE tasks whose train file and every dev file exist under `data_dir`, in GLUE order."""
    out = []
    for name in GLUE_TASKS:
        spec = SPECS[name]
        d = task_dir(data_dir, spec.dir_name)
        if all((d / f"{s}.tsv").is_file() for s in ("train", *spec.eval_splits)):
            out.append(name)
    return out


__all__ = ["Feature", "GLUE_TASKS", "SQUAD_TASKS", "TASK_NAMES", "GlueTask", "SquadTask", "Task",
           "canonical_name", "get_task", "glue_tasks_present"]
