"""Serve the pipeline's deployments from this process: no work pool, no worker.

    python infra/serve.py                      # every deployment below
    python infra/serve.py --only cpu-demo     # just one

Runs start in subprocesses of this one, in its working directory (outputs under ./outputs,
MLflow in ./mlflow.db unless MLFLOW_TRACKING_URI is set). Point PREFECT_API_URL at a
`prefect server start` first (infra/start-prefect-server.sh) so the UI can trigger them. For
deployments that a worker picks up from a work pool, see infra/prefect.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# The parameter presets. Anything left out takes the flow's default (cpu preset, shipped
# sample corpus and GLUE slice, ./outputs, ./mlflow.db).
SMALL_GPU: dict[str, Any] = {
    "preset": "small", "device": "cuda", "max_steps": 200_000,
    "corpus": ["data/corpus"], "glue_dir": "data/glue",
    "eval_tasks": ["cola", "sst2", "mrpc", "stsb", "qnli", "rte"],
    "finetune_config": {}, "eval_concurrency": 1, "quantize": True,
}


def deployments(only: list[str] | None = None, overrides: dict[str, Any] | None = None) -> list[Any]:
    """The RunnerDeployments to serve; `overrides` replace parameters of every one (tests)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.compare import electra_vs_mlm
    from flows.pipeline import electra_pipeline
    from flows.study import efficiency_study

    extra = overrides or {}
    module = {"entrypoint_type": EntrypointType.MODULE_PATH}  # found by import wherever runs start
    specs = {
        "cpu-demo": lambda: electra_pipeline.to_deployment(
            **module, name="cpu-demo", parameters={**extra}, tags=["demo", "cpu"],
            description="The CPU demo: cpu preset on the shipped sample corpus and GLUE slices (minutes on a CPU)."),
        "cpu-nightly": lambda: electra_pipeline.to_deployment(
            **module, name="cpu-nightly", parameters={**extra}, tags=["demo", "cpu", "scheduled"],
            schedules=[Cron("0 3 * * *", timezone="UTC", active=False)],
            description="Schedule example: the demo every night at 03:00 UTC (inactive until switched on in the UI)."),
        "small-gpu": lambda: electra_pipeline.to_deployment(
            **module, name="small-gpu", parameters={**SMALL_GPU, **extra}, tags=["gpu"],
            description="ELECTRA-Small on a GPU: data/corpus and data/glue under the working directory."),
        "electra-vs-mlm-cpu": lambda: electra_vs_mlm.to_deployment(
            **module, name="cpu", parameters={**extra}, tags=["demo", "cpu", "compare"],
            description="ELECTRA vs the BERT MLM baseline at equal training FLOPs, cpu preset."),
        "study-cpu": lambda: efficiency_study.to_deployment(
            **module, name="cpu", parameters={**extra}, tags=["cpu", "study"],
            description="Every objective at the cpu preset's FLOPs on the shipped sample: table, curves, x cheaper."),
    }
    unknown = sorted(set(only or []) - set(specs))
    if unknown:
        raise SystemExit(f"error: unknown deployment {unknown[0]!r}; choose from {', '.join(specs)}")
    return [make() for name, make in specs.items() if not only or name in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")
    parser.add_argument("--params", type=json.loads, default=None, metavar="JSON",
                        help="parameters that override every deployment's, e.g. '{\"max_steps\": 50}'")
    parser.add_argument("--limit", type=int, default=1, help="flow runs executed at once (default 1: one CPU job)")
    args = parser.parse_args(argv)

    from prefect import serve

    serve(*deployments(args.only, args.params), limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
