"""Documents -> packed pre-training rows: tokenise, cut sentences, pack [CLS] A [SEP] B [SEP].

The packing follows ELECTRA's `build_pretraining_dataset.py` (`ExampleBuilder`) decision for
decision: sentences of a document accumulate until they reach the target length (never across
documents; a document's remainder becomes a shorter example); with p=0.1 the first segment may
take the whole length, else it targets (target-3)//2, and a sentence that would overflow it goes
to segment A with p=0.5 while B is still empty; A is cut to L-2, B to L-len(A)-3; after each
example, with p=0.05 the next target length is uniform in [5, L]. Where the reference treats
each line as a sentence, `split_sentences` (default) first cuts paragraphs after `.`/`!`/`?`
(on token ids, so it costs almost nothing); off, lines are sentences exactly as in the reference.

Everything here works in memory on one list of documents; `electra_pipeline.data.examples` runs it
over a whole corpus and writes the shards.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from electra_pipeline.data.tokenizer import SPECIAL_IDS, load_tokenizer

if TYPE_CHECKING:
    from electra_pipeline.data.examples_config import ExamplesConfig

_SENTENCE_END = (".", "!", "?")
_CLOSERS = ('"', "'", ")", "]", "\u201d", "\u2019", "\u00bb")  # may follow the end mark
# a "." after these is not a sentence end (single letters cover initials, "i.e.", "U.S.")
_ABBREVIATIONS = tuple("abcdefghijklmnopqrstuvwxyz") + (
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "mt", "fig", "gen", "col", "lt", "capt", "rev",
    "gov", "sen", "rep", "no", "vol", "pp", "ch", "ca", "approx")


# --------------------------------------------------------------------------- tokenising

class _Encoder:
    """Paragraphs -> token ids without special tokens, as `encode_batch` gives them, faster.

    BERT tokenisation is local to words: the normaliser works character by character and the
    pre-tokeniser splits at every space and punctuation character, so a paragraph's ids are the
    concatenation of the ids of its pieces when it is cut at spaces and ASCII/common Unicode
    punctuation. Printable paragraphs (all of a cleaned corpus: no tabs, controls or exotic
    spaces) are cut into pieces with one regex; each distinct piece is encoded once with
    `encode_batch` and kept in a table, and a paragraph becomes a gather from that table
    (English is Zipfian: after a few MB nearly every piece is known). Other paragraphs are
    encoded whole (as one "piece"). Tokenizers that are not BertNormalizer + BertPreTokenizer
    encode every paragraph whole. Special-token strings in the text are tokenised as text, so
    content never yields [PAD]/[CLS]/[SEP]/[MASK]."""

    _PIECES = re.compile("[^ !-/:-@\\[-`{-~\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00ab\u00bb]+|[^ ]")
    max_cached = 2_000_000  # table entries; emptied when full (speed only, never the result)

    def __init__(self, tokenizer_file: str, batch_size: int = 1000):
        self.tok = load_tokenizer(tokenizer_file)
        self.tok.no_padding()
        self.tok.no_truncation()
        self.tok.encode_special_tokens = True
        self.batch_size = batch_size
        self.marks = _SentenceMarks.of(self.tok)
        spec = json.loads(self.tok.to_str())
        self.split = ((spec.get("normalizer") or {}).get("type") == "BertNormalizer"
                      and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer")
        self._reset()

    def _reset(self) -> None:
        self.index: dict[str, int] = {}  # piece -> row in the table
        self.starts = np.zeros(1024, np.int64)  # row -> first id in self.ids
        self.lengths = np.zeros(1024, np.int64)  # row -> number of ids
        self.ids = np.zeros(1 << 16, np.int32)
        self.n_ids = 0

    def _learn(self, pieces: list[str]) -> None:
        """Encode pieces not in the table yet and append them."""
        encode = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
        for b in range(0, len(pieces), self.batch_size):
            batch = pieces[b:b + self.batch_size]
            encoded = [e.ids for e in encode(batch, add_special_tokens=False)]
            lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))
            flat = np.fromiter(chain.from_iterable(encoded), np.int32, count=int(lengths.sum()))
            row, end = len(self.index), self.n_ids + len(flat)
            if row + len(batch) > len(self.starts):
                grow = max(len(self.starts), len(batch))
                self.starts = np.concatenate([self.starts, np.zeros(grow, np.int64)])
                self.lengths = np.concatenate([self.lengths, np.zeros(grow, np.int64)])
            if end > len(self.ids):
                self.ids = np.concatenate([self.ids, np.zeros(max(len(self.ids), len(flat)), np.int32)])
            self.starts[row:row + len(batch)] = self.n_ids + np.cumsum(lengths) - lengths
            self.lengths[row:row + len(batch)] = lengths
            self.ids[self.n_ids:end] = flat
            self.n_ids = end
            self.index.update(zip(batch, range(row, row + len(batch))))

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(all ids concatenated, int32; ids per text, int64)."""
        if self.split:
            find = self._PIECES.findall
            per_text = [find(t) if t.isprintable() else [t] for t in texts]
        else:
            per_text = [[t] for t in texts]
        pieces = list(chain.from_iterable(per_text))
        counts = np.fromiter(map(len, per_text), np.int64, count=len(per_text))
        new = set(pieces).difference(self.index)
        if new and len(self.index) + len(new) > self.max_cached:
            self._reset()
            new = set(pieces)
        if new:
            self._learn(list(new))
        rows = np.fromiter(map(self.index.__getitem__, pieces), np.int64, count=len(pieces))
        lengths = self.lengths[rows]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        # ids of piece k sit at starts[k] .. starts[k] + lengths[k] in the table
        gather = np.arange(total) + np.repeat(self.starts[rows] - (ends - lengths), lengths)
        piece_end = np.concatenate([[0], ends])
        text_end = np.cumsum(counts)
        return self.ids[gather], piece_end[text_end] - piece_end[text_end - counts]


@dataclass(frozen=True)
class _SentenceMarks:
    """Token ids that end a sentence, may follow its end, or make a "." not an end."""

    ends: list[int]
    closers: list[int]
    abbreviations: list[int]
    dot: int | None

    @classmethod
    def of(cls, tok: Any) -> _SentenceMarks:
        def ids(tokens: tuple[str, ...]) -> list[int]:
            return sorted({i for t in tokens for i in (tok.token_to_id(t), tok.token_to_id(t.capitalize())) if i is not None})

        return cls(ids(_SENTENCE_END), ids(_CLOSERS), ids(_ABBREVIATIONS), tok.token_to_id("."))


def _sentence_ends(tokens: np.ndarray, para_ends: np.ndarray, marks: _SentenceMarks) -> np.ndarray:
    """Exclusive end offsets of sentences: after `.`/`!`/`?` (and a closing quote/bracket right
    after it) when the next token is not more punctuation and a "." does not follow an initial or
    a common abbreviation; and at every paragraph end. Cheap and approximate, on token ids."""
    if len(tokens) == 0 or not marks.ends:
        return para_ends
    is_end = np.isin(tokens, marks.ends)
    if marks.dot is not None and marks.abbreviations:
        is_end[1:] &= ~((tokens[1:] == marks.dot) & np.isin(tokens[:-1], marks.abbreviations))
    is_close = np.isin(tokens, marks.closers) if marks.closers else np.zeros_like(is_end)
    stop = is_end.copy()
    stop[1:] |= is_close[1:] & is_end[:-1]
    mark = is_end | is_close
    stop[:-1] &= ~mark[1:]
    cuts = np.flatnonzero(stop) + 1
    return np.unique(np.concatenate([cuts, para_ends]))


# --------------------------------------------------------------------------- packing

def pack_documents(docs: list[str], enc: _Encoder, cfg: ExamplesConfig,
                   rng: random.Random) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Documents (paragraphs separated by newlines) -> packed rows, their lengths and counts."""
    L = cfg.seq_len
    paras: list[str] = []
    doc_paras = np.empty(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        split = doc.split("\n")
        paras.extend(split)
        doc_paras[i] = len(split)
    if paras:
        tokens, para_len = enc(paras)
    else:
        tokens, para_len = np.zeros(0, np.int32), np.zeros(0, np.int64)
    para_ends = np.cumsum(para_len)
    if cfg.split_sentences:
        ends = _sentence_ends(tokens, para_ends, enc.marks)
    else:
        ends = np.unique(para_ends)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]  # empty paragraphs make no sentences
    doc_token_ends = para_ends[np.cumsum(doc_paras) - 1] if len(docs) and len(para_ends) else np.zeros(len(docs), np.int64)
    doc_first_sent = np.searchsorted(ends, np.concatenate([[0], doc_token_ends])[:-1], side="right")
    doc_last_sent = np.searchsorted(ends, doc_token_ends, side="right")

    rows, lengths, stats = _pack(tokens, starts.tolist(), ends.tolist(), doc_first_sent.tolist(),
                                 doc_last_sent.tolist(), L, cfg, rng)
    stats.update(documents=len(docs), paragraphs=len(paras), sentences=int(len(starts)), tokens=int(len(tokens)))
    return rows, lengths, stats


def _pack(tokens: np.ndarray, starts: list[int], ends: list[int], doc_first: list[int], doc_last: list[int],
          L: int, cfg: ExamplesConfig, rng: random.Random) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """ELECTRA's ExampleBuilder over pre-tokenised sentences; returns (rows, lengths, stats)."""
    cls, sep = SPECIAL_IDS["cls"], SPECIAL_IDS["sep"]
    rows = np.zeros((max(16, len(starts) // 2), L), dtype=np.int32)
    lengths: list[int] = []
    truncated = single = 0
    target = L

    def fill(row: np.ndarray, pos: int, sents: list[int], limit: int) -> int:
        for s in sents:
            if limit <= 0:
                break
            a = starts[s]
            n = min(ends[s] - a, limit)
            row[pos:pos + n] = tokens[a:a + n]
            pos += n
            limit -= n
        return pos

    def create(sents: list[int]) -> None:
        nonlocal rows, target, truncated, single
        first_target = 100_000 if rng.random() < cfg.single_segment_prob else (target - 3) // 2
        first: list[int] = []
        second: list[int] = []
        n_first = n_second = 0
        for s in sents:
            n = ends[s] - starts[s]
            if (n_first == 0 or n_first + n < first_target
                    or (n_second == 0 and n_first < first_target and rng.random() < 0.5)):
                first.append(s)
                n_first += n
            else:
                second.append(s)
                n_second += n
        a = min(n_first, L - 2)
        b = min(n_second, max(0, L - a - 3))
        k = len(lengths)
        if k == len(rows):
            rows = np.concatenate([rows, np.zeros_like(rows)])
        row = rows[k]
        row[0] = cls
        pos = fill(row, 1, first, a)
        row[pos] = sep
        pos += 1
        if b > 0:
            pos = fill(row, pos, second, b)
            row[pos] = sep
            pos += 1
        else:
            single += 1
        lengths.append(pos)
        truncated += (n_first - a) + (n_second - b)
        target = rng.randint(5, L) if rng.random() < cfg.short_seq_prob else L

    for d in range(len(doc_first)):
        current: list[int] = []
        length = 0
        for s in range(doc_first[d], doc_last[d]):
            current.append(s)
            length += ends[s] - starts[s]
            if length >= target:
                create(current)
                current, length = [], 0
        if current:  # the document's end closes the example (never packs across documents)
            create(current)
    n = len(lengths)
    return rows[:n], np.asarray(lengths, dtype=np.int64), {"examples": n, "truncated_tokens": truncated,
                                                          "single_segment_examples": single}
