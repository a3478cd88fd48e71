"""`CorpusConfig`: the one config of the corpus stage, shared by the readers, the cleaner and the writer."""

from __future__ import annotations

from dataclasses import dataclass

from electra_pipeline.errors import ConfigError


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
