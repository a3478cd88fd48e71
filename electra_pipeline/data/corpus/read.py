"""Reading a finished corpus back: its shards, their row groups (the unit of parallel work) and
its documents, the form the tokenizer trainer and the example builder consume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.data.corpus.ingest import MANIFEST_FILE, Manifest
from electra_pipeline.data.corpus.readers import check_source, expand_sources, source_documents
from electra_pipeline.errors import DataError


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
    units = []
    for shard in corpus_shards(corpus):
        pf = _open_shard(shard)
        if "text" not in pf.schema_arrow.names:
            raise DataError(f"{shard}: no 'text' column; not a corpus shard")
        units += [(shard, i) for i in range(pf.num_row_groups)]
    return units


def _open_shard(shard: Path) -> Any:
    """A pyarrow ParquetFile, or a DataError naming a shard that is missing or not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(shard)
    except FileNotFoundError:
        raise DataError(f"{shard}: missing; the corpus lists it (rebuild the corpus with `electra corpus`)") from None
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{shard}: not a Parquet corpus shard ({str(e).splitlines()[0]})") from None


def read_row_group(shard: Path, index: int) -> list[str]:
    """The documents of one row group."""
    import pyarrow as pa

    try:
        return _open_shard(shard).read_row_group(index, columns=["text"]).column(0).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{shard}: row group {index} unreadable ({str(e).splitlines()[0]})") from None


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
                st = check_source(source)
                for paras in source_documents(source, raw_cfg, st):
                    if paras:
                        yield "\n".join(paras)
