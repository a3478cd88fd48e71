"""The trainer's input: packed example shards, read by memory map, in a seeded order that can
resume at an exact example position.

Format (written by `examples.build_examples`):
    <dir>/meta.json        {"format": "electra-examples/1", "seq_len", "vocab_size", "num_examples",
                            "shards": [{"file", "num_examples"}], "special_ids": {...}, ...}
    <dir>/shard-NNNNN.npy  (n, seq_len) uint16/int32 rows: [CLS] A [SEP] B [SEP] [PAD]...
Token types and attention masks are derived, not stored: half the bytes to read.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra_pipeline.errors import DataError

FORMAT = "electra-examples/1"


@dataclass
class Batch:
    """One micro-batch on the host (or device after `to`)."""

    input_ids: torch.Tensor  # (B, T) long
    token_type_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.input_ids, self.token_type_ids, self.attention_mask)))

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids, "attention_mask": self.attention_mask}

    def pin_memory(self) -> Batch:
        return Batch(self.input_ids.pin_memory(), self.token_type_ids.pin_memory(), self.attention_mask.pin_memory())


def derive_segments(ids: np.ndarray, sep_id: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(token_type_ids, attention_mask) for rows [CLS] A [SEP] B [SEP] [PAD]...: type 1 after the
    first [SEP], 0 on padding."""
    is_sep = ids == sep_id
    after_first = (np.cumsum(is_sep, axis=1) - is_sep) >= 1
    mask = ids != pad_id
    return (after_first & mask).astype(np.int64), mask.astype(np.int64)


SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask")


def check_meta(meta: dict[str, Any], meta_file: Path) -> None:
    """The fields the readers use, with their types, or a DataError naming the first one wrong."""
    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    def plain_name(v: Any) -> bool:
        return isinstance(v, str) and v == Path(v).name and v not in ("", ".", "..")

    for key in ("seq_len", "vocab_size"):
        if not positive_int(meta.get(key)):
            raise DataError(f"{meta_file}: {key!r} missing or not a positive integer (got {meta.get(key)!r})")
    special = meta.get("special_ids")
    if not isinstance(special, dict) or not all(
            isinstance(special.get(k), int) and 0 <= special[k] < meta["vocab_size"] for k in SPECIAL_NAMES):
        raise DataError(f"{meta_file}: 'special_ids' missing or incomplete (needs the ids of {', '.join(SPECIAL_NAMES)})")
    shards = meta.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and plain_name(s.get("file")) and isinstance(s.get("num_examples"), int)
            for s in shards):
        raise DataError(f"{meta_file}: 'shards' missing or not a list of {{\"file\": NAME, \"num_examples\": N}}")
    holdout = meta.get("holdout")
    if holdout is not None and not (isinstance(holdout, dict) and plain_name(holdout.get("file", "holdout.npy"))):
        raise DataError(f"{meta_file}: 'holdout' must be an object with a plain file name")


class ExampleShards:
    """Random access to every packed example across shards, without loading them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not self.path.is_dir():
            raise DataError(f"{self.path}: examples directory not found (build it with `electra examples`)")
        if not meta_file.is_file():
            raise DataError(f"{meta_file}: missing; {self.path} is not an examples directory (run `electra examples`)")
        try:
            self.meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{meta_file}: not valid JSON ({e})") from None
        if not isinstance(self.meta, dict):
            raise DataError(f"{meta_file}: expected a JSON object, got {type(self.meta).__name__}")
        if self.meta.get("format") != FORMAT:
            raise DataError(f"{meta_file}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        check_meta(self.meta, meta_file)
        self.seq_len = int(self.meta["seq_len"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.special_ids: dict[str, int] = {k: int(v) for k, v in self.meta["special_ids"].items()}
        self._arrays: list[np.ndarray] = []
        for shard in self.meta["shards"]:
            f = self.path / shard["file"]
            try:
                arr = np.load(f, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise DataError(f"{f}: unreadable shard ({e})") from None
            if arr.ndim != 2 or arr.shape[1] != self.seq_len or arr.shape[0] != shard["num_examples"]:
                raise DataError(f"{f}: shape {arr.shape} does not match meta.json "
                                f"({shard['num_examples']}, {self.seq_len}); the directory is corrupt")
            self._arrays.append(arr)
        self._offsets = np.cumsum([0] + [a.shape[0] for a in self._arrays])
        if len(self) == 0:
            raise DataError(f"{self.path}: contains no examples; is the corpus empty?")

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def check_ids(self, vocab_size: int) -> None:
        """Every token id < vocab_size (a shard from another tokenizer, or damaged, would fail
        deep inside the embedding lookup instead). Reads each shard once, at memory-map speed."""
        for shard, arr in zip(self.meta["shards"], self._arrays):
            top = int(arr.max()) if arr.size else 0
            if top >= vocab_size:
                raise DataError(f"{self.path / shard['file']}: token id {top} is outside the {vocab_size}-token "
                                "vocabulary; the shard is damaged or was built with another tokenizer")

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """(n,) global indices -> (n, seq_len) int64 ids; each shard read in sorted order."""
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        shard_of = np.searchsorted(self._offsets, idx, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = idx[sel] - self._offsets[s]
            order = np.argsort(local)
            out[sel[order]] = self._arrays[s][local[order]]
        return out

    def batch(self, idx: np.ndarray) -> Batch:
        ids = self.rows(idx)
        tt, am = derive_segments(ids, self.special_ids["sep"], self.special_ids["pad"])
        return Batch(torch.from_numpy(ids), torch.from_numpy(tt), torch.from_numpy(am))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def example_indices(n: int, seed: int, start: int, count: int) -> np.ndarray:
    """Global indices of examples [start, start + count) of the endless seeded stream."""
    parts, pos, end = [], start, start + count
    while pos < end:
        epoch, offset = divmod(pos, n)
        take = min(end - pos, n - offset)
        parts.append(epoch_order(n, seed, epoch)[offset:offset + take])
        pos += take
    return np.concatenate(parts)


def micro_batches(data: ExampleShards, *, batch_size: int, grad_accum: int, seed: int, start_example: int,
                  rank: int = 0, world_size: int = 1, max_rows: int | None = None) -> Iterator[list[Batch]]:
    """Endless stream of optimiser steps, each a list of `grad_accum` micro-batches for this rank.

    A step consumes `batch_size` examples of the global stream (all ranks together), so the
    position after k steps is `start_example + k * batch_size` whatever the world size.
    `max_rows`: only the first rows (the examples are shuffled when built), epoch after epoch."""
    per_rank = batch_size // world_size
    micro = per_rank // grad_accum
    n = len(data) if max_rows is None else min(len(data), max_rows)
    pos = start_example
    while True:
        idx = example_indices(n, seed, pos, batch_size)
        mine = idx[rank * per_rank:(rank + 1) * per_rank]
        yield [data.batch(mine[i * micro:(i + 1) * micro]) for i in range(grad_accum)]
        pos += batch_size


class Prefetcher:
    """Builds the next steps' batches on a background thread (pinned when going to CUDA), so
    the device never waits on memory-mapped reads."""

    def __init__(self, source: Iterator[list[Batch]], depth: int = 2, pin: bool = False):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._source = source
        self._pin = pin
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                if self._pin:
                    item = [b.pin_memory() for b in item]
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # surface loader errors in the training thread
            self._q.put(e)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> list[Batch]:
        item = self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
