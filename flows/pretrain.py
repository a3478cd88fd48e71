"""Stage 4, joint ELECTRA pre-training (or the BERT MLM baseline) on the packed examples.

The run directory is named by a key over the examples, tokenizer, config and training code,
so a rerun with the same inputs hits Prefect's cache, and a rerun after a crash or Ctrl-C
finds its checkpoints and resumes exactly where it stopped.
"""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from electra_pipeline.modeling.config import PretrainConfig
from flows.base import RESULTS_DIR, StageOutput, Tracking, call_stage_task, user_errors
from flows.caching import STAGE_CACHE, code_fingerprint, input_key, mark_complete, stage_key
from flows.params import DEFAULT_PRESET, Device, Objective, Preset, PretrainOverrides, Steps, overrides
from flows.tracking import PrefectProgress, sweep_hook


def pretrain_config(preset: str, config: PretrainOverrides | dict[str, Any], *, objective: str | None = None,
                    max_steps: int | None = None, device: str | None = None) -> PretrainConfig:
    """The one resolution of a pre-training request: preset, then the `pretrain_config`
    overrides, then the explicit knobs, through the library's resolver (`presets.resolve`, which
    the `electra pretrain` command uses too); validated, so a bad value names its field
    (`train.lr: must be > 0`) before any stage runs."""
    from electra_pipeline.modeling import presets

    given = overrides(config)
    train: dict[str, Any] = dict(given.get("train") or {})
    if objective is not None:
        train["objective"] = objective
    if max_steps is not None:  # an explicit step count: the library's policy replaces the preset's budget
        train["max_steps"] = max_steps
    if device is not None:
        train["device"] = device
    return presets.resolve(preset, None, {**given, **({"train": train} if train else {})})


def compute_matched_steps(reference: Any, other: Any) -> int:
    """Steps that give `other` the training FLOPs of `reference` (the paper's compute-matched
    comparison): an MLM step skips the generator, so the baseline gets more steps."""
    from electra_pipeline.training.flops import train_step_flops

    budget = reference.train.max_steps * train_step_flops(reference.model, reference.train).total
    return max(1, round(budget / train_step_flops(other.model, other.train).total))


def _code() -> str:
    from electra_pipeline.data import batches
    from electra_pipeline.modeling import model, objectives
    from electra_pipeline.training import checkpoint, optim, pretrainer, runtime, train

    return code_fingerprint(train, optim, runtime, pretrainer, model, objectives, batches, checkpoint)


def pretrain_plan(cfg: Any, examples: str, tokenizer: str, output_dir: str) -> tuple[Any, str, Path]:
    """(config bound to its inputs and run directory, stage key, run directory)."""
    from electra_pipeline.data.batches import ExampleShards
    from electra_pipeline.modeling import config as config_mod

    vocab = ExampleShards(examples).vocab_size  # WordPiece may stop short of the requested size
    cfg = config_mod.merge(cfg, {"data": examples, "tokenizer": tokenizer, "model": {"vocab_size": vocab}})
    recipe = {k: v for k, v in config_mod.to_dict(cfg).items() if k not in ("data", "tokenizer", "output_dir",
                                                                             "tracking")}
    inputs = [input_key(examples), input_key(tokenizer)] + ([input_key(cfg.init_from)] if cfg.init_from else [])
    key = stage_key("pretrain", inputs=inputs, config=recipe, code=_code())
    out = Path(output_dir) / "pretrain" / f"{cfg.train.objective}-{cfg.preset}-{key}"
    return config_mod.merge(cfg, {"output_dir": str(out.resolve())}), key, out


@task(name="pretrain", cache_policy=STAGE_CACHE, persist_result=True)
@user_errors
def pretrain_task(key: str, out_dir: str, config: dict[str, Any], run_id: str, tracking_uri: str) -> dict[str, Any]:
    """Train (resuming from the run directory's last checkpoint if there is one); mirrors
    progress into a Prefect progress artifact through the tracker it hands the library."""
    from electra_pipeline.modeling import config as config_mod
    from electra_pipeline.modeling.config import PretrainConfig
    from electra_pipeline.tracking import MLflowTracker
    from electra_pipeline.training import checkpoint
    from electra_pipeline.training.train import pretrain

    cfg = config_mod.from_dict(PretrainConfig, config)
    out = Path(out_dir)
    resume = out if checkpoint.list_checkpoints(out) else None
    objective = cfg.train.objective
    tracker = PrefectProgress(MLflowTracker(run_id, tracking_uri), total_steps=cfg.train.max_steps,
                              key=f"pretrain-progress-{objective}", label=f"pre-training {objective} ({cfg.preset})")
    tracker.start(0)
    result = pretrain(cfg, resume=resume, tracker=tracker, progress=False)
    tracker.update(result.steps, result.metrics)
    for warning in result.warnings:  # into the Prefect UI's run log too
        get_run_logger().warning(warning)
    encoder = result.discriminator_dir if result.discriminator_dir is not None else result.generator_dir
    summary = {"output_dir": str(out.resolve()), "encoder_dir": str(Path(encoder).resolve()),
               "generator_dir": str(Path(result.generator_dir).resolve()),
               "discriminator_dir": str(Path(result.discriminator_dir).resolve()) if result.discriminator_dir else None,
               "steps": result.steps, "resumed_from": str(resume.resolve()) if resume else None,
               "metrics": {k: float(v) for k, v in result.metrics.items()}, "warnings": result.warnings}
    mark_complete(out, {"stage": "pretrain", "key": key, "summary": summary})
    return summary


@flow(name="pretrain", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def pretrain(
    examples: str,
    tokenizer: str,
    preset: Preset = DEFAULT_PRESET,
    objective: Objective = "electra",
    max_steps: Steps = None,
    device: Device = "auto",
    output_dir: str = "outputs",
    config: PretrainOverrides = PretrainOverrides(),
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
) -> StageOutput:
    """Pre-train on packed examples into `<output_dir>/pretrain/<objective>-<preset>-<key>`.

    The stage started on its own (UI, deployment): its parameters resolve through
    `pretrain_config`, the function the pipeline's and the study's plans resolve with, and the
    resolved config trains in `pretrain_resolved`.

    Args:
        examples: Packed examples directory (build-examples flow).
        tokenizer: The tokenizer.json the examples were built with.
        preset: Model size and recipe: cpu (learns on a CPU budget, minutes), tiny (tests), small, base, large.
        objective: electra (generator + discriminator) or mlm (the BERT baseline).
        max_steps: Optimiser steps; empty: the preset's.
        device: auto (CUDA when available), cpu or cuda.
        output_dir: Root of all pipeline outputs.
        config: PretrainConfig fields to change, nested like config.json (e.g. {"train": {"lr": 0.0005}});
            empty ones keep the preset's.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists (a half-finished run still resumes).
    """
    cfg = pretrain_config(preset, config, objective=objective, max_steps=max_steps, device=device)
    return pretrain_resolved.fn(cfg, examples, tokenizer, output_dir=output_dir, tracking=tracking,
                                refresh_cache=refresh_cache)


@flow(name="pretrain", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def pretrain_resolved(
    config: PretrainConfig,
    examples: str,
    tokenizer: str,
    output_dir: str = "outputs",
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
    label: str = "",
) -> StageOutput:
    """Pre-train with a config its caller resolved (`pretrain_config`): the pipeline's and the
    study's stage, so the config their plan logged is the one that trains.

    Args:
        config: The resolved PretrainConfig; its data, tokenizer and vocabulary size are bound here.
        examples: Packed examples directory (build-examples flow).
        tokenizer: The tokenizer.json the examples were built with.
        output_dir: Root of all pipeline outputs.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists (a half-finished run still resumes).
        label: The arm's name in the MLflow run name (`pretrain-<label>`); empty: the objective.
    """
    from electra_pipeline.modeling import config as config_mod
    from electra_pipeline.training.preflight import check_inputs
    from electra_pipeline.training.train import tracked_params

    objective = config.train.objective
    label = label or objective
    cfg, key, out = pretrain_plan(config, examples, tokenizer, output_dir)
    check_inputs(cfg)  # data, vocabulary and sequence length agree: fail before an MLflow run exists
    uri = tracking.uri()
    with tracking.run(f"pretrain-{label}", stage="pretrain", stage_key=key, objective=objective) as run:
        summary, cached = call_stage_task(pretrain_task, out_dir=out, results=Path(output_dir) / RESULTS_DIR,
                                          refresh=refresh_cache, key=key, config=config_mod.to_dict(cfg),
                                          run_id=run.run_id, tracking_uri=uri)
        run.set_tags({"cached": str(cached).lower()})
        if cached:  # the library logged nothing this time: give the run its config and results
            run.log_params(tracked_params(cfg))
            run.log_metrics(summary["metrics"], step=summary["steps"])
            for name in ("config.json", "summary.json", "loss_curves.png"):
                if (out / name).is_file():
                    run.log_artifact(out / name)
        if objective == "mlm":  # the baseline's model to fine-tune is its MLM encoder
            run.log_artifact(summary["generator_dir"], "generator")
    return StageOutput(stage=f"pretrain-{label}", path=summary["encoder_dir"], key=key, cached=cached,
                       run_id=run.run_id, summary=summary)
