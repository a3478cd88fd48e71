"""Reading raw sources: files, folders, globs and `hf:` hub specs -> documents as lists of
cleaned paragraphs, one streaming reader per format (text, JSONL/JSON, CSV, each optionally
.gz or .zst; Parquet; Hugging Face hub datasets)."""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from electra_pipeline.data.corpus.clean import Cleaner, SourceStats
from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.errors import DataError

# extension (after an optional .gz/.zst) -> reader
_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
            ".csv": "csv", ".parquet": "parquet"}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}


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


def _text_documents(path: Path, compression: str | None, clean: Cleaner) -> Iterator[list[str]]:
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


def _jsonl_documents(path: Path, compression: str | None, clean: Cleaner, field_name: str) -> Iterator[list[str]]:
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


def _value_text(value: Any, clean: Cleaner, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return clean.decode(value, where)
    return value


def _csv_documents(path: Path, compression: str | None, clean: Cleaner, field_name: str) -> Iterator[list[str]]:
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


def _parquet_documents(path: Path, clean: Cleaner, field_name: str) -> Iterator[list[str]]:
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


def _hub_documents(spec: str, clean: Cleaner, field_name: str) -> Iterator[list[str]]:
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


def source_documents(source: str, cfg: CorpusConfig, stats: SourceStats) -> Iterator[list[str]]:
    """One source -> documents as lists of cleaned paragraphs (before deduplication)."""
    clean = Cleaner(cfg, stats)
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


MAX_BINARY_SHARE = 0.05  # text files have next to none; random bytes about 70%


def binary_share(path: Path, compression: str | None, n: int = 1 << 16) -> float:
    """Share of the first `n` (decompressed) bytes that are not text: undecodable UTF-8 or control
    bytes other than tab, newline, carriage return and form feed."""
    try:
        with _open_binary(path, compression) as fh:
            head = fh.read(n)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: unreadable as {compression or 'plain'} file ({e})") from None
    if not head:
        return 0.0
    text = head.decode("utf-8", errors="replace")
    if len(head) == n:  # a cut multi-byte character at the end is not binary
        text = text.rstrip("\ufffd")
    bad = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f"))
    return bad / max(1, len(text))


def check_source(source: str) -> SourceStats:
    """Fail fast (before any work) on unsupported or empty files."""
    if source.startswith("hf:"):
        return SourceStats(path=source, format="hf")
    path = Path(source)
    fmt, compression = _source_format(path)
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file")
    if fmt != "parquet":
        share = binary_share(path, compression)
        if share > MAX_BINARY_SHARE:
            raise DataError(f"{path}: not text ({100 * share:.0f}% of its first 64 KiB are control or non-UTF-8 "
                            "bytes); a binary file among the sources?")
    return SourceStats(path=source, format=fmt + (f"+{compression}" if compression else ""), bytes=size)
