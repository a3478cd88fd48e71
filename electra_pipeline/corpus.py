"""Corpus ingestion: raw text in many formats -> one cleaned, deduplicated Parquet corpus.

Every later stage (WordPiece training, example packing) reads the same simple thing: Parquet
shards with one row per document and a `text` column whose paragraphs are joined by "\\n".
Cleaning happens once, here, so the tokenizer and the packer never see control characters,
unnormalised Unicode or duplicated boilerplate, and `manifest.json` records what was dropped.

Output directory:
    manifest.json           sources (sha256), counts, drops by reason, duplicates, resolved config
    shard-00000.parquet     column `text`; row groups of ~`row_group_mb` (the unit of parallel work)

Inputs are streamed (a 100 GB corpus is never held in memory); the only state that grows with
the corpus is the set of 16-byte hashes used for exact deduplication.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import gzip
import hashlib
import io
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterator

from electra_pipeline.errors import ConfigError, DataError

MANIFEST_FORMAT = "electra-corpus/1"
MANIFEST_FILE = "manifest.json"
# extension (after an optional .gz/.zst) -> reader
_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
            ".csv": "csv", ".parquet": "parquet"}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}


@dataclass(kw_only=True)
class CorpusConfig:
    """How raw sources become the cleaned corpus."""

    text_field: str = "text"
    """Field/column holding the text in JSONL/JSON/CSV/Parquet/hub sources (one record = one document)."""
    min_line_chars: int = 10
    """Paragraphs shorter than this after cleaning are dropped (page numbers, '* * *', 'CHAPTER I')."""
    dedup_documents: bool = True
    """Drop documents whose cleaned text exactly equals an earlier one."""
    dedup_paragraphs: bool = True
    """Drop paragraphs that exactly equal an earlier kept paragraph (boilerplate, repeated headers)."""
    strict: bool = False
    """Undecodable (non-UTF-8) bytes raise `DataError` naming file:line instead of being dropped and counted."""
    shard_mb: float = 256
    """Start a new Parquet shard after this many MB of text."""
    row_group_mb: float = 4
    """Parquet row-group size in MB of text: the unit of parallel work for the example builder."""

    def __post_init__(self) -> None:
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ConfigError(f"corpus.text_field: must be a non-empty string, got {self.text_field!r}")
        v = self.min_line_chars
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"corpus.min_line_chars: must be an integer >= 0, got {v!r}")
        for name in ("shard_mb", "row_group_mb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"corpus.{name}: must be a number > 0, got {v!r}")
        for name in ("dedup_documents", "dedup_paragraphs", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"corpus.{name}: must be true or false, got {getattr(self, name)!r}")
        if self.row_group_mb > self.shard_mb:
            raise ConfigError(f"corpus.row_group_mb: {self.row_group_mb} is larger than corpus.shard_mb={self.shard_mb}")


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
    def load(cls, corpus_dir: Path) -> "Manifest":
        path = Path(corpus_dir) / MANIFEST_FILE
        if not path.is_file():
            raise DataError(f"{path}: missing; {corpus_dir} is not a corpus directory (run `electra corpus`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != MANIFEST_FORMAT:
                raise DataError(f"{path}: format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise DataError(f"{path}: not a valid corpus manifest ({e})") from None


# --------------------------------------------------------------------------- output staging

@contextmanager
def staged_output_dir(out_dir: Path, marker: str) -> Iterator[Path]:
    """Yield an empty sibling temp dir; on success it replaces `out_dir` in one rename.

    So an output directory is either the previous complete result or the new complete one,
    never half-written, and a failed build leaves `out_dir` untouched. `marker` is the file
    that proves an existing `out_dir` is ours: a non-empty directory without it is refused
    rather than deleted."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a directory")
        if not (out_dir / marker).exists() and any(out_dir.iterdir()):
            raise DataError(f"{out_dir}: exists, is not empty and has no {marker}; refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old)  # rename onto an empty dir is allowed
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- cleaning

@lru_cache(maxsize=1)
def _invisible_chars() -> re.Pattern[str]:
    """Control/format characters (Cc, Cf), surrogates and U+FFFD, except whitespace (collapsed
    separately). Built on first use: scanning the code space takes ~0.3 s."""
    bad = [c for c in range(sys.maxunicode + 1)
           if (unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs") and not chr(c).isspace()) or c == 0xFFFD]
    ranges, start, prev = [], bad[0], bad[0]
    for c in bad[1:] + [-1]:
        if c != prev + 1:
            ranges.append(re.escape(chr(start)) if start == prev else f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
            start = c
        prev = c
    return re.compile(f"[{''.join(ranges)}]+")


def clean_paragraph(text: str) -> str:
    """Normalise one paragraph the same way wherever it comes from: control/format chars
    removed, Unicode NFC, whitespace runs collapsed to one space, stripped."""
    if text.isprintable() and "\ufffd" not in text:  # the common case: no controls, ' ' is the only space
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)
        if "  " in text or text[:1] == " " or text[-1:] == " ":
            return " ".join(text.split())
        return text
    text = _invisible_chars().sub("", text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def _decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 decode, dropping undecodable bytes; returns (text, number of bytes dropped)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        pass
    parts, bad, rest = [], 0, raw
    while rest:
        try:
            parts.append(rest.decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            parts.append(rest[:e.start].decode("utf-8"))
            bad += e.end - e.start
            rest = rest[e.end:]
    return "".join(parts), bad


# --------------------------------------------------------------------------- sources

@dataclass
class _SourceStats:
    """Per-source counters that end up in the manifest."""

    path: str
    format: str
    sha256: str | None = None
    bytes: int = 0  # size on disk
    text_bytes: int = 0  # uncompressed bytes read
    records: int = 0  # documents found in the source
    documents: int = 0  # documents kept
    undecodable_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "too_short": 0})


def _source_format(path: Path) -> tuple[str, str | None]:
    """(format, compression) from the file name; unsupported names are a DataError."""
    name = path.name.lower()
    compression = None
    for suffix, kind in _COMPRESSIONS.items():
        if name.endswith(suffix):
            compression, name = kind, name[: -len(suffix)]
            break
    fmt = _FORMATS.get(os.path.splitext(name)[1])
    if fmt is None or (fmt == "parquet" and compression):
        raise DataError(f"{path}: unsupported file type; expected .txt, .jsonl, .json, .csv (each optionally "
                        f".gz or .zst) or .parquet")
    return fmt, compression


def _is_supported(path: Path) -> bool:
    try:
        _source_format(path)
        return True
    except DataError:
        return False


def expand_sources(sources: list[str]) -> list[str]:
    """Files, folders (recursively: supported, non-hidden files) and globs -> a sorted,
    de-duplicated list of files; `hf:` specs pass through. Missing paths are errors."""
    out: list[str] = []
    seen: set[str] = set()
    for spec in sources:
        spec = str(spec)
        if spec.startswith("hf:"):
            found = [spec]
        elif any(ch in spec for ch in "*?["):
            found = [m for m in sorted(glob.glob(spec, recursive=True)) if Path(m).is_file() and _is_supported(Path(m))]
            if not found:
                raise DataError(f"{spec}: no supported files match this pattern")
        elif Path(spec).is_dir():
            found = [str(p) for p in sorted(Path(spec).rglob("*"))
                     if p.is_file() and not any(part.startswith(".") for part in p.relative_to(spec).parts)
                     and _is_supported(p)]
            if not found:
                raise DataError(f"{spec}: folder holds no supported files (.txt, .jsonl, .json, .csv, .parquet)")
        elif Path(spec).exists():
            found = [spec]
        else:
            raise DataError(f"{spec}: no such file or directory")
        for item in found:
            key = item if item.startswith("hf:") else str(Path(item).resolve())
            if key not in seen:
                seen.add(key)
                out.append(item)
    if not out:
        raise DataError("no sources given")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _open_binary(path: Path, compression: str | None) -> IO[bytes]:
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{path}: reading .zst files needs the `zstandard` package (pip install zstandard)") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


class _Cleaner:
    """Turns one source's raw paragraphs into kept paragraphs, counting what it drops."""

    def __init__(self, cfg: CorpusConfig, stats: _SourceStats):
        self.min_chars, self.stats, self.strict = cfg.min_line_chars, stats, cfg.strict

    def decode(self, raw: bytes, where: str) -> str:
        text, bad = _decode(raw)
        if bad:
            if self.strict:
                raise DataError(f"{where}: {bad} undecodable byte(s), not UTF-8 (strict mode)")
            self.stats.undecodable_bytes += bad
        return text

    def paragraph(self, text: str) -> str | None:
        para = clean_paragraph(text)
        if not para:
            self.stats.dropped["empty"] += 1
            return None
        if len(para) < self.min_chars:
            self.stats.dropped["too_short"] += 1
            return None
        return para

    def document(self, text: str) -> list[str]:
        """A record's text -> its kept paragraphs (any line break separates paragraphs)."""
        self.stats.text_bytes += len(text)
        self.stats.records += 1
        out = []
        for line in text.splitlines():
            if line.strip():
                para = self.paragraph(line)
                if para:
                    out.append(para)
        return out


def _read_blocks(fh: IO[bytes], size: int = 1 << 22) -> Iterator[bytes]:
    """Blocks of whole lines, read (and decompressed) on a background thread: zlib/zstd release
    the GIL, so decompression overlaps with cleaning."""
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            rest = b""
            while not stop.is_set():
                block = fh.read(size)
                if not block:
                    break
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    rest += block
                    continue
                q.put(rest + block[:cut])
                rest = block[cut:]
            if rest:
                q.put(rest)
            q.put(None)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _text_documents(path: Path, compression: str | None, clean: _Cleaner) -> Iterator[list[str]]:
    """Plain text: one paragraph per line, a blank line between documents."""
    doc: list[str] = []
    nonblank = 0
    lineno = 0  # lines before the current block
    with _open_binary(path, compression) as fh:
        for block in _read_blocks(fh):
            clean.stats.text_bytes += len(block)
            try:  # whole-block decode is the fast path; fall back per line to count and locate bad bytes
                lines = block.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                lines = [clean.decode(raw, f"{path}:{lineno + i + 1}") for i, raw in enumerate(block.split(b"\n"))]
            if block.endswith(b"\n"):
                lines.pop()
            lineno += len(lines)
            for line in lines:
                if not line or line.isspace():
                    if doc:
                        clean.stats.records += 1
                        yield doc
                        doc = []
                    continue
                nonblank += 1
                para = clean.paragraph(line)
                if para:
                    doc.append(para)
    if doc:
        clean.stats.records += 1
        yield doc
    if nonblank == 0:
        raise DataError(f"{path}: contains no text")


def _record_text(record: Any, field_name: str, where: str) -> str | None:
    if not isinstance(record, dict) or field_name not in record:
        got = f"fields {sorted(record)[:8]}" if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: record has no {field_name!r} field ({got}); set --text-field")
    value = record[field_name]
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}: field {field_name!r} is {type(value).__name__}, expected a string")
    return value


def _jsonl_documents(path: Path, compression: str | None, clean: _Cleaner, field_name: str) -> Iterator[list[str]]:
    records = 0
    with _open_binary(path, compression) as fh:
        first = fh.peek(64)[:64].lstrip() if hasattr(fh, "peek") else b""
        if first.startswith(b"["):  # a JSON array: not streamable, loaded whole
            try:
                data = json.loads(clean.decode(fh.read(), str(path)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
            for i, record in enumerate(data):
                records += 1
                text = _record_text(record, field_name, f"{path}: record {i}")
                yield clean.document(text or "")
        else:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                records += 1
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(clean.decode(raw, where))
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: invalid JSON ({e.msg})") from None
                yield clean.document(_record_text(record, field_name, where) or "")
    if records == 0:
        raise DataError(f"{path}: contains no records")


def _value_text(value: Any, clean: _Cleaner, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return clean.decode(value, where)
    return value


def _csv_documents(path: Path, compression: str | None, clean: _Cleaner, field_name: str) -> Iterator[list[str]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = 0
    with _open_binary(path, compression) as fh:
        try:  # the column is read as bytes so undecodable bytes are counted, not fatal
            reader = pacsv.open_csv(
                fh, read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(include_columns=[field_name], column_types={field_name: pa.binary()}))
        except KeyError:  # pyarrow.ArrowKeyError: no such column in the header
            raise DataError(f"{path}: no column {field_name!r}; set --text-field") from None
        except pa.ArrowInvalid as e:
            raise DataError(f"{path}: unreadable CSV ({e})") from None
        batches = iter(reader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except pa.ArrowInvalid as e:
                raise DataError(f"{path}: unreadable CSV after row {rows} ({e})") from None
            for value in batch.column(0).to_pylist():
                rows += 1
                yield clean.document(_value_text(value, clean, f"{path}: row {rows}"))
    if rows == 0:
        raise DataError(f"{path}: contains no rows")


def _parquet_documents(path: Path, clean: _Cleaner, field_name: str) -> Iterator[list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    if field_name not in pf.schema_arrow.names:
        raise DataError(f"{path}: no column {field_name!r} (columns: {pf.schema_arrow.names[:8]}); set --text-field")
    if pf.metadata.num_rows == 0:
        raise DataError(f"{path}: contains no rows")
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[field_name]):
        for value in batch.column(0).to_pylist():
            row += 1
            yield clean.document(_value_text(value, clean, f"{path}: row {row}"))


def _hub_documents(spec: str, clean: _Cleaner, field_name: str) -> Iterator[list[str]]:
    """`hf:name[:config][@split]`, streamed from the Hugging Face hub (needs network)."""
    name, _, split = spec[3:].partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
        for i, record in enumerate(ds):
            yield clean.document(_record_text(record, field_name, f"{spec}: record {i}") or "")
    except DataError:
        raise
    except Exception as e:  # hub/network errors come in many types
        raise DataError(f"{spec}: could not stream the dataset ({type(e).__name__}: {e})") from None


def _source_documents(source: str, cfg: CorpusConfig, stats: _SourceStats) -> Iterator[list[str]]:
    """One source -> documents as lists of cleaned paragraphs (before deduplication)."""
    clean = _Cleaner(cfg, stats)
    if source.startswith("hf:"):
        yield from _hub_documents(source, clean, cfg.text_field)
        return
    path = Path(source)
    fmt, compression = _source_format(path)
    try:
        if fmt == "text":
            yield from _text_documents(path, compression, clean)
        elif fmt in ("jsonl", "json"):
            yield from _jsonl_documents(path, compression, clean, cfg.text_field)
        elif fmt == "csv":
            yield from _csv_documents(path, compression, clean, cfg.text_field)
        else:
            yield from _parquet_documents(path, clean, cfg.text_field)
    except (EOFError, gzip.BadGzipFile, OSError) as e:  # truncated/corrupt compressed files
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _check_source(source: str) -> _SourceStats:
    """Fail fast (before any work) on unsupported or empty files."""
    if source.startswith("hf:"):
        return _SourceStats(path=source, format="hf")
    path = Path(source)
    fmt, compression = _source_format(path)
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file")
    return _SourceStats(path=source, format=fmt + (f"+{compression}" if compression else ""), bytes=size)


# --------------------------------------------------------------------------- writing

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
    stats = [_check_source(s) for s in files]
    for st in stats:
        if st.format != "hf":
            st.sha256 = _sha256(Path(st.path))
    done = _up_to_date(out_dir, cfg, [st.sha256 for st in stats])
    if done is not None:
        return done

    seen_docs: set[bytes] = set()
    seen_paras: set[bytes] = set()
    dup_docs = dup_paras = documents = paragraphs = out_bytes = 0
    with staged_output_dir(out_dir, MANIFEST_FILE) as tmp:
        writer = _ShardWriter(tmp, cfg)
        with _progress_bar(progress, desc="corpus", unit="doc") as bar, _aborting(writer):
            for st in stats:
                bar.set_postfix_str(Path(st.path).name if st.format != "hf" else st.path, refresh=False)
                for paras in _source_documents(st.path, cfg, st):
                    if not paras:
                        continue
                    encoded = [p.encode("utf-8") for p in paras]
                    if cfg.dedup_documents:
                        key = hashlib.blake2b(b"\n".join(encoded), digest_size=16).digest()
                        if key in seen_docs:
                            dup_docs += 1
                            continue
                        seen_docs.add(key)
                    if cfg.dedup_paragraphs:
                        kept, kept_enc = [], []
                        for p, e in zip(paras, encoded):
                            key = hashlib.blake2b(e, digest_size=16).digest()
                            if key in seen_paras:
                                dup_paras += 1
                                continue
                            seen_paras.add(key)
                            kept.append(p)
                            kept_enc.append(e)
                        if not kept:
                            continue
                        paras, encoded = kept, kept_enc
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
            duplicates_removed={"documents": dup_docs, "paragraphs": dup_paras},
            undecodable_bytes=sum(s.undecodable_bytes for s in stats), shards=shards, config=_config_dict(cfg))
        manifest.save(tmp / MANIFEST_FILE)
    return manifest


# --------------------------------------------------------------------------- reading the corpus

def corpus_shards(corpus: Path) -> list[Path]:
    """The Parquet shards of a corpus directory (or a single .parquet file), in order."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise DataError(f"{corpus}: no such corpus directory")
    if corpus.is_file():
        if corpus.suffix != ".parquet":
            raise DataError(f"{corpus}: not a corpus directory or .parquet file")
        return [corpus]
    if (corpus / MANIFEST_FILE).is_file():
        return [corpus / s["file"] for s in Manifest.load(corpus).shards]
    shards = sorted(corpus.glob("*.parquet"))
    if not shards:
        raise DataError(f"{corpus}: holds no Parquet shards; build it with `electra corpus`")
    return shards


def corpus_row_groups(corpus: Path) -> list[tuple[Path, int]]:
    """(shard, row group) pairs: fixed by the corpus alone, so work split this way is the same
    whatever the number of workers."""
    import pyarrow.parquet as pq

    units = []
    for shard in corpus_shards(corpus):
        pf = pq.ParquetFile(shard)
        if "text" not in pf.schema_arrow.names:
            raise DataError(f"{shard}: no 'text' column; not a corpus shard")
        units += [(shard, i) for i in range(pf.num_row_groups)]
    return units


def read_row_group(shard: Path, index: int) -> list[str]:
    """The documents of one row group."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(shard).read_row_group(index, columns=["text"]).column(0).to_pylist()


def _is_corpus(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and ((path / MANIFEST_FILE).is_file() or any(path.glob("*.parquet"))))


def iter_documents(corpus: Path | list[Path], text_field: str = "text") -> Iterator[str]:
    """Documents (paragraphs joined by "\\n") from corpus directories, or, for convenience,
    from raw sources cleaned on the fly (no deduplication)."""
    paths = [Path(corpus)] if isinstance(corpus, (str, Path)) else [Path(p) for p in corpus]
    if not paths:
        raise DataError("no corpus given")
    raw_cfg = CorpusConfig(text_field=text_field, dedup_documents=False, dedup_paragraphs=False)
    for path in paths:
        if _is_corpus(path):
            for shard, i in corpus_row_groups(path):
                yield from read_row_group(shard, i)
        else:
            for source in expand_sources([str(path)]):
                st = _check_source(source)
                for paras in _source_documents(source, raw_cfg, st):
                    if paras:
                        yield "\n".join(paras)


# --------------------------------------------------------------------------- CLI

def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra corpus`."""
    d = CorpusConfig()
    p = subparsers.add_parser(
        "corpus", help="ingest raw text into a cleaned, deduplicated Parquet corpus",
        description="Read text files, JSONL/JSON, CSV, Parquet (files, folders or quoted globs) or a Hugging Face "
                    "hub dataset, clean it (NFC, control characters, whitespace, short lines), remove exact "
                    "duplicate documents and paragraphs, and write Parquet shards (one row per document) plus "
                    "manifest.json to --out. Plain text: one paragraph per line, a blank line between documents. "
                    "Re-running with unchanged inputs is a no-op.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="file, folder, quoted glob ('data/**/*.jsonl') or hf:NAME[:CONFIG][@SPLIT]")
    p.add_argument("--out", "-o", required=True, type=Path, help="output corpus directory (replaced atomically)")
    p.add_argument("--text-field", default=d.text_field, help="field/column with the text in JSONL/JSON/CSV/Parquet/hub records")
    p.add_argument("--min-line-chars", type=int, default=d.min_line_chars, help="drop paragraphs shorter than this after cleaning")
    p.add_argument("--no-dedup-documents", action="store_true", help="keep exact duplicate documents")
    p.add_argument("--no-dedup-paragraphs", action="store_true", help="keep exact duplicate paragraphs")
    p.add_argument("--strict", action="store_true", help="fail on undecodable (non-UTF-8) bytes instead of dropping and counting them")
    p.add_argument("--shard-mb", type=float, default=d.shard_mb, help="MB of text per Parquet shard")
    p.add_argument("--row-group-mb", type=float, default=d.row_group_mb, help="MB of text per row group (unit of parallel work downstream)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    cfg = CorpusConfig(text_field=args.text_field, min_line_chars=args.min_line_chars,
                       dedup_documents=not args.no_dedup_documents, dedup_paragraphs=not args.no_dedup_paragraphs,
                       strict=args.strict, shard_mb=args.shard_mb, row_group_mb=args.row_group_mb)
    m = ingest(args.sources, args.out, cfg, progress=not args.no_progress)
    print(f"corpus: {m.documents:,} documents, {m.paragraphs:,} paragraphs, {m.bytes / 1e6:.1f} MB in "
          f"{len(m.shards)} shard(s) -> {args.out}")
    print(f"  dropped: {m.lines_dropped['empty']:,} empty and {m.lines_dropped['too_short']:,} short paragraphs, "
          f"{m.duplicates_removed['documents']:,} duplicate documents, {m.duplicates_removed['paragraphs']:,} "
          f"duplicate paragraphs; {m.undecodable_bytes:,} undecodable bytes")
    return 0
