"""The efficiency study: ELECTRA against its ablations and successors at equal compute.

Every objective pre-trains on the same examples for the same training FLOPs (each arm takes the
steps its own step cost buys), exports its encoder at 1/2^k of the budget, and every export is
fine-tuned on the same tasks with the same recipe and seeds (a random-init baseline beside the
full-budget ones). The result is the paper's Table 5 on your data and budget, a plot of score
against FLOPs for every objective, and how many times cheaper ELECTRA is than MLM.

One MLflow parent run per study (pretrain / intrinsic / evaluate runs nested under it, one
evaluate run per arm and checkpoint), a Prefect Markdown artifact, and study.md, study.json and
study_curves.png in `<output_dir>/study/<name>`. A failed arm is reported and the others go on;
a rerun resumes: pre-training is cached per arm, and evaluations already on disk are reused.
"""

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from pydantic import BaseModel, Field

from electra_pipeline import atomic
from flows import evaluate as evaluate_stage
from flows import pretrain as pretrain_stage
from flows.base import SAMPLE, Tracking, stage, user_errors
from flows.evaluate import evaluate
from flows.examples import build_examples
from flows.ingest import ingest_corpus
from flows.intrinsic import intrinsic
from flows.params import (
    DEFAULT_PRESET,
    DEMO_FINETUNE,
    Concurrency,
    Device,
    FinetuneOverrides,
    Name,
    NonEmpty,
    Objectives,
    Preset,
    PretrainOverrides,
    overrides,
)
from flows.pretrain import pretrain_resolved
from flows.tokenizer import train_tokenizer
from flows.tracking import experiment_id, run_url, sweep_hook, ui_hint

ALL_OBJECTIVES = ["electra", "mlm", "replace_mlm", "electra_15", "all_tokens_mlm", "mc_bert", "teams"]
Snapshots = Annotated[int, Field(ge=0, le=6)]
Budget = Annotated[float | None, Field(gt=0)]
Tokens = Annotated[int | None, Field(gt=0)]


class StudyResult(BaseModel):
    study_dir: str
    run_id: str
    mlflow_url: str
    line: str
    table: str
    learned: str
    cheaper: str
    failed: dict[str, str] = Field(default_factory=dict)


ARM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")


def _arm_configs(objectives: list[str], arms: dict[str, Any], preset: str, given: dict[str, Any],
                 device: str) -> dict[str, Any]:
    """{arm: its resolved PretrainConfig}: one arm per objective, then the named arms, each the
    shared config with its own fields on top (objective electra unless it sets one). Every arm is
    resolved here, so a bad name or value fails naming it before any arm trains."""
    from electra_pipeline.errors import ConfigError

    configs = {o: pretrain_stage.pretrain_config(preset, given, objective=o, device=device) for o in objectives}
    for name, fields in arms.items():
        if not ARM_NAME.fullmatch(name) or name in configs:
            raise ConfigError(f"arms.{name}: an arm name is 1-40 lower-case letters, digits, '.', '_' or '-', and "
                              f"not an objective of the study ({', '.join(configs)})")
        own = overrides(fields)
        merged = {**given, **{k: {**(given.get(k) or {}), **v} if isinstance(v, dict) else v for k, v in own.items()}}
        objective = (own.get("train") or {}).get("objective", "electra")
        try:
            configs[name] = pretrain_stage.pretrain_config(preset, merged, objective=objective, device=device)
        except ConfigError as e:
            raise ConfigError(f"arms.{name}.{e}") from None
    return configs


def _eval_key(pretrain_key: str, fraction: float, tasks: list[str], finetune: dict[str, Any], glue_dir: str) -> str:
    doc = json.dumps({"pretrain": pretrain_key, "fraction": fraction, "tasks": tasks, "finetune": finetune,
                      "glue": glue_dir}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


@flow(name="efficiency-study", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def efficiency_study(
    objectives: Objectives = ALL_OBJECTIVES,  # noqa: B006 (Prefect copies parameter defaults)
    arms: dict[str, PretrainOverrides] = {},  # noqa: B006
    preset: Preset = DEFAULT_PRESET,
    budget_flops: Budget = None,
    snapshots: Snapshots = 2,
    corpus_tokens: Tokens = None,
    corpus: NonEmpty = [SAMPLE],  # noqa: B006
    examples: str = "",
    tokenizer: str = "",
    eval_tasks: NonEmpty = ["sst2", "mrpc", "stsb"],  # noqa: B006
    glue_dir: str = SAMPLE,
    device: Device = "auto",
    output_dir: Name = "outputs",
    tracking_uri: str | None = None,
    experiment: Name = "efficiency-study",
    eval_concurrency: Concurrency = 2,
    pretrain_config: PretrainOverrides = PretrainOverrides(),
    finetune_config: FinetuneOverrides = FinetuneOverrides(**DEMO_FINETUNE, max_train_examples=2000),
    refresh_cache: bool = False,
) -> StudyResult:
    """Pre-train every objective at the same FLOPs, fine-tune each at fractions of the budget, compare.

    Args:
        objectives: Arms of the study: electra, mlm (BERT), the paper's ablations replace_mlm, electra_15,
            all_tokens_mlm, and the later mc_bert and teams.
        arms: More arms by name, each PretrainConfig fields on top of the shared ones (objective electra
            unless set), e.g. the seed's generator size {"gen-0.25": {"model": {"generator_fraction": 0.25,
            "share_encoder": false, "generator_layers": 0}}} or training algorithm {"two-stage": {"train":
            {"schedule": "two_stage"}}}; every arm is checked before any trains.
        preset: Model size and recipe shared by every arm (cpu: 4e13 FLOPs a few minutes each on a CPU).
        budget_flops: Training FLOPs of every arm; empty: the preset's budget (or its max_steps).
        snapshots: Fine-tune each arm also at 1/2, 1/4 ... 1/2^k of its budget (a curve, not a point).
        corpus_tokens: The low-resource setting: train every arm on only this many tokens of examples,
            epoch after epoch; empty: all of them.
        corpus: Corpus files, folders, globs or hf: datasets; `sample` is the shipped corpus.
        examples: Packed examples to train on instead of building them from `corpus` (with `tokenizer`).
        tokenizer: The tokenizer.json the `examples` were built with.
        eval_tasks: GLUE tasks every checkpoint is fine-tuned on.
        glue_dir: GLUE root; `sample` is the shipped slices.
        device: auto, cpu or cuda.
        output_dir: Root of all outputs; the study goes to <output_dir>/study/<name>.
        tracking_uri: MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db.
        experiment: MLflow experiment holding the study.
        eval_concurrency: Evaluation tasks fine-tuned at once.
        pretrain_config: PretrainConfig fields to change for every arm (empty ones keep the preset's).
        finetune_config: FinetuneConfig fields to change for every checkpoint (seeds, examples, lr);
            empty ones keep the default.
        refresh_cache: Re-run cached stages and evaluations.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.logging import get_run_logger

    from electra_pipeline.evaluation import study
    from electra_pipeline.modeling.config import RTD_OBJECTIVES
    from electra_pipeline.training import runlog

    log = get_run_logger()
    objectives = list(dict.fromkeys(objectives))
    if bool(examples) != bool(tokenizer):
        from electra_pipeline.errors import ConfigError

        raise ConfigError("examples, tokenizer: give both (prepared data) or neither (built from corpus)")
    given = overrides(pretrain_config)
    train = dict(given.get("train") or {}, snapshots=snapshots)
    if budget_flops is not None:
        train["budget_flops"] = budget_flops  # replaces the preset's budget (config.merge)
    if corpus_tokens is not None:
        train["corpus_tokens"] = corpus_tokens
    given = {**given, "train": train}
    configs = _arm_configs(objectives, arms, preset, given, device)  # every bad value fails here, before any arm
    steps = study.check_arms(configs)
    finetune = dataclasses.asdict(evaluate_stage.finetune_config(finetune_config))
    tasks = evaluate_stage.task_names(eval_tasks)
    first = configs[objectives[0]]
    budget = first.train.budget_flops
    name = (f"study-{preset}-{len(configs)}{'obj' if not arms else 'arms'}-{f'{budget:.2g}flops' if budget else 'preset'}"
            f"{f'-{corpus_tokens:.2g}tok' if corpus_tokens else ''}-{time.strftime('%Y%m%d-%H%M%S')}")
    study_dir = Path(output_dir) / "study" / name
    uri = Tracking(tracking_uri=tracking_uri).uri()
    top = Tracking(tracking_uri=uri, experiment=experiment)
    with top.run(name, stage="study", preset=preset, objectives=",".join(objectives)) as run:
        run.log_params({"objectives": ",".join(objectives), "arms": json.dumps({a: overrides(f) for a, f in arms.items()}),
                        "preset": preset, "budget_flops": budget,
                        "snapshots": snapshots, "corpus_tokens": corpus_tokens, "tasks": ",".join(tasks),
                        **{f"steps/{o}": n for o, n in steps.items()}, "finetune": json.dumps(finetune)})
        t = top.model_copy(update={"parent_run_id": run.run_id})
        common = {"output_dir": output_dir, "tracking": t, "refresh_cache": refresh_cache}
        if examples:
            ex_path, tok_path = str(Path(examples).resolve()), str(Path(tokenizer).resolve())
        else:
            c = stage(ingest_corpus, "corpus")(sources=corpus, **common)
            tok_path = stage(train_tokenizer, "tokenizer")(corpus=c.path, config={"vocab_size": first.model.vocab_size},
                                                           **common).path
            ex_path = stage(build_examples, "examples")(corpus=c.path, tokenizer=tok_path,
                                                        config={"seq_len": first.train.seq_len}, **common).path
        curves: dict[str, list[study.Point]] = {}
        auc: dict[str, float | None] = {}
        failed: dict[str, str] = {}
        random_init: dict[str, float] = {}
        floors: dict[str, float | None] = {}  # the GLUE score of the baselines without pre-training
        versus: dict[str, dict[str, Any]] = {}  # objective -> GLUE gain over random init at the full budget
        for arm, cfg in configs.items():
            try:
                pre = stage(pretrain_resolved, f"pretrain-{arm}")(config=cfg, examples=ex_path, tokenizer=tok_path,
                                                                  label=arm, **common)
                run_dir = Path(pre.summary["output_dir"])
                if cfg.train.objective in RTD_OBJECTIVES:
                    r = stage(intrinsic, f"intrinsic-{arm}")(run_dir=str(run_dir), label=arm, tracking=t)
                    auc[arm] = _unigram_auc(r)
                index = runlog.snapshots(run_dir)
                curves[arm] = []
                for snap in index:
                    frac = snap["fraction"]
                    point_auc = auc.get(arm) if frac == 1.0 else (
                        _snapshot_auc(run_dir, f"{frac:g}", arm, t, refresh_cache)
                        if cfg.train.objective in RTD_OBJECTIVES else None)
                    encoder = str(snap.get("discriminator") or snap["generator"])
                    out = study_dir.parent / "evaluate" / arm / _eval_key(pre.key, frac, tasks, finetune, glue_dir)
                    if (out / "results.json").is_file() and not refresh_cache:
                        summary = json.loads((out / "results.json").read_text())
                    else:
                        summary = stage(evaluate, f"evaluate-{arm}@{frac:g}")(
                            checkpoint=encoder, tokenizer=tok_path, tasks=tasks, glue_dir=glue_dir,
                            output_dir=str(out), config=finetune, concurrency=eval_concurrency,
                            label=f"{arm}@{frac:g}", baselines=frac == 1.0,
                            baseline_dir=str(Path(output_dir) / "baselines"), tracking=t)
                    curves[arm].append(study.Point(
                        fraction=frac, step=snap["step"], train_flops=snap["train_flops"],
                        glue_score=summary.get("glue_score"), auc=point_auc,
                        tasks={n: r["score"] for n, r in summary["tasks"].items()}))
                    base = (summary.get("baselines") or {}).get("random_init") or {}
                    random_init |= {n: b["score"] for n, b in base.items() if "score" in b}
                    comparison = (summary.get("baselines") or {}).get("comparison") or {}
                    if frac == 1.0 and comparison.get("glue"):
                        floors |= {"majority class": comparison["glue"].get("majority"),
                                   "bag-of-words": comparison["glue"].get("bow")}
                        versus[arm] = {**{k: comparison["glue"][k] for k in ("gain", "seed_gains")},
                                       "measurable": bool(comparison.get("measurable"))}
                log.info("%s: %s", arm, ", ".join(f"{p.fraction:g} -> {p.glue_score}" for p in curves[arm]))
            except Exception as e:  # one arm's failure leaves the others' results
                from electra_pipeline.errors import ConfigError

                if isinstance(e, ConfigError):
                    raise
                failed[arm] = f"{type(e).__name__}: {e}"
                log.error("arm %s failed: %s", arm, failed[arm])
        if not curves:
            from electra_pipeline.errors import PipelineError

            raise PipelineError("every arm failed: " + "; ".join(f"{o}: {m}" for o, m in failed.items()))
        result = _write(study_dir, curves, tasks, random_init, auc, versus, failed, budget, steps, corpus_tokens,
                        seeds=len(finetune["seeds"]), floors=floors)
        run.log_metrics({f"{o}/glue": study.final(cv).glue_score for o, cv in curves.items()
                         if study.final(cv).glue_score is not None}
                        | {f"{o}/auc": a for o, a in auc.items() if a is not None}
                        | {f"{o}/gain": v["gain"] for o, v in versus.items()}
                        | ({"electra/x_cheaper": result["cheaper"]["times"]} if result["cheaper"].get("times") else {}))
        for f in ("study.md", "study.json", "study_curves.png"):
            if (study_dir / f).is_file():
                run.log_artifact(study_dir / f)
        url = run_url(uri, experiment_id(run), run.run_id)
        create_markdown_artifact(key="efficiency-study", markdown=result["markdown"] + f"\n\nMLflow: {url}\n",
                                 description=result["line"])
        log.info("%s\n%s\n%s\n%s", result["table"], result["learned"], result["cheaper_sentence"], result["line"])
        log.info("MLflow: %s (%s)", url, ui_hint(uri))
    return StudyResult(study_dir=str(study_dir.resolve()), run_id=run.run_id, mlflow_url=url, line=result["line"],
                       table=result["table"], learned=result["learned"], cheaper=result["cheaper_sentence"],
                       failed=failed)


def _unigram_auc(result: dict[str, Any]) -> float | None:
    return ((result.get("unigram") or {}).get("pretrained") or {}).get("auc")


def _snapshot_auc(run_dir: Path, fraction: str, objective: str, tracking: Tracking, refresh: bool) -> float | None:
    """Held-out detection AUC of the run's snapshot at `fraction` of its budget; kept in the
    snapshot's intrinsic.json, so a rerun of the study reads it back."""
    saved = run_dir / "snapshots" / fraction / "intrinsic.json"
    if saved.is_file() and not refresh:
        return _unigram_auc(json.loads(saved.read_text()))
    return _unigram_auc(stage(intrinsic, f"intrinsic-{objective}@{fraction}")(
        run_dir=str(run_dir), snapshot=fraction, label=f"{objective}@{fraction}", tracking=tracking))


def _write(study_dir: Path, curves: dict[str, Any], tasks: list[str], random_init: dict[str, float],
           auc: dict[str, float | None], versus: dict[str, dict[str, Any]], failed: dict[str, str],
           budget: float | None, steps: dict[str, int], corpus_tokens: int | None, seeds: int = 1,
           floors: dict[str, float | None] | None = None) -> dict[str, Any]:
    """study.json, study.md and study_curves.png."""
    from electra_pipeline.evaluation import study

    ri = sum(random_init.values()) / len(random_init) if random_init else None
    plot = study.plot(curves, study_dir / "study_curves.png", random_init=ri, seeds=seeds, floors=floors,
                      title=f"GLUE ({', '.join(tasks)}) against pre-training FLOPs"
                            + (f", {corpus_tokens:,} tokens" if corpus_tokens else ""))
    table = study.table(curves, tasks, random_init, auc, versus)
    cheaper = study.cheaper(curves)
    learned = study.learned_sentence(versus)
    sentence = study.cheaper_sentence(cheaper, (versus.get("electra") or {}).get("measurable"))
    line = study.summary_line(curves, budget)
    budget_text = f"{budget:.3g} training FLOPs per arm" if budget else "the preset's budget per arm"
    md = "\n".join([
        f"# Efficiency study: {len(curves)} arms at {budget_text}", "",
        f"Steps per arm (each buys the same FLOPs): {', '.join(f'{o} {n:,}' for o, n in steps.items())}."
        + (f" Low-resource: {corpus_tokens:,} tokens of examples, epoch after epoch." if corpus_tokens else ""), "",
        "Scores at the full budget (dev, median over fine-tuning seeds); held-out AUC is the discriminator's "
        "replaced-token detection on held-out text (objectives whose head is trained for it):", "",
        table, "", learned, "", sentence, "", study.ordering_note(curves), "",
        *(["Failed arms: " + "; ".join(f"{o}: {m}" for o, m in failed.items()), ""] if failed else []),
        f"![curves]({plot.name})", "", "Curves (GLUE, and held-out AUC for the RTD arms, by fraction of the budget):", "",
        *[f"- {o}: " + ", ".join(f"{p.fraction:g} ({p.train_flops:.2g} FLOPs) {p.glue_score:.1f}"
                                 + ("" if p.auc is None else f" (AUC {p.auc:.3f})")
                                 for p in sorted(cv, key=lambda p: p.fraction) if p.glue_score is not None)
          for o, cv in curves.items()],
        "", f"`{line}`", ""])
    doc = {"line": line, "budget_flops": budget, "corpus_tokens": corpus_tokens, "steps": steps, "tasks": tasks,
           "curves": {o: [dataclasses.asdict(p) for p in cv] for o, cv in curves.items()},
           "random_init": random_init, "versus_random_init": versus, "auc": auc, "cheaper": cheaper,
           "failed": failed}
    atomic.write_text(study_dir / "study.json", json.dumps(doc, indent=2) + "\n")
    atomic.write_text(study_dir / "study.md", md)
    return {"markdown": md, "table": table, "learned": learned, "cheaper": cheaper, "cheaper_sentence": sentence,
            "line": line}
