"""Stage 3, example building: corpus + tokenizer -> packed [CLS] A [SEP] B [SEP] shards."""

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.base import RESULTS_DIR, StageOutput, Tracking, call_stage_task, retry_unless_user_error, user_errors
from flows.caching import STAGE_CACHE, code_fingerprint, input_key, mark_complete, stage_key
from flows.params import ExamplesOverrides, overrides
from flows.tracking import sweep_hook


def examples_config(config: ExamplesOverrides | dict[str, Any], seq_len: int | None = None) -> Any:
    """The resolved `ExamplesConfig`; the pre-training sequence length is the default so the
    examples fit the model unless the user sets both."""
    from electra_pipeline.data.examples_config import ExamplesConfig
    from electra_pipeline.modeling import config as config_mod

    values = overrides(config)
    if seq_len is not None:
        values.setdefault("seq_len", seq_len)
    return config_mod.from_dict(ExamplesConfig, values, prefix="examples_config.")


def examples_plan(corpus: str, tokenizer: str, output_dir: str, cfg: Any) -> tuple[str, Path]:
    from electra_pipeline.data import batches, examples

    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("num_proc", "encode_batch_size")}
    key = stage_key("examples", inputs=[input_key(corpus), input_key(tokenizer)], config=recipe,
                    code=code_fingerprint(examples, batches))  # num_proc and batch size do not change the bytes
    return key, Path(output_dir) / "examples" / key


@task(name="build-examples", cache_policy=STAGE_CACHE, persist_result=True, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error)
@user_errors
def build_task(key: str, corpus: str, tokenizer: str, out_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    from electra_pipeline.data.examples import ExamplesConfig, build_examples
    from electra_pipeline.modeling import config as config_mod

    out = Path(out_dir)
    meta = build_examples(Path(corpus), Path(tokenizer), out, config_mod.from_dict(ExamplesConfig, config),
                          progress=False)
    stats = meta.get("stats", {})
    summary = {k: meta[k] for k in ("num_examples", "seq_len", "vocab_size")}
    summary.update({k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k != "examples"})
    mark_complete(out, {"stage": "examples", "key": key, "summary": summary})
    return summary


@flow(name="build-examples", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def build_examples(
    corpus: str,
    tokenizer: str,
    output_dir: str = "outputs",
    config: ExamplesOverrides = ExamplesOverrides(),
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
) -> StageOutput:
    """Pack tokenised sentences into fixed-length examples under `<output_dir>/examples/<key>`.

    Args:
        corpus: A corpus directory made by the ingest-corpus flow.
        tokenizer: tokenizer.json (or its directory) made by the train-tokenizer flow.
        output_dir: Root of all pipeline outputs.
        config: ExamplesConfig fields to change (empty ones keep the default), e.g. {"seq_len": 128}.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists.
    """
    cfg = examples_config(config)
    key, out = examples_plan(corpus, tokenizer, output_dir, cfg)
    with tracking.run("examples", stage="examples", stage_key=key) as run:
        run.log_params({"corpus": corpus, "tokenizer": tokenizer, "examples": dataclasses.asdict(cfg)})
        summary, cached = call_stage_task(build_task, out_dir=out, results=Path(output_dir) / RESULTS_DIR,
                                          refresh=refresh_cache, key=key, corpus=corpus, tokenizer=tokenizer,
                                          config=dataclasses.asdict(cfg))
        run.set_tags({"cached": str(cached).lower()})
        run.log_metrics({f"examples/{k}": float(v) for k, v in summary.items()})
        for name in ("meta.json", "config.json", "length_hist.png"):
            if (out / name).is_file():
                run.log_artifact(out / name)
    return StageOutput(stage="examples", path=str(out.resolve()), key=key, cached=cached, run_id=run.run_id,
                       summary=summary)
