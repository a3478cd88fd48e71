"""Experiment tracking behind one small interface: MLflow for real runs, Null for none.

Trackers are passed in (never global): `log_params`, `log_metrics(step=)`, `log_artifact`,
`set_tags`, and `child(name)` for nested runs (one per stage, GLUE task or seed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def child(self, name: str) -> contextlib.AbstractContextManager[Tracker]: ...


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"hidden_size": 256}} -> {"model.hidden_size": 256}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class NullTracker:
    """Tracks nothing; lets library code call the tracker unconditionally."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[NullTracker]:
        yield self


def resolve_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else MLFLOW_TRACKING_URI, else a SQLite file in the working directory; a relative
    SQLite path made absolute, so the library, the CLI and a flow's worker all mean one file."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and not Path(rel).is_absolute():
            return f"sqlite:///{(Path.cwd() / rel).resolve()}"
    return uri


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else ./mlflow.db (absolute)."""
    return resolve_tracking_uri(None)


# MLflow 3's UI opens an experiment in its GenAI (traces) view unless the experiment says it holds
# model training runs; links add `?workflowType=machine_learning` for the UIs that read the link.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
TRAINING_VIEW = "workflowType=machine_learning"


def run_path(experiment_id: str, run_id: str) -> str:
    """The UI route of a run, training view: prefix the UI's address, or use as a link inside a
    Markdown description the UI renders (a run note, a model version's description)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: `mlruns/` beside a local SQLite store (MLflow's
    own default is `./mlruns` of whatever directory the process runs in); None for a server."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()


class MLflowTracker:
    """One MLflow run. Uses the client API with explicit run ids, so nested runs and runs
    opened by other code (a Prefect flow's parent run) never fight over the active-run stack."""

    def __init__(self, run_id: str, tracking_uri: str):
        import mlflow

        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)

    @classmethod
    def start(cls, *, tracking_uri: str | None = None, experiment: str = "electra", run_name: str | None = None,
              parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> MLflowTracker:
        import mlflow

        uri = resolve_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = client.create_experiment(experiment, artifact_location=artifact_root(uri),
                                              tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        else:
            exp_id = exp.experiment_id
            if EXPERIMENT_KIND_TAG not in exp.tags:  # an experiment made by other code: the training view too
                client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(exp_id, run_name=run_name or None, tags=all_tags)
        return cls(run.info.run_id, uri)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i:i + 500])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self._client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(p), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._client.set_tag(self.run_id, k, str(v))

    def end(self, status: str = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status=status)

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[MLflowTracker]:
        """A nested run that ends FINISHED, or FAILED/KILLED if the body raises: never left RUNNING."""
        run = self._client.get_run(self.run_id)
        exp_name = self._client.get_experiment(run.info.experiment_id).name
        child = MLflowTracker.start(tracking_uri=self.tracking_uri, experiment=exp_name, run_name=name,
                                    parent_run_id=self.run_id)
        with finished(child):
            yield child


@contextlib.contextmanager
def finished(tracker: MLflowTracker) -> Iterator[MLflowTracker]:
    """End the run whatever happens: FINISHED, KILLED on Ctrl-C, FAILED on an error."""
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    else:
        tracker.end("FINISHED")
