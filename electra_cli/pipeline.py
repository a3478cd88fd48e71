"""`electra pipeline`: run the `electra-pipeline` flow (`flows.pipeline`) from a shell.

This module sits above `flows/` (it imports the flow; nothing in `flows/` or the library imports it).

Flags come from `PipelineParams` (one per flow parameter). Everything is validated before
Prefect starts, so a typo costs a second, not a server start-up. Without PREFECT_API_URL the
flow reports to a temporary local Prefect server (see `prefect_api`), whose database
`prefect server start` opens afterwards: the run is in the UI either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from electra_cli.flags import unset
from flows.params import PipelineParams, overrides, validated

STAGES = ("corpus", "tokenizer", "examples", "pretrain", "finetune")
PREFECT_UI = "http://127.0.0.1:4200"  # where `prefect server start` serves the UI


_METAVARS = {"corpus": "SOURCE", "eval_tasks": "TASK"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per flow parameter, typed from the model; defaults shown in --help."""
    for name, field in PipelineParams.model_fields.items():
        tp = field.annotation
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        default = overrides(field.default) if isinstance(field.default, BaseModel) else field.default
        help_ = field.description + ("" if unset(default) else f" (default: {json.dumps(default)})")
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_}
        if tp is bool:
            p.add_argument(_flag(name), action=argparse.BooleanOptionalAction, **kw)
            continue
        if origin is list:
            kw["nargs"] = "+"
            inner = args[0]
            if typing.get_origin(inner) is typing.Literal:
                kw["choices"] = typing.get_args(inner)
            kw["metavar"] = _METAVARS.get(name) if "choices" not in kw else None
        elif origin is typing.Literal:
            kw["choices"] = args
        elif isinstance(tp, type) and issubclass(tp, BaseModel):  # a stage's config overrides
            kw["type"] = _mapping
            kw["metavar"] = "JSON|FILE"
        elif int in args or tp is int:
            kw["type"] = int
        p.add_argument(_flag(name), **{k: v for k, v in kw.items() if v is not None})
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                   help="one config override, e.g. --set pretrain.train.lr=1e-3 --set finetune.seeds=[1,2]; "
                        f"STAGE is one of {', '.join(STAGES)}; VALUE is parsed as YAML")


def _mapping(text: str) -> dict[str, Any]:
    """A dict flag: inline JSON/YAML, or the path of a YAML/JSON file."""
    import yaml

    path = Path(text)
    raw = path.read_text(encoding="utf-8") if not text.lstrip().startswith("{") and path.is_file() else text
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"not JSON/YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a mapping like '{\"train\": {\"lr\": 0.001}}' or a YAML file")
    return value


def params_from_args(args: argparse.Namespace) -> PipelineParams:
    """Flags -> validated parameters; `--set` lands in the matching `<stage>_config`."""
    import yaml

    from electra_pipeline.errors import ConfigError

    values = {k: v for k, v in vars(args).items() if k in PipelineParams.model_fields}
    for item in getattr(args, "sets", []) or []:
        key, sep, raw = item.partition("=")
        stage, _, path = key.strip().partition(".")
        if not sep or stage not in STAGES or not path:
            raise ConfigError(f"--set {item}: expected STAGE.FIELD=VALUE with STAGE one of {', '.join(STAGES)}")
        field = f"{stage}_config"
        node = values.setdefault(field, overrides(PipelineParams.model_fields[field].default))
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return validated(values)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra pipeline` on the `electra` command (`electra_cli.build_parser`)."""
    p = subparsers.add_parser(
        "pipeline", help="run the whole pipeline as a Prefect flow with MLflow tracking",
        description="Run the electra-pipeline Prefect flow: corpus ingestion -> WordPiece -> examples -> "
                    "pre-training -> intrinsic evaluation -> GLUE/SQuAD fine-tuning (next to random init and the "
                    "majority class) -> ONNX export registered in MLflow. Defaults: the cpu preset at its short "
                    "budget on the shipped sample corpus and GLUE slices, outputs under ./outputs, MLflow in "
                    "./mlflow.db (a few minutes on 2 CPU cores). Finished stages are cached: rerun the same command "
                    "to resume after a failure.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def _die_with_parent() -> None:
    """In the server's child process (Linux): exit when the CLI process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _drain_prefect_workers() -> None:
    """Flush Prefect's background log and event senders (as prefect_test_harness does);
    otherwise they retry a stopped server for a minute at exit."""
    for module, name in (("prefect.logging.handlers", "APILogWorker"), ("prefect.events.worker", "EventsWorker")):
        with contextlib.suppress(Exception):
            import importlib

            getattr(importlib.import_module(module), name).drain_all(timeout=10, at_exit=False)


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API this run reports to: the configured server, else a temporary local one.

    Prefect's own temporary server is a child in the terminal's process group, so Ctrl-C killed
    it before the interrupted flow could report its state (and the CLI then retried a dead API
    for minutes). This one runs in its own session: Ctrl-C reaches only the flow, which saves a
    checkpoint, marks its runs Crashed and its MLflow runs KILLED, then the server is stopped.
    It uses the same database (PREFECT_HOME) that `prefect server start` opens later."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    if PREFECT_API_URL.value():
        yield str(PREFECT_API_URL.value())
        return
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    log = tempfile.NamedTemporaryFile(prefix="prefect-server-", suffix=".log", delete=False)
    print(f"Starting a temporary Prefect server on http://127.0.0.1:{port} (log: {log.name})", file=sys.stderr)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
         "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED",
                                                                              "false")})
    try:
        deadline = time.monotonic() + float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                from electra_pipeline.errors import PipelineError

                raise PipelineError(f"the temporary Prefect server did not start; see {log.name}, or start one with "
                                    "`prefect server start` and set PREFECT_API_URL")
            time.sleep(0.3)
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_prefect_workers()  # send the last logs and events while the server is still up
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _prefect_ui_hint(flow_run_id: str, configured: bool) -> str:
    """Where to see the run: the configured server's UI, or the local database via a server."""
    if configured:
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

        ui = PREFECT_UI_URL.value() or str(PREFECT_API_URL.value()).rstrip("/").removesuffix("/api")
        return f"Prefect UI:  {ui}/runs/flow-run/{flow_run_id}"
    return (f"Prefect UI:  prefect server start   # then {PREFECT_UI}/runs/flow-run/{flow_run_id}\n"
            "             (it opens the local database this run used)")


def run(args: argparse.Namespace) -> int:
    """Validate, run the flow, print the results table and the two UI commands."""
    params = params_from_args(args)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # 2-core machines
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download in the run log
    from flows.pipeline import electra_pipeline, plan

    plan(params)  # bad parameters fail here, before a server starts or a stage runs
    from prefect.settings import PREFECT_API_URL

    configured = bool(PREFECT_API_URL.value())
    t0 = time.perf_counter()
    with prefect_api():
        try:
            state = electra_pipeline(**params.model_dump(), return_state=True)
        except KeyboardInterrupt:
            print("interrupted: finished stages are cached and the pre-training checkpoint kept; run the same "
                  "command again to resume", file=sys.stderr)
            return 130
        seconds = time.perf_counter() - t0
        prefect_hint = _prefect_ui_hint(str(state.state_details.flow_run_id), configured)
        result = state.result() if state.is_completed() else None
    from flows.tracking import resolve_tracking_uri, ui_hint

    if result is None:
        print(f"error: {state.message}", file=sys.stderr)
        print(prefect_hint, file=sys.stderr)
        print(f"MLflow UI:   {ui_hint(resolve_tracking_uri(params.tracking_uri))}", file=sys.stderr)
        return 1
    from flows.report import text_table

    print()
    for objective, r in result.intrinsic.items():
        print(f"{objective}, held-out text: {r['verdict']}")
    for objective, r in result.probes.items():
        print(f"\n{objective}, frozen-encoder probes (dev scores; gains with 95% CIs):")
        print(r["table"])
        print("\n".join(r["verdict"]))
    print("\nFine-tuned (dev scores):")
    print(text_table(result.summaries))
    print()
    for s in result.stages:
        print(f"  {s.stage:<18} {'cached' if s.cached else 'ran':<7} {s.seconds:7.1f} s")
    print(f"  {'total':<18} {'':<7} {seconds:7.1f} s")
    if result.exported and result.exported.get("version"):
        e = result.exported
        if e.get("alias_reason"):
            print(f"\n@{e['alias']} {'moved to' if e['alias_moved'] else 'not given to'} version {e['version']}: "
                  f"{e['alias_reason']}")
        print(f"\nRegistered {result.exported['model_uri']} (version {result.exported['version']}); serve it with")
        print(f"  ELECTRA_MODEL_URI={result.exported['model_uri']} MLFLOW_TRACKING_URI={result.tracking_uri} "
              "bentoml serve serving.service:ElectraService")
    print(f"Outputs:     {result.run_dir}")
    print()
    print(prefect_hint)
    print(f"MLflow UI:   {ui_hint(result.tracking_uri, result.mlflow_url)}")
    return 0
