"""Ingestion: raw sources -> cleaned, deduplicated Parquet shards plus `manifest.json`, written
atomically (`atomic.staged_dir`) and skipped when sources and config are unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from electra_pipeline.atomic import staged_dir
from electra_pipeline.data.corpus.clean import Deduplicator
from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.data.corpus.readers import check_source, expand_sources, source_documents
from electra_pipeline.errors import DataError, read_json_object

MANIFEST_FORMAT = "electra-corpus/1"
MANIFEST_FILE = "manifest.json"


@dataclass
class Manifest:
    """What a corpus directory holds and how it was made; `manifest.json` on disk."""

    sources: list[dict[str, Any]]  # path, format, sha256 (None for hub datasets), bytes, documents, ...
    documents: int  # documents written
    paragraphs: int  # paragraphs written
    bytes: int  # UTF-8 bytes of text written (paragraphs joined by "\n")
    input_bytes: int  # uncompressed bytes read from the sources
    lines_dropped: dict[str, int]  # reason ("empty", "too_short") -> paragraphs
    duplicates_removed: dict[str, int]  # {"documents": n, "paragraphs": n}
    undecodable_bytes: int  # bytes that were not UTF-8 and were dropped
    shards: list[dict[str, Any]]  # file, documents, bytes
    config: dict[str, Any]  # the resolved CorpusConfig
    format: str = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, corpus_dir: Path) -> Manifest:
        path = Path(corpus_dir) / MANIFEST_FILE
        if not path.is_file():
            raise DataError(f"{path}: missing; {corpus_dir} is not a corpus directory (run `electra corpus`)")
        data = read_json_object(path)  # not UTF-8, not JSON, or a list: one line naming the file
        if data.get("format") != MANIFEST_FORMAT:
            raise DataError(f"{path}: format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        try:
            manifest = cls(**data)
        except TypeError as e:
            raise DataError(f"{path}: not a valid corpus manifest ({e})") from None
        if not isinstance(manifest.sources, list) or not all(isinstance(s, dict) for s in manifest.sources):
            raise DataError(f"{path}: \"sources\" must be a list of objects")
        shards = manifest.shards
        if not isinstance(shards, list) or not all(
                isinstance(s, dict) and isinstance(s.get("file"), str) and s["file"] == Path(s["file"]).name
                and s["file"] not in ("", ".", "..") for s in shards):
            raise DataError(f"{path}: \"shards\" must be a list of {{\"file\": NAME, ...}} with plain file names")
        return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class _ShardWriter:
    """Buffers documents into row groups of ~row_group_mb and shards of ~shard_mb.

    Arrow conversion and zstd compression run on one background thread (in submission order),
    overlapping with cleaning on the main thread."""

    def __init__(self, out_dir: Path, cfg: CorpusConfig):
        self.out_dir = out_dir
        self.row_group_bytes, self.shard_bytes = int(cfg.row_group_mb * (1 << 20)), int(cfg.shard_mb * (1 << 20))
        self.buffer: list[str] = []
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.open_shard = False
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future] = []
        self.writer: Any = None  # touched only by the pool thread

    def add(self, text: str, nbytes: int) -> None:
        self.buffer.append(text)
        self.buffered += nbytes
        if self.buffered >= self.row_group_bytes:
            self._flush()

    def _write(self, name: str | None, docs: list[str], close: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("text", pa.string())])
        if name is not None:
            self.writer = pq.ParquetWriter(self.out_dir / name, schema, compression="zstd",
                                           use_dictionary=False, write_statistics=False)
        self.writer.write_table(pa.table({"text": pa.array(docs, pa.string())}, schema=schema))
        if close:
            self.writer.close()
            self.writer = None

    def _flush(self) -> None:
        if not self.buffer:
            return
        name = None
        if not self.open_shard:
            name = f"shard-{len(self.shards):05d}.parquet"
            self.shards.append({"file": name, "documents": 0, "bytes": 0})
            self.open_shard = True
        shard = self.shards[-1]
        shard["documents"] += len(self.buffer)
        shard["bytes"] += self.buffered
        close = shard["bytes"] >= self.shard_bytes
        self.pending.append(self.pool.submit(self._write, name, self.buffer, close))
        self.open_shard = not close
        self.buffer, self.buffered = [], 0
        if len(self.pending) > 4:  # bound memory; surface errors early
            self.pending.pop(0).result()

    def close(self) -> list[dict[str, Any]]:
        try:
            self._flush()
            if self.open_shard:
                self.pending.append(self.pool.submit(self._close_writer))
                self.open_shard = False
            for f in self.pending:
                f.result()
        finally:
            self.pool.shutdown(wait=True)
        return self.shards

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._close_writer()


def _progress_bar(progress: bool, **kwargs: Any) -> Any:
    """A tqdm bar, shown only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def _config_dict(cfg: CorpusConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _up_to_date(out_dir: Path, cfg: CorpusConfig, checksums: list[str | None]) -> Manifest | None:
    """The finished manifest in out_dir if it was built from these exact bytes and config."""
    if None in checksums or not (out_dir / MANIFEST_FILE).is_file():
        return None
    try:
        manifest = Manifest.load(out_dir)
    except DataError:
        return None
    same = (manifest.config == _config_dict(cfg) and [s["sha256"] for s in manifest.sources] == checksums
            and all((out_dir / s["file"]).is_file() for s in manifest.shards))
    return manifest if same else None


@contextmanager
def _aborting(writer: _ShardWriter) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.abort()
        raise


def ingest(sources: list[str], out_dir: Path, cfg: CorpusConfig, progress: bool = True) -> Manifest:
    """Clean, deduplicate and shard `sources` into `out_dir`; returns the manifest.

    Re-running with byte-identical sources and the same config returns the existing manifest
    without rewriting anything (sources are identified by sha256, not by path or mtime)."""
    out_dir = Path(out_dir)
    files = expand_sources(list(sources))
    stats = [check_source(s) for s in files]
    for st in stats:
        if st.format != "hf":
            st.sha256 = _sha256(Path(st.path))
    done = _up_to_date(out_dir, cfg, [st.sha256 for st in stats])
    if done is not None:
        return done

    dedup = Deduplicator(cfg)
    documents = paragraphs = out_bytes = 0
    with staged_dir(out_dir, MANIFEST_FILE) as tmp:
        writer = _ShardWriter(tmp, cfg)
        with _progress_bar(progress, desc="corpus", unit="doc") as bar, _aborting(writer):
            for st in stats:
                bar.set_postfix_str(Path(st.path).name if st.format != "hf" else st.path, refresh=False)
                for paras in source_documents(st.path, cfg, st):
                    if not paras or (kept := dedup.keep(paras)) is None:
                        continue
                    paras, encoded = kept
                    nbytes = sum(map(len, encoded)) + len(encoded) - 1
                    writer.add("\n".join(paras), nbytes)
                    st.documents += 1
                    documents += 1
                    paragraphs += len(paras)
                    out_bytes += nbytes
                    bar.update(1)
        shards = writer.close()
        if documents == 0:
            raise DataError(f"{', '.join(files[:3])}{' ...' if len(files) > 3 else ''}: no documents left after "
                            f"cleaning (min_line_chars={cfg.min_line_chars})")
        dropped = {"empty": sum(s.dropped["empty"] for s in stats), "too_short": sum(s.dropped["too_short"] for s in stats)}
        manifest = Manifest(
            sources=[{"path": s.path, "format": s.format, "sha256": s.sha256, "bytes": s.bytes,
                      "text_bytes": s.text_bytes, "records": s.records, "documents": s.documents,
                      "undecodable_bytes": s.undecodable_bytes, "lines_dropped": s.dropped} for s in stats],
            documents=documents, paragraphs=paragraphs, bytes=out_bytes,
            input_bytes=sum(s.text_bytes for s in stats), lines_dropped=dropped,
            duplicates_removed=dedup.removed,
            undecodable_bytes=sum(s.undecodable_bytes for s in stats), shards=shards, config=_config_dict(cfg))
        manifest.save(tmp / MANIFEST_FILE)
    return manifest
