"""The examples stage: a whole corpus packed into shuffled fixed-length pre-training shards.

Each corpus row group is tokenised and packed (`electra_pipeline.data.packing`) in a worker process,
its held-out documents apart; the parts are then shuffled into shards.

Output directory (read by `electra_pipeline.data.batches.ExampleShards`):
    meta.json          {"format": "electra-examples/1", "seq_len", "vocab_size", "num_examples",
                        "shards": [{"file", "num_examples"}], "special_ids", "tokenizer_sha256",
                        "seed", "stats"}
    shard-00000.npy    (n, seq_len) uint16 (int32 if vocab_size > 65535): [CLS] A [SEP] B [SEP]
                       then [PAD]=0; rows shuffled with the seed; `examples_per_shard` rows each
    config.json        the resolved ExamplesConfig (minus num_proc), corpus and tokenizer paths
    length_hist.png    histogram of example lengths (non-padding tokens)

Work is split by corpus row group and each row group has its own seeded RNG, so the output is
byte-identical for a given seed whatever `num_proc` is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from electra_pipeline.atomic import staged_dir
from electra_pipeline.data.corpus import corpus_row_groups, read_row_group
from electra_pipeline.data.examples_config import ExamplesConfig
from electra_pipeline.data.packing import _Encoder, pack_documents
from electra_pipeline.data.tokenizer import SPECIAL_IDS, TOKENIZER_FILE, file_sha256, load_tokenizer
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.tracking import Tracker

FORMAT = "electra-examples/1"
META_FILE = "meta.json"
HOLDOUT_FILE = "holdout.npy"


# --------------------------------------------------------------------------- one row group

@dataclass
class _Task:
    index: int  # row-group number in the whole corpus: seeds this task's RNG
    shard: str
    row_group: int
    tokenizer_file: str
    tokenizer_sha256: str
    out_file: str
    cfg: ExamplesConfig


@lru_cache(maxsize=1)
def _worker_encoder(tokenizer_file: str, tokenizer_sha256: str, batch_size: int) -> _Encoder:
    """One encoder (and word cache) per worker process, loaded on its first task; keyed by the
    file's hash so a tokenizer retrained in place is never served stale."""
    return _Encoder(tokenizer_file, batch_size)


def _build_in_worker(task: _Task) -> tuple[str, int, dict[str, Any]]:
    return _build_unit(task, _worker_encoder(task.tokenizer_file, task.tokenizer_sha256, task.cfg.encode_batch_size))


def is_held_out(document: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out slice: a hash of its text, so the choice is the
    same whatever the shard layout, worker count or seed, and a document is never on both sides."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(document.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0**64


def _build_unit(task: _Task, enc: _Encoder) -> tuple[str, int, dict[str, Any]]:
    """Tokenise and pack one corpus row group; writes its training rows (unshuffled) to
    task.out_file and the rows of its held-out documents to `holdout_file(task.out_file)`."""
    cfg = task.cfg
    docs = [d or "" for d in read_row_group(Path(task.shard), task.row_group)]
    held = [is_held_out(d, cfg.holdout_fraction) for d in docs]
    train_docs = [d for d, h in zip(docs, held) if not h]
    held_docs = [d for d, h in zip(docs, held) if h]
    rows, lengths, stats = pack_documents(train_docs, enc, cfg, random.Random(f"electra-examples:{cfg.seed}:{task.index}"))
    dtype = _dtype_for(enc.tok.get_vocab_size())
    np.save(task.out_file, rows.astype(dtype, copy=False))
    stats["length_histogram"] = np.bincount(lengths, minlength=cfg.seq_len + 1).tolist()
    held_rows, _, held_stats = pack_documents(held_docs, enc, cfg,
                                              random.Random(f"electra-holdout:{cfg.seed}:{task.index}"))
    np.save(holdout_file(task.out_file), held_rows.astype(dtype, copy=False))
    stats["holdout"] = {k: held_stats[k] for k in ("documents", "tokens", "examples")}
    return task.out_file, int(len(rows)), stats


def holdout_file(out_file: str) -> str:
    return out_file[: -len(".npy")] + "-holdout.npy"


# --------------------------------------------------------------------------- whole corpus

def _dtype_for(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 65535 else np.int32


def _init_worker() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    # A forked worker inherits the parent's Python signal handlers. Prefect's SIGTERM handler
    # raises inside whatever the worker is doing (here: holding the task queue's lock), and the
    # worker then hung on exit with the parent waiting for it forever (`electra pipeline` on a
    # corpus of several row groups). Workers die on SIGTERM; Ctrl-C is the parent's to handle.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _worker_pool(num_proc: int) -> Iterator[Any]:
    """A process pool. Fork on Linux: spawn would re-run the caller's `__main__` (scripts without
    a main guard, `python -` heredocs) and start slower. Workers only use tokenizers (told not to
    start threads), numpy and pyarrow (fork-safe), never the parent's threads. TOKENIZERS_PARALLELISM
    is set for the fork itself so tokenizers does not warn about parallelism used before it."""
    import multiprocessing

    method = "fork" if sys.platform == "linux" else "spawn"
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with multiprocessing.get_context(method).Pool(num_proc, initializer=_init_worker) as pool:
            yield pool
            pool.close()  # finished: let the workers exit on their own (leaving `with` terminates them)
            pool.join()
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _run_tasks(tasks: list[_Task], num_proc: int, progress: bool) -> list[tuple[str, int, dict[str, Any]]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="examples", unit="part", disable=not (progress and sys.stderr.isatty()),
               dynamic_ncols=True)
    results = []
    with bar:
        if num_proc <= 1:
            enc = _Encoder(tasks[0].tokenizer_file, tasks[0].cfg.encode_batch_size)
            for task in tasks:
                results.append(_build_unit(task, enc))
                bar.update(1)
        else:
            with _worker_pool(num_proc) as pool:
                for result in pool.imap(_build_in_worker, tasks, chunksize=1):
                    results.append(result)
                    bar.update(1)
    return results


def _merge_stats(parts: list[dict[str, Any]], L: int) -> dict[str, Any]:
    keys = ("documents", "paragraphs", "sentences", "tokens", "examples", "truncated_tokens", "single_segment_examples")
    total = {k: int(sum(p[k] for p in parts)) for k in keys}
    hist = np.sum([p["length_histogram"] for p in parts], axis=0) if parts else np.zeros(L + 1, np.int64)
    n = max(1, total["examples"])
    used = float(np.dot(np.arange(L + 1), hist))
    total.update(mean_length=round(used / n, 3), padding_fraction=round(1 - used / (n * L), 6),
                 length_histogram=[int(x) for x in hist])
    return total


def _write_shuffled(chunks: list[tuple[str, int]], out_dir: Path, cfg: ExamplesConfig) -> list[dict[str, Any]]:
    """Concatenate the per-part rows in a seeded random order into fixed-size shards; parts are
    memory-mapped and each output shard gathered on its own, so memory stays one shard."""
    arrays = [np.load(f, mmap_mode="r") for f, n in chunks if n]
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    total = int(offsets[-1])
    order = np.random.default_rng(cfg.seed).permutation(total)
    shards = []
    for s, begin in enumerate(range(0, total, cfg.examples_per_shard)):
        idx = order[begin:begin + cfg.examples_per_shard]
        out = np.empty((len(idx), cfg.seq_len), dtype=arrays[0].dtype)
        part = np.searchsorted(offsets, idx, side="right") - 1
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            local = idx[sel] - offsets[p]
            srt = np.argsort(local)
            out[sel[srt]] = arrays[p][local[srt]]
        name = f"shard-{s:05d}.npy"
        np.save(out_dir / name, out)
        shards.append({"file": name, "num_examples": int(len(idx))})
    return shards


def _write_holdout(files: list[str], documents: int, out_dir: Path, cfg: ExamplesConfig) -> dict[str, Any]:
    """The held-out documents' rows, in corpus order, as `holdout.npy`; its entry in meta.json."""
    rows = np.concatenate([np.load(f) for f in files])
    np.save(out_dir / HOLDOUT_FILE, rows)
    return {"fraction": cfg.holdout_fraction, "file": HOLDOUT_FILE, "documents": documents,
            "num_examples": int(len(rows)), "tokens": int((rows > SPECIAL_IDS["mask"]).sum()),
            "selection": "documents whose blake2b-64 hash / 2^64 < fraction (examples.is_held_out)"}


def _save_histogram(stats: dict[str, Any], L: int, path: Path) -> None:
    from matplotlib.figure import Figure

    hist = np.asarray(stats["length_histogram"])
    fig = Figure(figsize=(7, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.bar(np.arange(L + 1), hist, width=1.0, color="#3b6ea8")
    ax.set_yscale("log")
    ax.set_xlabel("example length (tokens, [CLS]/[SEP] included)")
    ax.set_ylabel("examples")
    ax.set_title(f"{stats['examples']:,} examples, seq_len {L}, mean length {stats['mean_length']:.1f}, "
                 f"padding {100 * stats['padding_fraction']:.1f}%", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})


def _log(tracker: Tracker, meta: dict[str, Any], out_dir: Path) -> None:
    s = meta["stats"]
    tracker.log_metrics({"data/examples": s["examples"], "data/documents": s["documents"], "data/tokens": s["tokens"],
                         "data/mean_length": s["mean_length"], "data/padding_fraction": s["padding_fraction"],
                         "data/truncated_tokens": s["truncated_tokens"]})
    tracker.log_artifact(out_dir / "length_hist.png", artifact_path="data")


def build_examples(corpus: Path, tokenizer: Path, out_dir: Path, cfg: ExamplesConfig, progress: bool = True,
                   tracker: Tracker | None = None) -> dict:
    """Tokenise the corpus, pack it into seq_len rows and write shuffled .npy shards + meta.json
    to `out_dir` (complete or not at all); returns the meta. `tracker` (e.g. an MLflow run) gets
    the length statistics as `data/*` metrics and the length histogram."""
    started = time.perf_counter()
    tokenizer = Path(tokenizer)
    tok_file = tokenizer / TOKENIZER_FILE if tokenizer.is_dir() else tokenizer
    vocab_size = load_tokenizer(tok_file).get_vocab_size()  # validates before any work
    tok_sha256 = file_sha256(tok_file)
    units = corpus_row_groups(Path(corpus))
    if not units:
        raise DataError(f"{corpus}: the corpus holds no documents")
    out_dir = Path(out_dir)
    with staged_dir(out_dir, META_FILE) as tmp:
        parts = tmp / "_parts"
        parts.mkdir()
        tasks = [_Task(index=i, shard=str(shard), row_group=rg, tokenizer_file=str(tok_file.resolve()),
                       tokenizer_sha256=tok_sha256, out_file=str(parts / f"part-{i:06d}.npy"), cfg=cfg)
                 for i, (shard, rg) in enumerate(units)]
        results = _run_tasks(tasks, min(cfg.num_proc, len(tasks)), progress)
        stats = _merge_stats([r[2] for r in results], cfg.seq_len)
        if stats["examples"] == 0:
            if cfg.holdout_fraction > 0 and sum(r[2]["holdout"]["examples"] for r in results):
                raise ConfigError(f"examples.holdout_fraction: {cfg.holdout_fraction} leaves no training documents in "
                                  f"{corpus}; lower it (0 keeps nothing out)")
            raise DataError(f"{corpus}: no examples could be built (is the corpus empty?)")
        shards = _write_shuffled([(r[0], r[1]) for r in results], tmp, cfg)
        holdout = _write_holdout([holdout_file(r[0]) for r in results],
                                 sum(r[2]["holdout"]["documents"] for r in results), tmp, cfg)
        shutil.rmtree(parts)
        meta = {"format": FORMAT, "seq_len": cfg.seq_len, "vocab_size": vocab_size, "num_examples": stats["examples"],
                "shards": shards, "special_ids": dict(SPECIAL_IDS), "tokenizer_sha256": tok_sha256,
                "seed": cfg.seed, "holdout": holdout, "stats": stats}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        resolved = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "num_proc"}
        (tmp / "config.json").write_text(json.dumps(
            {"config": resolved, "corpus": str(corpus), "tokenizer": str(tok_file)}, indent=2) + "\n")
        _save_histogram(stats, cfg.seq_len, tmp / "length_hist.png")
    meta["stats"]["seconds"] = round(time.perf_counter() - started, 2)  # returned, not saved: keeps bytes fixed
    if tracker is not None:
        _log(tracker, meta, out_dir)
    return meta
