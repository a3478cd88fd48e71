"""What every stage flow shares: where the MLflow run goes, how user errors end a run, where
the shipped sample data is, and how a cached stage task is called.

Stage flows take plain typed parameters (they render as the Prefect UI form) and pass paths,
stage keys and MLflow run ids between tasks, never tensors or models.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from electra_pipeline.errors import ConfigError, PipelineError

F = TypeVar("F", bound=Callable[..., Any])

SAMPLE = "sample"  # a data parameter with this value means "the sample shipped in the package"
DEFAULT_EXPERIMENT = "electra-pipeline"
RESULTS_DIR = ".prefect-results"  # under output_dir: cache records live and die with the outputs


class Tracking(BaseModel):
    """Where a stage logs: the MLflow store, the experiment, and the run to nest under."""

    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, "
                                                               "else sqlite:///<workdir>/mlflow.db")
    experiment: str = Field(default=DEFAULT_EXPERIMENT, min_length=1, description="MLflow experiment name")
    parent_run_id: str | None = Field(default=None, description="MLflow run to nest this stage's run under")

    def uri(self) -> str:
        from flows.tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri)

    def run(self, name: str, **tags: str) -> contextlib.AbstractContextManager[Any]:
        """This stage's MLflow run, nested under `parent_run_id`, always ended (see mlflow_run)."""
        from flows.tracking import mlflow_run

        return mlflow_run(tracking_uri=self.uri(), experiment=self.experiment, name=name,
                          parent_run_id=self.parent_run_id, tags=tags)


class StageOutput(BaseModel):
    """What a stage flow hands the next one: where its output is and how it was made."""

    stage: str
    path: str  # absolute: the next stage may run in another process or working directory
    key: str  # the stage key (also the last part of the path for cached stages)
    cached: bool = False  # True when Prefect's cache answered and no work was done
    run_id: str | None = None  # the stage's MLflow run
    summary: dict[str, Any] = Field(default_factory=dict)  # small numbers for tables and metrics


def sample_path(kind: str) -> Path:
    """The packaged sample: `corpus` (a .txt.gz file), `glue` or `squad` (directories)."""
    root = Path(str(resources.files("electra_pipeline"))) / "sample"
    path = root / "corpus" / "sample.txt.gz" if kind == "corpus" else root / kind
    if not path.exists():
        raise ConfigError(f"{kind}: the shipped sample {path} is missing from this install")
    return path


def data_path(value: str, kind: str) -> str:
    """A data parameter as a real path: `sample` -> the shipped sample, `hf:...` unchanged,
    anything else absolute (the flow may run in another process than the one that read it)."""
    if value == SAMPLE:
        return str(sample_path(kind))
    if value.startswith("hf:"):
        return value
    return str(Path(value).expanduser().resolve())


def user_errors(fn: F) -> F:
    """Turn a library `PipelineError` into a Failed state whose message is the library's one
    line: the UI shows what to fix instead of a traceback. Other errors keep theirs (bugs).
    The original exception stays attached, so a parent flow re-raises the same error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from prefect.logging import get_run_logger
        from prefect.states import Failed

        try:
            return fn(*args, **kwargs)
        except PipelineError as e:
            with contextlib.suppress(Exception):
                get_run_logger().error("%s", e)
            return Failed(message=str(e), data=e)

    return wrapper  # type: ignore[return-value]


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O hiccups, not the user's mistakes: a PipelineError would fail the same way again."""
    try:
        state.result(raise_on_failure=True)
    except PipelineError:
        return False
    except Exception:
        return True
    return True


def call_stage_task(task: Any, *, out_dir: Path, results: Path, refresh: bool, **kwargs: Any) -> tuple[Any, bool]:
    """Run a cached stage task; (its result, whether it came from the cache).

    The cache is refreshed when asked, and when the stage's output is gone or half-written:
    a cache hit must never hand a missing directory to the next stage."""
    from flows.caching import is_complete

    refresh = refresh or not is_complete(out_dir)
    state = task.with_options(result_storage=results, refresh_cache=refresh)(
        out_dir=str(out_dir), return_state=True, **kwargs)
    return state.result(), state.name == "Cached"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Intra-op threads for concurrent CPU work (n tasks on c cores -> c/n threads each)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def stage(flow: Any, name: str) -> Any:
    """`flow` as a subflow whose run is named after its stage in the parent (`pretrain-electra`),
    not Prefect's random adjective-animal name."""
    return flow.with_options(flow_run_name=name)
