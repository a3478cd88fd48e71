"""Serve the pipeline's deployments from this process: no work pool, no worker.

    python infra/serve.py                      # every deployment below
    python infra/serve.py --only cpu-demo     # just one

Runs start in subprocesses of this one, in its working directory (outputs under ./outputs,
MLflow in ./mlflow.db unless MLFLOW_TRACKING_URI is set). Point PREFECT_API_URL at a
`prefect server start` first (infra/start-prefect-server.sh) so the UI can trigger them. For
deployments that a worker picks up from a work pool, see infra/prefect.yaml (generated from the
DEPLOYMENTS below: `python infra/serve.py --write-prefect-yaml`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# The deployments, declared once: `deployments()` serves them from this process and
# `python infra/serve.py --write-prefect-yaml` renders infra/prefect.yaml for work pools from them.
# Parameters left out take the flow's default (cpu preset, shipped sample corpus and GLUE slice,
# ./outputs, ./mlflow.db).
SMALL_GPU: dict[str, Any] = {
    "preset": "small", "device": "cuda", "max_steps": 200_000,
    "corpus": ["data/corpus"], "glue_dir": "data/glue",
    "eval_tasks": ["cola", "sst2", "mrpc", "stsb", "qnli", "rte"],
    "finetune_config": {}, "eval_concurrency": 1, "quantize": True,
}
NIGHTLY = {"cron": "0 3 * * *", "timezone": "UTC", "active": False}
DEPLOYMENTS: dict[str, dict[str, Any]] = {  # key (for --only) -> deployment
    "cpu-demo": {
        "name": "cpu-demo", "entrypoint": "flows.pipeline:electra_pipeline", "tags": ["demo", "cpu"],
        "description": "The CPU demo: the cpu preset on the shipped sample corpus and GLUE slices (minutes on "
                       "2 CPU cores)."},
    "cpu-nightly": {
        "name": "cpu-nightly", "entrypoint": "flows.pipeline:electra_pipeline", "tags": ["demo", "cpu", "scheduled"],
        "schedule": NIGHTLY,
        "description": "Schedule example: the demo every night at 03:00 UTC (switch the schedule on in the UI)."},
    "small-gpu": {
        "name": "small-gpu", "entrypoint": "flows.pipeline:electra_pipeline", "tags": ["gpu"],
        "parameters": SMALL_GPU, "pool": "electra-gpu",
        "description": "ELECTRA-Small on a GPU: corpus in data/corpus, GLUE in data/glue under the working "
                       "directory."},
    "electra-vs-mlm-cpu": {
        "name": "cpu", "entrypoint": "flows.compare:electra_vs_mlm", "tags": ["demo", "cpu", "compare"],
        "description": "ELECTRA against the BERT MLM baseline at equal training FLOPs, cpu preset."},
    "study-cpu": {
        "name": "cpu", "entrypoint": "flows.study:efficiency_study", "tags": ["cpu", "study"],
        "description": "Every objective at the cpu preset's training FLOPs on the shipped sample: table, curves "
                       "and how many times cheaper ELECTRA is than MLM."},
}
POOLS = ("electra-cpu", "electra-gpu")  # process work pools; a deployment without "pool" goes to the first

YAML_HEADER = """\
# Deployments that a Prefect worker runs from a work pool. Generated from infra/serve.py, where
# every deployment is declared once: edit DEPLOYMENTS there, then
#   python infra/serve.py --write-prefect-yaml
#
#   cd <repo root>
#   infra/start-worker.sh            # creates the pools, runs the `prefect deploy` below, starts a worker
# or by hand:
#   prefect work-pool create electra-cpu --type process
#   prefect --no-prompt deploy --all --prefect-file infra/prefect.yaml
#   ELECTRA_PIPELINE_DIR=$PWD prefect worker start --pool electra-cpu
#
# Entrypoints are module paths: the worker's Python has the package installed (pip install -e .),
# so the code is found wherever runs start. Flow runs start in $ELECTRA_PIPELINE_DIR (set in the
# worker's environment, resolved when each run starts), so outputs land in
# $ELECTRA_PIPELINE_DIR/outputs and MLflow in $ELECTRA_PIPELINE_DIR/mlflow.db unless the worker
# sets MLFLOW_TRACKING_URI (a team's MLflow server).

"""


def _flow(entrypoint: str) -> Any:
    import importlib

    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module), name)


def deployments(only: list[str] | None = None, overrides: dict[str, Any] | None = None) -> list[Any]:
    """The RunnerDeployments to serve; `overrides` replace parameters of every one (tests)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    unknown = sorted(set(only or []) - set(DEPLOYMENTS))
    if unknown:
        raise SystemExit(f"error: unknown deployment {unknown[0]!r}; choose from {', '.join(DEPLOYMENTS)}")
    out = []
    for key, d in DEPLOYMENTS.items():
        if only and key not in only:
            continue
        schedule = d.get("schedule")
        out.append(_flow(d["entrypoint"]).to_deployment(
            name=d["name"], entrypoint_type=EntrypointType.MODULE_PATH,  # found by import wherever runs start
            parameters={**d.get("parameters", {}), **(overrides or {})}, tags=d["tags"],
            description=d["description"],
            schedules=[Cron(schedule["cron"], timezone=schedule["timezone"], active=schedule["active"])]
            if schedule else None))
    return out


def prefect_yaml() -> str:
    """infra/prefect.yaml's text: DEPLOYMENTS on the process work pools."""
    import yaml

    items = []
    for d in DEPLOYMENTS.values():
        item: dict[str, Any] = {"name": d["name"], "entrypoint": d["entrypoint"], "description": d["description"],
                                "tags": d["tags"], "parameters": d.get("parameters", {})}
        if "schedule" in d:
            item["schedules"] = [d["schedule"]]
        item["work_pool"] = {"name": d.get("pool", POOLS[0]), "work_queue_name": "default"}
        items.append(item)
    body = {"name": "electra-pipeline", "build": None, "push": None,
            "pull": [{"prefect.deployments.steps.set_working_directory":
                      {"directory": "{{ $ELECTRA_PIPELINE_DIR }}"}}],
            "deployments": items}
    return YAML_HEADER + yaml.safe_dump(body, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")
    parser.add_argument("--params", type=json.loads, default=None, metavar="JSON",
                        help="parameters that override every deployment's, e.g. '{\"max_steps\": 50}'")
    parser.add_argument("--limit", type=int, default=1, help="flow runs executed at once (default 1: one CPU job)")
    parser.add_argument("--write-prefect-yaml", action="store_true",
                        help="write infra/prefect.yaml (the same deployments on work pools) and exit")
    args = parser.parse_args(argv)
    if args.write_prefect_yaml:
        from pathlib import Path

        (Path(__file__).parent / "prefect.yaml").write_text(prefect_yaml())
        return 0

    from prefect import serve

    serve(*deployments(args.only, args.params), limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
