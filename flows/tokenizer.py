"""Stage 2, WordPiece training: the corpus -> tokenizer.json (uncased, BERT-style)."""

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.base import RESULTS_DIR, StageOutput, Tracking, call_stage_task, retry_unless_user_error, user_errors
from flows.caching import STAGE_CACHE, code_fingerprint, input_key, mark_complete, stage_key
from flows.params import TokenizerOverrides, overrides
from flows.tracking import sweep_hook


def tokenizer_config(config: TokenizerOverrides | dict[str, Any], vocab_size: int | None = None) -> Any:
    """The resolved `TokenizerConfig`. `vocab_size` (the model's) is the default, so the
    tokenizer and the model agree unless the user sets both."""
    from electra_pipeline.data.tokenizer import TokenizerConfig
    from electra_pipeline.modeling import config as config_mod

    values = overrides(config)
    if vocab_size is not None:
        values.setdefault("vocab_size", vocab_size)
    return config_mod.from_dict(TokenizerConfig, values, prefix="tokenizer_config.")


def tokenizer_plan(corpus: str, output_dir: str, cfg: Any) -> tuple[str, Path]:
    from electra_pipeline.data import tokenizer

    key = stage_key("tokenizer", inputs=[input_key(corpus)], config=dataclasses.asdict(cfg),
                    code=code_fingerprint(tokenizer))
    return key, Path(output_dir) / "tokenizer" / key


def tokenizer_file(path: str | Path) -> Path:
    p = Path(path)
    return p / "tokenizer.json" if p.is_dir() else p


@task(name="train-wordpiece", cache_policy=STAGE_CACHE, persist_result=True, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error)
@user_errors
def train_task(key: str, corpus: str, out_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    from electra_pipeline.data.tokenizer import TokenizerConfig, load_tokenizer, train_wordpiece
    from electra_pipeline.modeling import config as config_mod

    out = Path(out_dir)
    path = tokenizer_file(train_wordpiece(Path(corpus), out, config_mod.from_dict(TokenizerConfig, config),
                                          progress=False))
    summary = {"vocab_size": load_tokenizer(path).get_vocab_size(), "file": str(path.resolve())}
    mark_complete(out, {"stage": "tokenizer", "key": key, "summary": summary})
    return summary


@flow(name="train-tokenizer", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def train_tokenizer(
    corpus: str,
    output_dir: str = "outputs",
    config: TokenizerOverrides = TokenizerOverrides(),
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
) -> StageOutput:
    """Train a WordPiece vocabulary into `<output_dir>/tokenizer/<key>`; cached on the corpus and config.

    Args:
        corpus: A corpus directory made by the ingest-corpus flow.
        output_dir: Root of all pipeline outputs.
        config: TokenizerConfig fields to change (empty ones keep the default), e.g. {"vocab_size": 8192}.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists.
    """
    cfg = tokenizer_config(config)
    key, out = tokenizer_plan(corpus, output_dir, cfg)
    with tracking.run("tokenizer", stage="tokenizer", stage_key=key) as run:
        run.log_params({"corpus": corpus, "tokenizer": dataclasses.asdict(cfg)})
        summary, cached = call_stage_task(train_task, out_dir=out, results=Path(output_dir) / RESULTS_DIR,
                                          refresh=refresh_cache, key=key, corpus=corpus,
                                          config=dataclasses.asdict(cfg))
        run.set_tags({"cached": str(cached).lower()})
        run.log_metrics({"tokenizer/vocab_size": float(summary["vocab_size"])})
        run.log_artifact(summary["file"], "tokenizer")
    return StageOutput(stage="tokenizer", path=summary["file"], key=key, cached=cached, run_id=run.run_id,
                       summary=summary)


@task(name="checkpoint-vocabulary", cache_policy=STAGE_CACHE, persist_result=True)
@user_errors
def vocabulary_task(key: str, source: str, out_dir: str) -> dict[str, Any]:
    from electra_pipeline.data.tokenizer import load_tokenizer
    from electra_pipeline.modeling import warmstart

    out = Path(out_dir)
    path = warmstart.save_tokenizer(source, out)
    summary = {"vocab_size": load_tokenizer(path).get_vocab_size(), "file": str(path.resolve()), "source": source}
    mark_complete(out, {"stage": "tokenizer", "key": key, "summary": summary})
    return summary


@flow(name="checkpoint-tokenizer", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def checkpoint_tokenizer(
    source: str,
    output_dir: str = "outputs",
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
) -> StageOutput:
    """The vocabulary of the checkpoint pre-training continues from, in this project's layout
    ([PAD] [UNK] [CLS] [SEP] [MASK] at 0-4), into `<output_dir>/tokenizer/<key>`: what the
    pipeline uses instead of training WordPiece when it starts from a checkpoint.

    Args:
        source: The checkpoint (`init_from`): a run directory or a Hugging Face ELECTRA directory.
        output_dir: Root of all pipeline outputs.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists.
    """
    from electra_pipeline.modeling import warmstart

    warmstart.find_source(source)  # a bad source fails before an MLflow run exists
    key = stage_key("tokenizer", inputs=[input_key(source)], config={"from_checkpoint": True},
                    code=code_fingerprint(warmstart))
    out = Path(output_dir) / "tokenizer" / key
    with tracking.run("tokenizer", stage="tokenizer", stage_key=key, init_from=source) as run:
        summary, cached = call_stage_task(vocabulary_task, out_dir=out, results=Path(output_dir) / RESULTS_DIR,
                                          refresh=refresh_cache, key=key, source=source)
        run.set_tags({"cached": str(cached).lower()})
        run.log_metrics({"tokenizer/vocab_size": float(summary["vocab_size"])})
        run.log_artifact(summary["file"], "tokenizer")
    return StageOutput(stage="tokenizer", path=summary["file"], key=key, cached=cached, run_id=run.run_id,
                       summary=summary)
