"""Stage 1, corpus ingestion: raw text files -> one cleaned, deduplicated Parquet corpus."""

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.base import (
    RESULTS_DIR,
    SAMPLE,
    StageOutput,
    Tracking,
    call_stage_task,
    data_path,
    retry_unless_user_error,
    user_errors,
)
from flows.caching import STAGE_CACHE, DigestMemo, code_fingerprint, mark_complete, path_fingerprint, stage_key
from flows.params import CorpusOverrides, overrides
from flows.tracking import sweep_hook


def corpus_config(config: CorpusOverrides | dict[str, Any]) -> Any:
    """The resolved `CorpusConfig`; a bad key or value names the field before any work."""
    from electra_pipeline.data.corpus import CorpusConfig
    from electra_pipeline.modeling import config as config_mod

    return config_mod.from_dict(CorpusConfig, overrides(config), prefix="corpus_config.")


def corpus_plan(sources: list[str], output_dir: str, cfg: Any) -> tuple[list[str], str, Path]:
    """(source files, stage key, output dir): the key hashes the files' bytes, the config and
    the ingestion code, so only a real change re-ingests."""
    from electra_pipeline.data import corpus

    files = corpus.expand_sources([data_path(s, "corpus") for s in sources])
    memo = DigestMemo(Path(output_dir) / RESULTS_DIR / "file-digests.json")
    key = stage_key("corpus", inputs=[path_fingerprint(f, memo) for f in files], config=dataclasses.asdict(cfg),
                    code=code_fingerprint(corpus))
    memo.save()
    return files, key, Path(output_dir) / "corpus" / key


@task(name="ingest-corpus", cache_policy=STAGE_CACHE, persist_result=True, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error)
@user_errors
def ingest_task(key: str, sources: list[str], out_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    """Clean and shard the sources; retried because sources may sit on flaky network storage."""
    from electra_pipeline.data.corpus import CorpusConfig, ingest
    from electra_pipeline.modeling import config as config_mod

    out = Path(out_dir)
    manifest = ingest(sources, out, config_mod.from_dict(CorpusConfig, config), progress=False)
    summary = {"documents": manifest.documents, "paragraphs": manifest.paragraphs, "bytes": manifest.bytes,
               "input_bytes": manifest.input_bytes, "shards": len(manifest.shards),
               "duplicate_documents": manifest.duplicates_removed.get("documents", 0),
               "duplicate_paragraphs": manifest.duplicates_removed.get("paragraphs", 0)}
    mark_complete(out, {"stage": "corpus", "key": key, "summary": summary})
    return summary


@flow(name="ingest-corpus", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def ingest_corpus(
    sources: list[str] = [SAMPLE],  # noqa: B006 (Prefect copies parameter defaults)
    output_dir: str = "outputs",
    config: CorpusOverrides = CorpusOverrides(),
    tracking: Tracking = Tracking(),
    refresh_cache: bool = False,
) -> StageOutput:
    """Ingest raw text into `<output_dir>/corpus/<key>`; cached on the sources' bytes and the config.

    Args:
        sources: Text/JSONL/CSV/Parquet files, folders, globs or `hf:` datasets; `sample` is the shipped corpus.
        output_dir: Root of all pipeline outputs (relative to the working directory).
        config: CorpusConfig fields to change (empty ones keep the default), e.g. {"min_line_chars": 20}.
        tracking: MLflow store, experiment and parent run.
        refresh_cache: Re-run even when a cached result exists.
    """
    cfg = corpus_config(config)
    files, key, out = corpus_plan(sources, output_dir, cfg)
    with tracking.run("corpus", stage="corpus", stage_key=key) as run:
        run.log_params({"sources": files, "corpus": dataclasses.asdict(cfg)})
        summary, cached = call_stage_task(ingest_task, out_dir=out, results=Path(output_dir) / RESULTS_DIR,
                                          refresh=refresh_cache, key=key, sources=files,
                                          config=dataclasses.asdict(cfg))
        run.set_tags({"cached": str(cached).lower()})
        run.log_metrics({f"corpus/{k}": float(v) for k, v in summary.items()})
        run.log_artifact(out / "manifest.json")
    return StageOutput(stage="corpus", path=str(out.resolve()), key=key, cached=cached, run_id=run.run_id,
                       summary=summary)
