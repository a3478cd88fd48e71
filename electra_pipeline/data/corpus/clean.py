"""Cleaning: one normalisation for every paragraph, whatever its source, and exact deduplication.

Cleaning happens once, at ingestion, so the tokenizer and the packer never see control
characters, unnormalised Unicode or duplicated boilerplate.
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.errors import DataError


@dataclass
class SourceStats:
    """Per-source counters that end up in the manifest (what was read, kept and dropped and why)."""

    path: str
    format: str
    sha256: str | None = None
    bytes: int = 0  # size on disk
    text_bytes: int = 0  # uncompressed bytes read
    records: int = 0  # documents found in the source
    documents: int = 0  # documents kept
    undecodable_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "too_short": 0})


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


class Cleaner:
    """Turns one source's raw paragraphs into kept paragraphs, counting what it drops."""

    def __init__(self, cfg: CorpusConfig, stats: SourceStats):
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


class Deduplicator:
    """Exact deduplication across the whole corpus, in reading order: the first copy is kept.

    Remembers 16-byte hashes of kept documents and paragraphs: the only state of ingestion that
    grows with the corpus."""

    def __init__(self, cfg: CorpusConfig):
        self.dedup_documents, self.dedup_paragraphs = cfg.dedup_documents, cfg.dedup_paragraphs
        self.seen_documents: set[bytes] = set()
        self.seen_paragraphs: set[bytes] = set()
        self.removed = {"documents": 0, "paragraphs": 0}

    def keep(self, paras: list[str]) -> tuple[list[str], list[bytes]] | None:
        """A document's cleaned paragraphs -> (the new ones, their UTF-8), or None when the
        document is a duplicate or none of its paragraphs is new."""
        encoded = [p.encode("utf-8") for p in paras]
        if self.dedup_documents:
            key = hashlib.blake2b(b"\n".join(encoded), digest_size=16).digest()
            if key in self.seen_documents:
                self.removed["documents"] += 1
                return None
            self.seen_documents.add(key)
        if self.dedup_paragraphs:
            seen = self.seen_paragraphs
            kept, kept_enc = [], []
            for p, e in zip(paras, encoded):
                key = hashlib.blake2b(e, digest_size=16).digest()
                if key in seen:
                    self.removed["paragraphs"] += 1
                    continue
                seen.add(key)
                kept.append(p)
                kept_enc.append(e)
            if not kept:
                return None
            paras, encoded = kept, kept_enc
        return paras, encoded
