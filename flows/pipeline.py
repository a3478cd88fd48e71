"""`electra_pipeline`: the product's main job, as one Prefect flow that reads like the pipeline.

    corpus ingestion -> WordPiece -> example building -> pre-training (ELECTRA and/or the MLM
    baseline) -> held-out detection + frozen-encoder probes -> fine-tuning of the served task
    -> ONNX export + MLflow Model Registry (the champion alias only for a model that earned it)

Each stage is its own flow (a subflow here) with its own nested MLflow run under the
pipeline's parent run. Every parameter is checked and every config resolved before the first
stage starts. The deterministic stages and pre-training are cached on their inputs, so a
rerun (or a resumed failure) starts at the first stage whose inputs changed.

Run it: `electra pipeline` (`electra_cli/pipeline.py`; see `--help`).
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from electra_pipeline import atomic
from flows import evaluate as evaluate_stage
from flows import examples as examples_stage
from flows import ingest as ingest_stage
from flows import pretrain as pretrain_stage
from flows import tokenizer as tokenizer_stage
from flows.base import SAMPLE, StageOutput, Tracking, data_path, stage, user_errors
from flows.evaluate import evaluate
from flows.examples import build_examples
from flows.export import export_model
from flows.ingest import ingest_corpus
from flows.intrinsic import intrinsic
from flows.params import (
    DEFAULT_PRESET,
    DEMO_FINETUNE,
    SAMPLE_GLUE_TASKS,
    SERVED_TASKS,
    Concurrency,
    CorpusOverrides,
    Device,
    ExamplesOverrides,
    FinetuneOverrides,
    Name,
    NonEmpty,
    Objectives,
    PipelineParams,
    Preset,
    PretrainOverrides,
    Steps,
    TokenizerOverrides,
    overrides,
    validated,
)
from flows.pretrain import pretrain_resolved
from flows.probe import probe
from flows.report import glue_chart, headline_columns, loss_chart, parent_metrics, report_markdown, run_note, task_table
from flows.tokenizer import checkpoint_tokenizer, train_tokenizer
from flows.tracking import experiment_id, run_url, runs_url, save_runs_view, sweep_hook, ui_hint


@dataclass
class Plan:
    """Every config resolved and every input checked: what the run will do, before it does it."""

    params: PipelineParams
    corpus: Any  # CorpusConfig
    tokenizer: Any  # TokenizerConfig
    examples: Any  # ExamplesConfig
    pretrain: dict[str, Any]  # objective -> PretrainConfig
    finetune: Any  # FinetuneConfig
    tasks: list[str]
    probe_tasks: list[str]

    def to_params(self) -> dict[str, Any]:
        """The full resolved configs, as the parent MLflow run's params."""
        from electra_pipeline.training.train import tracked_params

        p = self.params
        return {"pipeline": {"preset": p.preset, "corpus": p.corpus, "eval_tasks": self.tasks,
                             "probe_tasks": self.probe_tasks,
                             "objectives": p.objectives, "init_from": p.init_from, "glue_dir": p.glue_dir, "squad_dir": p.squad_dir,
                             "output_dir": p.output_dir, "register_as": p.register_as, "alias": p.alias,
                             "export": p.export, "quantize": p.quantize},
                "corpus": dataclasses.asdict(self.corpus), "tokenizer": dataclasses.asdict(self.tokenizer),
                "examples": dataclasses.asdict(self.examples),
                "pretrain": tracked_params(self.pretrain[p.objectives[0]]),
                "finetune": dataclasses.asdict(self.finetune)}

    def describe(self) -> str:
        """The resolved plan in a few lines: the one resolution of this run's configs, logged
        before the first stage (the full configs are the parent MLflow run's params)."""
        from electra_pipeline.training.train import tracked_params

        lines = [f"tokenizer: vocab {self.tokenizer.vocab_size}; examples: seq_len {self.examples.seq_len}"]
        for objective, cfg in self.pretrain.items():
            t = tracked_params(cfg)["train"]
            budget = (f" (budget {cfg.train.budget_flops:.3g} FLOPs)" if cfg.train.budget_flops is not None else
                      f" (budget {cfg.train.budget_minutes:g} min)" if cfg.train.budget_minutes is not None else "")
            lines.append(f"pretrain-{objective}: {cfg.preset} preset, {cfg.model.num_layers} x {cfg.model.hidden_size}, "
                         f"{t['max_steps']:,} steps{budget} of batch {t['batch_size']} x {t['seq_len']}, "
                         f"lr {t['lr']:g}, warm-up {t['warmup_steps']:,}, device {t['device']}")
        f = self.finetune
        lr = f"lr grid {f.lr_grid}" if f.lr_grid else "the task's lr" if f.lr is None else f"lr {f.lr:g}"
        lines.append(f"evaluate: {', '.join(self.tasks)} (seeds {f.seeds}, {lr}, pooling {f.pooling}); "
                     f"probes: {', '.join(self.probe_tasks) or 'none'}")
        return "\n".join(lines)


def pretrain_overrides(params: PipelineParams) -> dict[str, Any]:
    """`pretrain_config` with `init_from` folded in (the checkpoint fixes the model sizes)."""
    return {**overrides(params.pretrain_config), **({"init_from": params.init_from} if params.init_from else {})}


def plan(params: PipelineParams) -> Plan:
    """Resolve and check everything up front; a problem raises ConfigError/DataError naming the
    parameter or file, before any stage (or MLflow run) starts."""
    from electra_pipeline.data import corpus as corpus_mod
    from electra_pipeline.errors import ConfigError, DataError
    from electra_pipeline.evaluation.tasks import SQUAD_TASKS, glue_tasks_present

    objectives = list(dict.fromkeys(params.objectives))
    pre: dict[str, Any] = {}
    for o in objectives:
        def resolve(steps: int | None, objective: str = o) -> Any:
            return pretrain_stage.pretrain_config(params.preset, pretrain_overrides(params), objective=objective,
                                                  max_steps=steps, device=params.device)

        cfg = resolve(params.max_steps)
        budgeted = cfg.train.budget_flops is not None or cfg.train.budget_minutes is not None
        if pre and params.match_compute and not budgeted:  # later objectives get the first one's training FLOPs
            cfg = resolve(pretrain_stage.compute_matched_steps(pre[objectives[0]], cfg))
        pre[o] = cfg
    first = pre[objectives[0]]
    tok = tokenizer_stage.tokenizer_config(params.tokenizer_config, vocab_size=first.model.vocab_size)
    ex = examples_stage.examples_config(params.examples_config, seq_len=first.train.seq_len)
    tasks = evaluate_stage.task_names(params.eval_tasks)
    probes = evaluate_stage.task_names(params.probe_tasks) if params.probe_tasks else []
    if any(t in SQUAD_TASKS for t in probes):
        raise ConfigError("probe_tasks: probes cover GLUE sentence (pair) tasks, not SQuAD")
    glue = list(dict.fromkeys([t for t in tasks if t not in SQUAD_TASKS] + probes))
    if glue and not params.glue_dir.startswith("hf:"):
        present = set(glue_tasks_present(data_path(params.glue_dir, "glue")))
        missing = [t for t in glue if t not in present]
        if missing:
            raise DataError(f"glue_dir: {data_path(params.glue_dir, 'glue')} has no train/dev files for "
                            f"{', '.join(missing)} (found: {', '.join(sorted(present)) or 'none'})")
    if any(t in SQUAD_TASKS for t in tasks):
        data_path(params.squad_dir, "squad")
    try:
        params.register_as.format(task="t", preset="p", objective="o")
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"register_as: {params.register_as!r} has an unknown placeholder ({e}); use {{task}}, "
                          "{preset} or {objective}") from None
    corpus_mod.expand_sources([data_path(s, "corpus") for s in params.corpus])  # missing files fail now
    return Plan(params=params.model_copy(update={"objectives": objectives}),
                corpus=ingest_stage.corpus_config(params.corpus_config), tokenizer=tok, examples=ex, pretrain=pre,
                finetune=evaluate_stage.finetune_config(params.finetune_config), tasks=tasks,
                probe_tasks=probes)


def parent_run_name(p: Plan) -> str:
    """What the parent MLflow run is: preset, objectives, budget, start time
    (e.g. `pipeline-cpu-electra+mlm-4e13flops-1412`)."""
    t = p.pretrain[p.params.objectives[0]].train
    budget = (f"{t.budget_flops:.2g}flops".replace("+", "") if t.budget_flops is not None else
              f"{t.budget_minutes:g}min" if t.budget_minutes is not None else f"{t.max_steps}steps")
    init = "-continued" if p.params.init_from else ""
    return f"pipeline-{p.params.preset}-{'+'.join(p.params.objectives)}-{budget}{init}-{time.strftime('%H%M')}"


class StageTiming(BaseModel):
    stage: str
    seconds: float
    cached: bool = False
    path: str = ""


class StageClock:
    """Each stage's wall-clock time and whether its cache answered: the report's stage table, and
    a log line as each stage ends."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.stages: list[StageTiming] = []
        self._name, self._t0 = "", 0.0

    def start(self, name: str) -> None:
        self._name, self._t0 = name, time.perf_counter()

    def done(self, out: Any, path: str = "") -> Any:
        """Record the stage started last; `out` (returned as it is) is its result."""
        cached = isinstance(out, StageOutput) and out.cached
        timing = StageTiming(stage=self._name, seconds=time.perf_counter() - self._t0, cached=cached,
                             path=out.path if isinstance(out, StageOutput) else path)
        self.stages.append(timing)
        self.log.info("%s: %s in %.1f s", timing.stage, "cached" if cached else "done", timing.seconds)
        return out


class PipelineResult(BaseModel):
    """What a pipeline run returns (and the CLI prints)."""

    run_id: str
    tracking_uri: str
    mlflow_url: str
    mlflow_runs_url: str = ""  # the experiment's runs list with the headline columns
    mlflow_ui: str  # the command (local store) or address (server) of the MLflow UI
    run_dir: str
    stages: list[StageTiming] = Field(default_factory=list)
    summaries: dict[str, dict[str, Any]] = Field(default_factory=dict)  # objective -> evaluation summary
    intrinsic: dict[str, dict[str, Any]] = Field(default_factory=dict)  # objective -> intrinsic evaluation
    probes: dict[str, dict[str, Any]] = Field(default_factory=dict)  # objective -> probe result
    exported: dict[str, Any] | None = None
    table: str = ""


def _run_dir(output_dir: str) -> Path:
    from prefect.runtime import flow_run

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(output_dir) / "runs" / f"{stamp}-{flow_run.name or 'local'}"


def _publish(result: PipelineResult, params: PipelineParams, run: Any, run_dir: Path,
             pretrained: dict[str, StageOutput]) -> None:
    """report.md, results.json and the charts in the run directory and the parent MLflow run;
    the report as the Prefect run's Markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    report = report_markdown(params, result)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run_dir / "report.md", report)
    atomic.write_text(run_dir / "results.json", json.dumps(result.model_dump(), indent=2) + "\n")
    files = [run_dir / "report.md", run_dir / "results.json", glue_chart(result.summaries, run_dir / "glue_scores.png")]
    if len(pretrained) > 1:  # the objectives' curves on shared axes
        files.append(loss_chart({o: Path(s.summary["output_dir"]) / "metrics.jsonl" for o, s in pretrained.items()},
                                run_dir / "loss_curves.png"))
    for path in files:
        if path is not None:
            run.log_artifact(path)
    parent = parent_metrics(result)
    run.log_metrics(parent)
    run.set_tags({"mlflow.note.content": run_note(params, result)})
    served = next(iter(result.summaries[params.objectives[0]]["tasks"]), "")
    save_runs_view(result.tracking_uri, experiment_id(run), headline_columns(parent, params.objectives, served))
    create_markdown_artifact(report, key="electra-pipeline-report", description=f"Results and MLflow run {run.run_id}")


@flow(name="electra-pipeline", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def electra_pipeline(
    preset: Preset = DEFAULT_PRESET,
    corpus: NonEmpty = [SAMPLE],  # noqa: B006 (Prefect copies parameter defaults)
    eval_tasks: NonEmpty = SERVED_TASKS,
    probe_tasks: list[str] = SAMPLE_GLUE_TASKS,
    glue_dir: str = SAMPLE,
    squad_dir: str = SAMPLE,
    objectives: Objectives = ["electra"],  # noqa: B006
    init_from: str = "",
    max_steps: Steps = None,
    match_compute: bool = True,
    device: Device = "auto",
    output_dir: Name = "outputs",
    tracking_uri: str | None = None,
    experiment: Name = "electra-pipeline",
    export: bool = True,
    register_as: str = "electra-{task}",
    alias: Name = "champion",
    force_alias: bool = False,
    quantize: bool = False,
    eval_concurrency: Concurrency = 2,
    corpus_config: CorpusOverrides = CorpusOverrides(),
    tokenizer_config: TokenizerOverrides = TokenizerOverrides(),
    examples_config: ExamplesOverrides = ExamplesOverrides(),
    pretrain_config: PretrainOverrides = PretrainOverrides(),
    finetune_config: FinetuneOverrides = FinetuneOverrides(**DEMO_FINETUNE),
    refresh_cache: bool = False,
) -> PipelineResult:
    """Corpus -> WordPiece -> examples -> pre-training -> GLUE/SQuAD fine-tuning -> ONNX + registry.

    Args:
        preset: Model size and recipe: cpu (learns on a CPU budget, minutes), tiny (tests), small, base, large.
        corpus: Corpus files, folders, globs or hf: datasets; `sample` is the corpus shipped in the package.
        eval_tasks: Tasks fine-tuned, each next to its random-init twin: GLUE (sst2, mrpc, cola, stsb, qnli, rte,
            ...) and/or squad_v1 / squad_v2; the first is exported and served.
        probe_tasks: GLUE tasks of the frozen-encoder probes (seconds, next to random init, bag-of-words and the
            majority class); empty: no probes.
        glue_dir: GLUE root (<dir>/SST-2/train.tsv ...); `sample` is the shipped slices.
        squad_dir: SQuAD directory; `sample` is the shipped slices.
        objectives: Pre-training objectives; ["electra", "mlm"] compares ELECTRA with the BERT MLM baseline.
        init_from: Continue pre-training from this checkpoint (a run directory or a Hugging Face ELECTRA
            directory): its sizes and vocabulary replace the preset's and the WordPiece stage; empty: random init.
        max_steps: Pre-training steps, replacing the preset's budget; empty: the preset's (cpu: its FLOPs budget,
            tiny: 300 steps).
        match_compute: With several objectives, give each the first one's training FLOPs (the MLM baseline
            gets more, cheaper steps); off: the same number of steps.
        device: auto (CUDA when available), cpu or cuda.
        output_dir: Root of all outputs, relative to the working directory.
        tracking_uri: MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db.
        experiment: MLflow experiment.
        export: Export the fine-tuned model to ONNX and register it in the MLflow Model Registry.
        register_as: Registered model name; {task}, {preset} and {objective} are filled in; empty: do not register.
        alias: Registry alias moved to the new version when its dev score beats the current holder's (serve
            models:/<name>@<alias>); every version also gets `challenger`.
        force_alias: Move the alias to the new version whatever its score.
        quantize: Also export a dynamic int8 ONNX model.
        eval_concurrency: Evaluation tasks fine-tuned at once (CPU threads are split between them).
        corpus_config: CorpusConfig fields to change (empty ones keep the default), e.g. {"min_line_chars": 20}.
        tokenizer_config: TokenizerConfig fields to change; empty ones keep the default, vocab_size the model's.
        examples_config: ExamplesConfig fields to change; empty ones keep the default, seq_len the model's.
        pretrain_config: PretrainConfig fields to change, nested like config.json (e.g. {"train": {"lr": 0.0005}});
            empty ones keep the preset's.
        finetune_config: FinetuneConfig fields to change; the default is a one-seed CPU demo, {} the reference
            recipe.
        refresh_cache: Re-run cached stages (pre-training still resumes a half-finished run).
    """
    from prefect.logging import get_run_logger

    log = get_run_logger()
    params = validated(dict(
    preset=preset, corpus=corpus, eval_tasks=eval_tasks, probe_tasks=probe_tasks, glue_dir=glue_dir,
    squad_dir=squad_dir, objectives=objectives, init_from=init_from, max_steps=max_steps,
    match_compute=match_compute, device=device, output_dir=output_dir, tracking_uri=tracking_uri,
    experiment=experiment, export=export, register_as=register_as, alias=alias, force_alias=force_alias,
    quantize=quantize, eval_concurrency=eval_concurrency, corpus_config=corpus_config,
    tokenizer_config=tokenizer_config, examples_config=examples_config, pretrain_config=pretrain_config,
    finetune_config=finetune_config, refresh_cache=refresh_cache))
    p = plan(params)
    log.info("plan:\n%s", p.describe())
    uri = Tracking(tracking_uri=tracking_uri).uri()  # resolved once: every stage logs to the same store
    run_dir = _run_dir(output_dir)
    clock = StageClock(log)
    top = Tracking(tracking_uri=uri, experiment=experiment)
    objective_names = ",".join(p.params.objectives)
    lineage = {"init_from": init_from} if init_from else {}
    with top.run(parent_run_name(p), stage="pipeline", preset=preset, objectives=objective_names, **lineage) as run:
        run.log_params(p.to_params())
        t = top.model_copy(update={"parent_run_id": run.run_id})
        common = {"output_dir": output_dir, "tracking": t, "refresh_cache": refresh_cache}
        clock.start("corpus")
        c = clock.done(stage(ingest_corpus, "corpus")(sources=corpus, config=dataclasses.asdict(p.corpus), **common))
        clock.start("tokenizer")
        if init_from:  # the checkpoint's own vocabulary, not a new one
            tok = stage(checkpoint_tokenizer, "tokenizer")(source=init_from, **common)
        else:
            tok = stage(train_tokenizer, "tokenizer")(corpus=c.path, config=dataclasses.asdict(p.tokenizer), **common)
        clock.done(tok)
        clock.start("examples")
        ex = clock.done(stage(build_examples, "examples")(corpus=c.path, tokenizer=tok.path,
                                                         config=dataclasses.asdict(p.examples), **common))
        summaries: dict[str, dict[str, Any]] = {}
        intrinsic_results: dict[str, dict[str, Any]] = {}
        probes: dict[str, dict[str, Any]] = {}
        pretrained: dict[str, StageOutput] = {}
        for objective in p.params.objectives:
            clock.start(f"pretrain-{objective}")
            pretrained[objective] = clock.done(stage(pretrain_resolved, f"pretrain-{objective}")(
                config=p.pretrain[objective], examples=ex.path, tokenizer=tok.path, **common))
            run_path = pretrained[objective].summary["output_dir"]
            clock.start(f"intrinsic-{objective}")
            intrinsic_results[objective] = clock.done(stage(intrinsic, f"intrinsic-{objective}")(
                run_dir=run_path, label=objective, tracking=t), path=run_path)
        for objective in p.params.objectives if p.probe_tasks else []:
            # the first objective's table carries the MLM arm beside it when both were pre-trained
            other = "mlm" if objective != "mlm" and "mlm" in pretrained else ""
            run_path = pretrained[objective].summary["output_dir"]
            clock.start(f"probe-{objective}")
            probes[objective] = clock.done(stage(probe, f"probe-{objective}")(
                run_dir=run_path, glue_dir=glue_dir, tasks=p.probe_tasks, label=objective,
                compare=pretrained[other].summary["output_dir"] if other else "", compare_label=other or "mlm",
                tracking=t), path=run_path)
        for objective in p.params.objectives:
            out = str(run_dir / "evaluate" / objective)
            clock.start(f"evaluate-{objective}")
            summaries[objective] = clock.done(stage(evaluate, f"evaluate-{objective}")(
                checkpoint=pretrained[objective].path, tokenizer=tok.path, tasks=p.tasks, glue_dir=glue_dir,
                squad_dir=squad_dir, output_dir=out, config=dataclasses.asdict(p.finetune),
                concurrency=eval_concurrency, label=objective, baseline_dir=str(Path(output_dir) / "baselines"),
                tracking=t), path=out)
        exported = None
        if export:
            objective = p.params.objectives[0]
            done = summaries[objective]["tasks"]
            name = next(n for n in p.tasks if n in done)  # evaluate fails the run when none finished
            registered = register_as.format(task=name, preset=preset, objective=objective)
            out = str(run_dir / "export" / name)
            clock.start("export")
            exported = clock.done(stage(export_model, "export")(
                model_dir=done[name]["model_dir"], output_dir=out, registered_name=registered, alias=alias,
                force_alias=force_alias, quantize=quantize, tracking=t), path=out)

        result = PipelineResult(run_id=run.run_id, tracking_uri=uri,
                                mlflow_url=run_url(uri, experiment_id(run), run.run_id),
                                mlflow_runs_url=runs_url(uri, experiment_id(run)), mlflow_ui=ui_hint(uri),
                                run_dir=str(run_dir.resolve()), stages=clock.stages, summaries=summaries,
                                intrinsic=intrinsic_results, probes=probes, exported=exported,
                                table=task_table(summaries))
        _publish(result, p.params, run, run_dir, pretrained)
        failed = {f"{o}/{n}": m for o, s in summaries.items() for n, m in s.get("failed", {}).items()}
        if failed:
            from electra_pipeline.errors import PipelineError

            raise PipelineError("evaluation failed for " + "; ".join(f"{k}: {m}" for k, m in failed.items()))
    return result
