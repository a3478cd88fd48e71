"""MLflow runs as the flows see them: one parent run per pipeline run, a nested run per stage.

Flows create runs and pass run ids (strings) to tasks; a task rebuilds its tracker with
`MLflowTracker(run_id, tracking_uri)`. Every run is ended by the `mlflow_run` context manager
(FINISHED, FAILED, or KILLED on Ctrl-C / cancellation), and a flow-level hook sweeps runs a
killed process could not end, so no run is left RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from electra_pipeline.tracking import (
    TRAINING_VIEW,
    MLflowTracker,
    Tracker,
    resolve_tracking_uri,  # noqa: F401 (the flows' name for it)
    run_path,
)

MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
FLOW_RUN_TAG = "prefect.flow_run_id"
ROOT_RUN_TAG = "prefect.root_flow_run_id"  # the top-level flow run: what a crash hook knows


def is_server(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https", "databricks")


def ui_hint(uri: str, url: str | None = None) -> str:
    """How to see a run (`url`) or the store: the server's own UI, or `mlflow ui` on a local store."""
    if is_server(uri):
        return url or uri
    return f"mlflow ui --backend-store-uri {uri}" + (f"   # then {url}" if url else "")


COMPARISON_VIEW = "headline"  # the saved runs-list view the pipeline keeps on its experiment


def _ui_base(uri: str) -> str:
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else MLFLOW_UI


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """A link to the run: the server itself, or where `mlflow ui` serves a local store."""
    return f"{_ui_base(uri)}/{run_path(experiment_id, run_id)}"


def runs_url(uri: str, experiment_id: str, view: str | None = COMPARISON_VIEW) -> str:
    """A link to the experiment's runs list, opened in a saved view (see `save_runs_view`)."""
    shared = f"&viewStateShareKey={view}" if view else ""
    return f"{_ui_base(uri)}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}{shared}"


def save_runs_view(uri: str, experiment_id: str, columns: list[str], name: str = "Headline comparison",
                   key: str = COMPARISON_VIEW) -> None:
    """Store a runs-list view on the experiment with MLflow's saved-view mechanism (the experiment
    tag `mlflow.sharedViewState.<key>` behind the UI's Share button and its `viewStateShareKey`
    link): these metric columns shown, newest runs first. The default list shows no metric column."""
    import mlflow

    now = int(time.time() * 1000)
    keys = [f"metrics.`{c}`" for c in columns]
    state = {"selectedColumns": keys, "columnOrder": keys,  # in this order, each wide enough for its name
             "columnWidths": {k: 6 * len(c) + 30 for k, c in zip(keys, columns)},
             "orderByKey": "attributes.start_time", "orderByAsc": False, "runsHiddenMode": "SHOW_ALL"}
    view = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    mlflow.MlflowClient(tracking_uri=uri).set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}",
                                                            json.dumps(view))


def experiment_id(tracker: MLflowTracker) -> str:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracker.tracking_uri).get_run(tracker.run_id).info.experiment_id


def _prefect_tags() -> dict[str, str]:
    """Link the MLflow run back to the Prefect flow run that made it (and the sweep's key)."""
    from prefect.runtime import flow_run

    tags: dict[str, str] = {}
    if flow_run.id:
        tags[FLOW_RUN_TAG] = str(flow_run.id)
        tags[ROOT_RUN_TAG] = str(flow_run.root_flow_run_id or flow_run.id)
        tags["prefect.flow_run_name"] = str(flow_run.name)
        if flow_run.ui_url:
            tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return tags


def _ending_status(exc: BaseException) -> str:
    """KILLED for a user stop (Ctrl-C, a cancellation's SIGTERM), FAILED for anything else."""
    from prefect.exceptions import TerminationSignal

    return "KILLED" if isinstance(exc, (KeyboardInterrupt, TerminationSignal)) else "FAILED"


@contextlib.contextmanager
def mlflow_run(*, tracking_uri: str, experiment: str, name: str, parent_run_id: str | None = None,
               tags: dict[str, str] | None = None) -> Iterator[MLflowTracker]:
    """A (nested) MLflow run for the body, tagged with the Prefect flow run, always ended."""
    tracker = MLflowTracker.start(tracking_uri=tracking_uri, experiment=experiment, run_name=name,
                                  parent_run_id=parent_run_id, tags={**_prefect_tags(), **(tags or {})})
    try:
        yield tracker
    except BaseException as e:
        tracker.end(_ending_status(e))
        raise
    else:
        tracker.end("FINISHED")


def end_orphaned_runs(tracking_uri: str, experiment: str, flow_run_id: str, status: str = "KILLED") -> int:
    """End every RUNNING run of `flow_run_id` (and runs nested under them): the process that
    owned them was killed before its context managers could run. Returns how many were ended."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    running = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                 max_results=1000)
    ours = {r.info.run_id for r in running
            if flow_run_id in (r.data.tags.get(FLOW_RUN_TAG), r.data.tags.get(ROOT_RUN_TAG))}
    changed = True
    while changed:  # children created by the library (per seed) carry only mlflow.parentRunId
        extra = {r.info.run_id for r in running if r.data.tags.get("mlflow.parentRunId") in ours} - ours
        ours |= extra
        changed = bool(extra)
    for run_id in ours:
        client.set_terminated(run_id, status=status)
    return len(ours)


def sweep_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_crashed / on_cancellation hook: the runner calls it after killing the run's
    process, so it ends the MLflow runs that process left RUNNING."""
    params = flow_run.parameters or {}
    where = params.get("tracking") if isinstance(params.get("tracking"), dict) else params
    uri = resolve_tracking_uri(where.get("tracking_uri"))
    experiment = where.get("experiment") or "electra-pipeline"
    with contextlib.suppress(Exception):  # a hook must not turn a crash into a second error
        end_orphaned_runs(uri, experiment, str(flow_run.id))


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def artifact_key(text: str) -> str:
    """A Prefect artifact key from any text: Prefect accepts only lowercase letters, digits and
    dashes (objectives such as replace_mlm and labels such as electra@0.5 have others)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


class _Forwarding:
    """A Tracker wrapper: everything but what a subclass overrides goes to `self.inner`."""

    inner: Tracker

    def log_params(self, params: dict[str, Any]) -> None:
        self.inner.log_params(params)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.inner.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.inner.set_tags(tags)

    def child(self, name: str) -> contextlib.AbstractContextManager[Tracker]:
        return self.inner.child(name)


class PrefectProgress(_Forwarding):
    """A Tracker that forwards to another and mirrors step metrics into a Prefect progress
    artifact, so the UI shows pre-training advance without the library importing Prefect."""

    def __init__(self, inner: Tracker, *, total_steps: int, key: str, label: str, every_s: float = 3.0,
                 log_every_s: float = 30.0):
        self.inner = inner
        self.log_every_s = log_every_s  # a line in the flow run's log (and the console) this often
        self._logged = 0.0
        self.run_id = inner.run_id
        self.total_steps = total_steps
        self.key = artifact_key(key)
        self.label = label
        self.every_s = every_s
        self._artifact_id: Any = None
        self._last = 0.0
        self._t0 = time.monotonic()
        self._heldout: dict[str, float] = {}  # the latest held-out scores (every train.eval_every steps)
        self._heldout_step = 0  # the step they were scored at

    def start(self, step: int = 0) -> None:
        from prefect.artifacts import create_progress_artifact

        self._artifact_id = create_progress_artifact(
            progress=100.0 * step / self.total_steps, key=self.key,
            description=f"{self.label}: step {step}/{self.total_steps}")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, step)
        if step is None:
            return
        heldout = {k: v for k, v in metrics.items() if k.startswith("heldout/")}
        if heldout:
            self._heldout, self._heldout_step = self._heldout | heldout, step
        now = time.monotonic()
        if now - self._last < self.every_s and step < self.total_steps:
            return
        self._last = now
        self.update(step, metrics)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        from prefect.artifacts import update_progress_artifact

        if self._artifact_id is None:
            self.start(step)
        done = metrics.get("progress", step / self.total_steps)  # budgets: the trainer's own share
        shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("loss/gen", "loss/disc", "disc/accuracy", "gen/accuracy",
                                                           "throughput/tokens_per_s", "train/loss") if k in metrics)
        if "heldout/unigram_auc" in self._heldout:
            shown += (f"{', ' if shown else ''}held-out ROC-AUC {self._heldout['heldout/unigram_auc']:.3f} "
                      f"(at step {self._heldout_step})")
        elapsed = time.monotonic() - self._t0
        eta = f", ETA {_duration(elapsed * (1 - done) / done)}" if 0 < done < 1 else ""
        desc = f"{self.label}: step {step} ({100 * done:.0f}%{eta})" + (f": {shown}" if shown else "")
        with contextlib.suppress(Exception):  # the UI mirror must never stop training
            update_progress_artifact(self._artifact_id, progress=min(100.0, 100.0 * done), description=desc)
        now = time.monotonic()
        if now - self._logged >= self.log_every_s or done >= 1:
            self._logged = now
            with contextlib.suppress(Exception):
                from prefect.logging import get_run_logger

                get_run_logger().info(desc)


class SeedProgress(PrefectProgress):
    """PrefectProgress for a fine-tuning task: the library trains each seed under `child(...)`;
    every seed's steps report into one progress artifact and log line, as a share of all seeds."""

    def __init__(self, inner: Tracker, *, seeds: int, key: str, label: str, every_s: float = 3.0,
                 log_every_s: float = 30.0, prefix: str = ""):
        super().__init__(inner, total_steps=1, key=key, label=label, every_s=every_s, log_every_s=log_every_s)
        self.seeds = max(1, seeds)
        self.prefix = prefix  # before each seed run's name: `electra-sst2-seed1`, not both arms' `sst2-seed1`
        self.base_label = label
        self._done_seeds = 0

    def start(self, step: int = 0) -> None:
        from prefect.artifacts import create_progress_artifact

        self._artifact_id = create_progress_artifact(progress=0.0, key=self.key,
                                                     description=f"{self.base_label}: starting")

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[Tracker]:
        with self.inner.child(f"{self.prefix}-{name}" if self.prefix else name) as seed_tracker:
            self.label = f"{self.base_label}, seed {self._done_seeds + 1}/{self.seeds}"
            yield _SeedTracker(seed_tracker, self)
        self._done_seeds += 1

    def seed_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        if step is None or "progress" not in metrics:
            return
        now = time.monotonic()
        if now - self._last < self.every_s and metrics["progress"] < 1:
            return
        self._last = now
        self.update(step, {**metrics, "progress": (self._done_seeds + metrics["progress"]) / self.seeds})


class _SeedTracker(_Forwarding):
    """One seed's tracker: forwards everything, and its step metrics to the task's SeedProgress."""

    def __init__(self, inner: Tracker, parent: SeedProgress):
        self.inner, self.parent = inner, parent
        self.run_id = inner.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, step)
        self.parent.seed_metrics(metrics, step)
