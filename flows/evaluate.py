"""Stage 5, evaluation: fine-tune the pre-trained encoder on each GLUE / SQuAD task.

Tasks run as concurrent Prefect tasks (a thread each, torch threads split between them), and
each is its own nested MLflow run: a failed task is reported in the table and does not lose
the others' results.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.base import SAMPLE, Tracking, cpu_count, data_path, torch_threads, user_errors
from flows.params import SAMPLE_GLUE_TASKS, Concurrency, NonEmpty
from flows.report import glue_chart, task_table
from flows.tracking import mlflow_run, sweep_hook


def finetune_config(overrides: dict[str, Any]) -> Any:
    """The resolved `FinetuneConfig`; bad keys or values name the field before any work."""
    from electra_pipeline import config as config_mod
    from electra_pipeline.finetune import FinetuneConfig

    return config_mod.from_dict(FinetuneConfig, dict(overrides), prefix="finetune_config.")


def task_names(tasks: list[str]) -> list[str]:
    """Canonical task names (`SST-2` -> `sst2`); an unknown name lists the known ones."""
    from electra_pipeline.errors import ConfigError
    from electra_pipeline.tasks import canonical_name

    if not tasks:
        raise ConfigError("eval_tasks: give at least one task, e.g. sst2")
    names = [canonical_name(t) for t in tasks]
    return list(dict.fromkeys(names))


def task_data_dir(name: str, glue_dir: str, squad_dir: str) -> str:
    from electra_pipeline.tasks import SQUAD_TASKS

    return data_path(squad_dir, "squad") if name in SQUAD_TASKS else data_path(glue_dir, "glue")


@task(name="finetune", task_run_name="finetune-{name}")
@user_errors
def finetune_task(name: str, checkpoint: str, tokenizer: str, data_dir: str, out_dir: str, config: dict[str, Any],
                  parent_run_id: str, tracking_uri: str, experiment: str) -> dict[str, Any]:
    """Fine-tune and score one task; its MLflow run (and the library's per-seed runs) nest
    under the evaluation run."""
    from electra_pipeline import config as config_mod
    from electra_pipeline.finetune import FinetuneConfig, finetune
    from electra_pipeline.finetune.loop import task_score
    from electra_pipeline.tasks import get_task

    with mlflow_run(tracking_uri=tracking_uri, experiment=experiment, name=f"finetune-{name}",
                    parent_run_id=parent_run_id, tags={"stage": "finetune", "task": name}) as run:
        result = finetune(name, checkpoint, tokenizer, data_dir, out_dir,
                          config_mod.from_dict(FinetuneConfig, config), tracker=run, progress=False)
    return {"task": name, "metrics": {k: float(v) for k, v in result.metrics.items()},
            "score": float(task_score(get_task(name), result.metrics)),
            "model_dir": str(Path(result.model_dir).resolve()), "run_id": run.run_id}


@flow(name="evaluate", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def evaluate(
    checkpoint: str,
    tokenizer: str,
    tasks: NonEmpty = SAMPLE_GLUE_TASKS,
    glue_dir: str = SAMPLE,
    squad_dir: str = SAMPLE,
    output_dir: str = "outputs/evaluate",
    config: dict[str, Any] = {},  # noqa: B006 (Prefect copies parameter defaults)
    concurrency: Concurrency = 2,
    label: str = "electra",
    tracking: Tracking = Tracking(),
) -> dict[str, Any]:
    """Fine-tune `checkpoint` on each task; results.json/.md and a GLUE bar chart in `output_dir`.

    Args:
        checkpoint: HF ELECTRA directory (a pre-trained discriminator, or the MLM model of the baseline).
        tokenizer: The tokenizer.json it was pre-trained with.
        tasks: GLUE task names (sst2, mrpc, ...) or squad_v1 / squad_v2.
        glue_dir: GLUE root (<dir>/SST-2/train.tsv ...); `sample` is the shipped slices.
        squad_dir: SQuAD directory; `sample` is the shipped slices.
        output_dir: Where each task's directory goes.
        config: FinetuneConfig overrides, e.g. {"seeds": [1], "max_train_examples": 2000}.
        concurrency: Tasks fine-tuned at once (CPU threads are split between them).
        label: Name of the model in tables and MLflow (electra, mlm).
        tracking: MLflow store, experiment and parent run.
    """
    names = task_names(tasks)
    cfg = finetune_config(config)
    out = Path(output_dir)
    uri = tracking.uri()
    workers = max(1, min(concurrency, len(names)))
    with tracking.run(f"evaluate-{label}", stage="evaluate", model=label) as run:
        run.log_params({"checkpoint": checkpoint, "tasks": names, "finetune": dataclasses.asdict(cfg)})
        runner = ThreadPoolTaskRunner(max_workers=workers)
        with runner, torch_threads(max(1, cpu_count() // workers)):
            futures = {n: runner.submit(finetune_task, parameters=dict(
                name=n, checkpoint=checkpoint, tokenizer=tokenizer, data_dir=task_data_dir(n, glue_dir, squad_dir),
                out_dir=str(out / n), config=dataclasses.asdict(cfg), parent_run_id=run.run_id, tracking_uri=uri,
                experiment=tracking.experiment)) for n in names}
            wait(list(futures.values()))
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for n, fut in futures.items():
            state = fut.state
            if state.is_completed():
                results[n] = fut.result()
            else:
                failed[n] = state.message or state.name
        summary = summarize(results, failed, label, out)
        run.log_metrics({f"{n}/score": r["score"] for n, r in results.items()}
                        | ({"glue/score": summary["glue_score"]} if summary["glue_score"] is not None else {}))
        run.set_tags({"failed_tasks": ",".join(failed) or "none"})
        for name in ("results.json", "results.md", "glue_scores.png"):
            if (out / name).is_file():
                run.log_artifact(out / name)
        if not results:
            from electra_pipeline.errors import PipelineError

            raise PipelineError("every evaluation task failed: " + "; ".join(f"{n}: {m}" for n, m in failed.items()))
    summary["run_id"] = run.run_id
    return summary


def summarize(results: dict[str, Any], failed: dict[str, str], label: str, out: Path) -> dict[str, Any]:
    """results.json, results.md and the bar chart for one model's evaluation."""
    from electra_pipeline import metrics

    glue = {n: r["metrics"] for n, r in results.items() if n in metrics.GLUE_SCORE_METRICS}
    score = metrics.glue_score(glue) if glue else None
    score = None if score is None or score != score else score  # NaN: only WNLI / SQuAD ran
    summary = {"label": label, "tasks": results, "failed": failed, "glue_score": score}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(task_table({label: summary}) + "\n")
    if results:
        glue_chart({label: summary}, out / "glue_scores.png")
    return summary
