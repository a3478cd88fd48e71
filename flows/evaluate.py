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

from electra_pipeline import atomic
from flows.base import SAMPLE, Tracking, cpu_count, data_path, torch_threads, user_errors
from flows.params import SAMPLE_GLUE_TASKS, Concurrency, FinetuneOverrides, NonEmpty, overrides
from flows.report import glue_chart, task_table
from flows.tracking import SeedProgress, mlflow_run, sweep_hook


def finetune_config(config: FinetuneOverrides | dict[str, Any]) -> Any:
    """The resolved `FinetuneConfig`; bad keys or values name the field before any work."""
    from electra_pipeline.evaluation.finetune import FinetuneConfig
    from electra_pipeline.modeling import config as config_mod

    return config_mod.from_dict(FinetuneConfig, overrides(config), prefix="finetune_config.")


def task_names(tasks: list[str]) -> list[str]:
    """Canonical task names (`SST-2` -> `sst2`); an unknown name lists the known ones."""
    from electra_pipeline.errors import ConfigError
    from electra_pipeline.evaluation.tasks import canonical_name

    if not tasks:
        raise ConfigError("eval_tasks: give at least one task, e.g. sst2")
    names = [canonical_name(t) for t in tasks]
    return list(dict.fromkeys(names))


def task_data_dir(name: str, glue_dir: str, squad_dir: str) -> str:
    from electra_pipeline.evaluation.tasks import SQUAD_TASKS

    return data_path(squad_dir, "squad") if name in SQUAD_TASKS else data_path(glue_dir, "glue")


@task(name="finetune", task_run_name="finetune-{name}")
@user_errors
def finetune_task(name: str, checkpoint: str, tokenizer: str, data_dir: str, out_dir: str, config: dict[str, Any],
                  parent_run_id: str, tracking_uri: str, experiment: str, label: str = "electra",
                  arm: str = "") -> dict[str, Any]:
    """Fine-tune and score one task; its MLflow run `finetune-<arm>-<task>` (and the library's
    per-seed runs, `<arm>-<task>-seed<n>`) nest under the evaluation run, so every run of a pipeline
    has its own name. Progress (seed, step, share of all seeds, ETA, loss) goes into a Prefect
    progress artifact and, every 30 s, the run log."""
    from electra_pipeline.evaluation.finetune import FinetuneConfig, finetune
    from electra_pipeline.evaluation.finetune.loop import task_score
    from electra_pipeline.evaluation.tasks import get_task
    from electra_pipeline.modeling import config as config_mod

    arm = arm or label
    with mlflow_run(tracking_uri=tracking_uri, experiment=experiment, name=f"finetune-{arm}-{name}",
                    parent_run_id=parent_run_id, tags={"stage": "finetune", "task": name, "arm": arm}) as run:
        cfg = config_mod.from_dict(FinetuneConfig, config)
        progress = SeedProgress(run, seeds=len(cfg.seeds), key=f"finetune-progress-{label}-{name}",
                                label=f"fine-tuning {name} ({label})", prefix=arm)
        result = finetune(name, checkpoint, tokenizer, data_dir, out_dir, cfg, tracker=progress, progress=False)
    return {"task": name, "metrics": {k: float(v) for k, v in result.metrics.items()},
            "score": float(task_score(get_task(name), result.metrics)),
            "seeds": {str(s): {k: float(v) for k, v in m.items()} for s, m in result.seed_metrics.items()},
            "model_dir": str(Path(result.model_dir).resolve()), "run_id": run.run_id}


def pretraining_params(checkpoint: str) -> dict[str, Any]:
    """What the checkpoint is, when it comes from a pre-training run directory: objective, preset,
    budget and step, so evaluate runs compare in MLflow by more than a path."""
    run = Path(checkpoint).parent
    if not (run / "summary.json").is_file() or not (run / "config.json").is_file():
        return {}
    try:
        summary, cfg = json.loads((run / "summary.json").read_text()), json.loads((run / "config.json").read_text())
        return {"pretrain.objective": cfg["train"]["objective"], "pretrain.preset": cfg["preset"],
                "pretrain.budget": json.dumps(summary["compute"]["budget"]), "pretrain.steps": summary["steps"],
                "pretrain.tokens": summary["compute"]["tokens"], "pretrain.init_from": cfg.get("init_from", "")}
    except (ValueError, KeyError, TypeError):  # a run directory of an older layout: the path says enough
        return {}


@task(name="baseline", task_run_name="baseline-{name}")
@user_errors
def baseline_task(name: str, checkpoint: str, tokenizer: str, data_dir: str, cache_dir: str, config: dict[str, Any],
                  parent_run_id: str, tracking_uri: str, experiment: str, label: str = "electra") -> dict[str, Any]:
    """The random-init twin of `checkpoint` (the `label` model) fine-tuned on one task (cached on
    shape, task, recipe and data: a sweep pays once), and the task's majority-class metrics."""
    from electra_pipeline.evaluation import baselines
    from electra_pipeline.evaluation.finetune import FinetuneConfig
    from electra_pipeline.evaluation.finetune.runner import build_task, majority_baseline
    from electra_pipeline.evaluation.tasks.base import subset
    from electra_pipeline.modeling import config as config_mod

    cfg = config_mod.from_dict(FinetuneConfig, config)
    t = build_task(name, cfg)
    train = subset(t.read(data_dir, "train"), cfg.max_train_examples, cfg.data_seed)
    evals = {s: subset(t.read(data_dir, s), cfg.max_eval_examples, cfg.data_seed) for s in t.eval_splits}
    majority = majority_baseline(t, train, evals)  # every dev split: MNLI has matched and mismatched
    bow = None
    if t.kind != "qa":  # the floor: a linear model on word counts of the same examples
        from electra_pipeline.evaluation.probe import bow_baseline

        bow = bow_baseline(t, train, evals[next(iter(t.eval_splits))], seed=cfg.data_seed).score
    key = baselines.cache_key(checkpoint, name, config, data_dir)
    cached = Path(cache_dir) / "results" / f"{name}-{key}.json"
    if cached.is_file():
        return {"task": name, "majority": majority, "bow": bow, "random_init": json.loads(cached.read_text()),
                "cached": True}
    random_ckpt = baselines.random_init_checkpoint(checkpoint, Path(cache_dir) / "checkpoints")
    result = finetune_task.fn(name, str(random_ckpt), tokenizer, data_dir, str(Path(cache_dir) / "runs" / f"{name}-{key}"),
                              config, parent_run_id, tracking_uri, experiment, label="random init",
                              arm=f"{label}-random-init")
    atomic.write_text(cached, json.dumps(result, indent=2) + "\n")
    return {"task": name, "majority": majority, "bow": bow, "random_init": result, "cached": False}


@flow(name="evaluate", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def evaluate(
    checkpoint: str,
    tokenizer: str,
    tasks: NonEmpty = SAMPLE_GLUE_TASKS,
    glue_dir: str = SAMPLE,
    squad_dir: str = SAMPLE,
    output_dir: str = "outputs/evaluate",
    config: FinetuneOverrides = FinetuneOverrides(),
    concurrency: Concurrency = 2,
    label: str = "electra",
    baselines: bool = True,
    baseline_dir: str = "",
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
        config: FinetuneConfig fields to change, e.g. {"seeds": [1], "max_train_examples": 2000};
            empty ones keep the default.
        concurrency: Tasks fine-tuned at once (CPU threads are split between them).
        label: Name of the model in tables and MLflow (electra, mlm).
        baselines: Also fine-tune the same config at random initialisation (same recipe and seeds) and
            score the majority class, side by side with the pre-trained model.
        baseline_dir: Cache of random-init results, shared across runs; empty: baselines/ beside output_dir.
        tracking: MLflow store, experiment and parent run.
    """
    names = task_names(tasks)
    cfg = finetune_config(config)
    out = Path(output_dir)
    uri = tracking.uri()
    from electra_pipeline.evaluation import baselines as baselines_lib
    from electra_pipeline.evaluation.metrics import GLUE_SCORE_METRICS

    glue_names = [n for n in names if n in GLUE_SCORE_METRICS] if baselines else []
    # the random-init twins train beside the pre-trained model, not after it
    workers = max(1, min(concurrency, len(names) + len(glue_names)))
    with tracking.run(f"evaluate-{label}", stage="evaluate", model=label) as run:
        run.log_params({"checkpoint": checkpoint, "tasks": names, "finetune": dataclasses.asdict(cfg),
                        **pretraining_params(checkpoint)})
        runner = ThreadPoolTaskRunner(max_workers=workers)
        with runner, torch_threads(max(1, cpu_count() // workers)):
            futures = {n: runner.submit(finetune_task, parameters=dict(
                name=n, checkpoint=checkpoint, tokenizer=tokenizer, data_dir=task_data_dir(n, glue_dir, squad_dir),
                out_dir=str(out / n), config=dataclasses.asdict(cfg), parent_run_id=run.run_id, tracking_uri=uri,
                experiment=tracking.experiment, label=label)) for n in names}
            cache = baseline_dir or str(out.parent / "baselines")
            base_futures = {n: runner.submit(baseline_task, parameters=dict(
                name=n, checkpoint=checkpoint, tokenizer=tokenizer, data_dir=task_data_dir(n, glue_dir, squad_dir),
                cache_dir=cache, config=dataclasses.asdict(cfg), parent_run_id=run.run_id, tracking_uri=uri,
                experiment=tracking.experiment, label=label)) for n in glue_names}
            wait(list(futures.values()) + list(base_futures.values()))
            results: dict[str, Any] = {}
            failed: dict[str, str] = {}
            for n, fut in futures.items():
                state = fut.state
                if state.is_completed():
                    results[n] = fut.result()
                else:
                    failed[n] = state.message or state.name
            base = {n: f.result() for n, f in base_futures.items() if f.state.is_completed() and n in results}
            for n, b in base.items():  # the gain over random init with its 95% interval
                b["gain"] = baselines_lib.gain_interval(
                    n, Path(results[n]["model_dir"]).parent, Path(b["random_init"]["model_dir"]).parent,
                    task_data_dir(n, glue_dir, squad_dir), cfg.max_eval_examples, cfg.data_seed).to_dict()
            add_baselines_to_cards(results, base, run.run_id)
        summary = summarize(results, failed, label, out, base, checkpoint)
        run.log_metrics(evaluation_metrics(summary))
        run.set_tags({"failed_tasks": ",".join(failed) or "none"})
        for name in ("results.json", "results.md", "glue_scores.png"):
            if (out / name).is_file():
                run.log_artifact(out / name)
        if not results:
            from electra_pipeline.errors import PipelineError

            raise PipelineError("every evaluation task failed: " + "; ".join(f"{n}: {m}" for n, m in failed.items()))
    summary["run_id"] = run.run_id
    return summary


def add_baselines_to_cards(results: dict[str, Any], base: dict[str, Any], run_id: str | None = None) -> None:
    """Each fine-tuned model's card with its task's random-init and majority baselines beside its
    results, and its evidence with the evaluation's MLflow run (the export, and so the registered
    version, carries both)."""
    from electra_pipeline.evaluation import baselines
    from electra_pipeline.evaluation.finetune.runner import write_model_card
    from electra_pipeline.evaluation.metrics import task_score
    from electra_pipeline.evaluation.stats import Interval

    for n, b in base.items():
        if n in results:
            model_dir = Path(results[n]["model_dir"])
            write_model_card(model_dir.parent, {"random_init": b["random_init"]["metrics"], "majority": b["majority"]})
            ev = baselines.evidence(n, results[n]["score"], task_score(n, b["majority"]), b["random_init"]["score"],
                                    Interval(**b["gain"]), b.get("bow")) | ({"run_id": run_id} if run_id else {})
            atomic.write_text(model_dir / baselines.EVIDENCE_FILE, json.dumps(ev, indent=2) + "\n")
            results[n]["evidence"] = ev


def summarize(results: dict[str, Any], failed: dict[str, str], label: str, out: Path,
              base: dict[str, Any] | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """results.json, results.md and the bar chart for one model's evaluation, with the random-init
    and majority-class baselines beside it when `base` holds them."""
    from electra_pipeline.evaluation import baselines
    from electra_pipeline.evaluation import results as results_file

    comparison = None
    if base:
        random_init = {n: b["random_init"] for n, b in base.items()}
        majority = {n: b["majority"] for n, b in base.items()}
        comparison = {"random_init": random_init, "majority": majority,
                      "bow": {n: b.get("bow") for n, b in base.items()},
                      "comparison": baselines.compare(results, random_init, majority,
                                                      bow={n: b.get("bow") for n, b in base.items()},
                                                      gains={n: b["gain"] for n, b in base.items() if "gain" in b})}
    draft = {"label": label, "tasks": results, "failed": failed, "glue_score": results_file.glue_score(results),
             **({"baselines": comparison} if comparison else {})}
    summary = results_file.write(out, results, task_table({label: draft}), label=label, checkpoint=checkpoint,
                                 failed=failed, baselines=comparison)
    if results:
        glue_chart({label: summary}, out / "glue_scores.png")
    return summary


def evaluation_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """An evaluation's MLflow metrics: <task>/score and glue/score, and their baselines."""
    out = {f"{n}/score": float(r["score"]) for n, r in summary.get("tasks", {}).items()}
    if summary.get("glue_score") is not None:
        out["glue/score"] = float(summary["glue_score"])
    return out | baseline_metrics(summary)


def baseline_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """MLflow keys for the baselines: <task>/score_random, <task>/score_majority, <task>/gain with its
    95% interval <task>/gain_low and <task>/gain_high, and the same under glue/."""
    comp = (summary.get("baselines") or {}).get("comparison") or {}
    out: dict[str, float] = {}
    rows = {**comp.get("tasks", {}), **({"glue": comp["glue"]} if "glue" in comp else {})}
    for n, row in rows.items():
        for k, suffix in (("random_init", "score_random"), ("majority", "score_majority"), ("gain", "gain")):
            if row.get(k) is not None:
                out[f"{n}/{suffix}"] = float(row[k])
        if row.get("gain_ci"):
            out[f"{n}/gain_low"] = float(row["gain_ci"]["low"])
            out[f"{n}/gain_high"] = float(row["gain_ci"]["high"])
    return out
