"""Serving-time pre- and post-processing around an exported ONNX model: pure, no web framework.

Export checks, the BentoML service, the benchmark and tests all go through this one module, so
what the server answers is what the export was verified on. Fine-tuning (`tasks/glue.py`,
`tasks/squad.py`) builds its inputs and decodes its spans with the same functions, so the served
model sees exactly what it was trained on: [CLS] A [SEP] (B [SEP]) from `add_special_tokens=False`
encodings (`text_row`), BERT's longest-first pair truncation, SQuAD doc-stride windows where each
token is scored only in the window it is most central in (`question_windows`), and span
candidates per window (`window_spans`). Only numpy and tokenizers: the Bento ships without torch.

An exported model directory holds `model.onnx` (and `model.int8.onnx`), `tokenizer.json` and
`metadata.json` (see `export/onnx.py`). `Predictor` loads one and answers classify/answer/detect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from electra_pipeline.errors import ConfigError, DataError, read_json_object

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = {  # metadata kind -> ONNX output names, in the order the graph returns them
    "classification": ("logits",),
    "regression": ("logits",),
    "qa": ("start_logits", "end_logits"),
    "qa_v2": ("start_logits", "end_logits", "answerable_logits"),
    "discriminator": ("logits",),
}
N_BEST = 20  # span candidates per side, as fine-tuning's SquadTask default
# a text is read up to this many characters per token the model can take (see `cut_text`);
# English WordPiece runs at 4-6 characters a token, so the cut never reaches a kept token there
MAX_CHARS_PER_TOKEN = 16
MAX_TOKENS_PER_RUN = 64 * 128  # padded tokens per ONNX Runtime call: bounds memory, keeps batches dense

Item = str | tuple[str, str]  # one text or a (text_a, text_b) pair


# --- tokenisation -----------------------------------------------------------------------

def special_ids(tok: Tokenizer) -> tuple[int, int, int]:
    """([CLS], [SEP], [PAD]) ids. Inputs are assembled here, not by the tokenizer's
    post-processor, so truncation and SQuAD windows are exact."""
    ids = []
    for name in ("[CLS]", "[SEP]", "[PAD]"):
        i = tok.token_to_id(name)
        if i is None:
            raise DataError(f"tokenizer: has no {name} token; a BERT-style WordPiece vocabulary is required")
        ids.append(i)
    return ids[0], ids[1], ids[2]


def longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Kept lengths under BERT's longest-first rule (trim the longer side, b on ties), in O(1):
    the same result as trimming one token at a time, which a 100k-token input would make slow."""
    budget = max(budget, 0)
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if budget - short >= short:  # only the longer side is cut
        return (budget - len_b, len_b) if len_a > len_b else (len_a, budget - len_a)
    return budget - budget // 2, budget // 2  # both cut down to (about) half; b gives first


def text_row(a: Sequence[int], b: Sequence[int] | None, max_length: int, cls: int,
             sep: int) -> tuple[list[int], list[int], int, int]:
    """[CLS] a [SEP] (b [SEP]) and its token types, longest-first truncated to max_length; also
    the kept lengths of a and b. One row of `encode_texts` and of GLUE fine-tuning features."""
    la, lb = longest_first(len(a), len(b or ()), max_length - (3 if b is not None else 2))
    ids = [cls, *a[:la], sep]
    types = [0] * len(ids)
    if b is not None:
        ids += [*b[:lb], sep]
        types += [1] * (lb + 1)
    return ids, types, la, lb


def cut_text(text: str, max_chars: int) -> tuple[str, bool]:
    """The text's first max_chars characters, without a word cut in half (it is dropped whole),
    and whether anything but whitespace was dropped. Tokenizing costs time in proportion to the
    text, while only a window's worth of tokens is kept: cutting first bounds the cost of a
    request. The tokens of what is kept are the tokens the whole text starts with."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    if not text[max_chars].isspace() and (m := _LAST_SPACE.search(head)) and m.start() > 0:
        head = head[:m.start()]  # (a text without a space before the cut is one word: cut in it)
    return head, not text[len(head):].isspace()


_LAST_SPACE = re.compile(r"\s\S*$")


@dataclass
class Batch:
    """Padded int64 model inputs (B, T), padded to this batch's longest row."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": self.token_type_ids}

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, rows: Sequence[int]) -> Batch:
        """Rows re-padded to their own longest row (a length bucket)."""
        idx = np.asarray(rows)
        width = max(int(self.attention_mask[idx].sum(1).max()), 1)
        return Batch(self.input_ids[idx, :width], self.attention_mask[idx, :width], self.token_type_ids[idx, :width])


def pad_rows(ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]], pad_id: int) -> Batch:
    width = max(len(r) for r in ids)
    out = np.full((len(ids), width), pad_id, np.int64)
    tt = np.zeros((len(ids), width), np.int64)
    mask = np.zeros((len(ids), width), np.int64)
    for i, (r, t) in enumerate(zip(ids, types)):
        out[i, : len(r)], tt[i, : len(t)], mask[i, : len(r)] = r, t, 1
    return Batch(out, mask, tt)


@dataclass
class EncodedTexts:
    batch: Batch
    truncated: list[bool]  # per item: some tokens were cut to fit max_length
    offsets: list[np.ndarray] = field(default_factory=list)  # per item (T, 2) char spans of text_a, -1 elsewhere
    tokens: list[list[str]] = field(default_factory=list)  # per item, tokens incl. specials


def encode_texts(tok: Tokenizer, items: Sequence[Item], max_length: int) -> EncodedTexts:
    """[CLS] a [SEP] (b [SEP]) per item, longest-first truncation to max_length, padded. Each
    text is first cut to MAX_CHARS_PER_TOKEN * max_length characters (`cut_text`); `truncated`
    says tokens were cut, or text was."""
    cls, sep, pad = special_ids(tok)
    max_chars = MAX_CHARS_PER_TOKEN * max_length
    cut_a = [cut_text(it if isinstance(it, str) else it[0], max_chars) for it in items]
    cut_b = {i: cut_text(it[1], max_chars) for i, it in enumerate(items) if not isinstance(it, str)}
    enc_a = tok.encode_batch([t for t, _ in cut_a], add_special_tokens=False)
    enc_b = dict(zip(cut_b, tok.encode_batch([t for t, _ in cut_b.values()], add_special_tokens=False)))
    ids, types, truncated, offsets, tokens = [], [], [], [], []
    for i, ea in enumerate(enc_a):
        eb = enc_b.get(i)
        a, b = ea.ids, (eb.ids if eb is not None else None)
        row, tt, la, lb = text_row(a, b, max_length, cls, sep)
        ids.append(row)
        types.append(tt)
        truncated.append(la < len(a) or lb < len(b or ()) or cut_a[i][1] or (i in cut_b and cut_b[i][1]))
        off = np.full((len(row), 2), -1, np.int64)
        if la:
            off[1:1 + la] = np.asarray(ea.offsets[:la], np.int64)
        offsets.append(off)
        tokens.append(["[CLS]", *ea.tokens[:la], "[SEP]"] + ([*eb.tokens[:lb], "[SEP]"] if eb is not None else []))
    return EncodedTexts(pad_rows(ids, types, pad), truncated, offsets, tokens)


# --- question answering windows ---------------------------------------------------------

def doc_windows(n_tokens: int, max_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each doc-stride window over n_tokens context tokens."""
    out, start = [], 0
    while True:
        length = min(n_tokens - start, max_doc)
        out.append((start, length))
        if start + length >= n_tokens:
            return out
        start += min(length, doc_stride)


def max_context_window(wins: Sequence[tuple[int, int]], n: int) -> np.ndarray:
    """Per context token, the window where it has the most context on both sides (BERT's rule)."""
    best_score, best = np.full(n, -np.inf), np.zeros(n, np.int64)
    for wi, (ws, wl) in enumerate(wins):
        pos = np.arange(ws, ws + wl)
        score = np.minimum(pos - ws, ws + wl - 1 - pos) + 0.01 * wl
        better = score > best_score[pos]
        best_score[pos[better]], best[pos[better]] = score[better], wi
    return best


@dataclass
class QAWindow:
    """One input row: [CLS] question [SEP] context tokens [start, start + length) [SEP]."""

    input_ids: list[int]
    token_type_ids: list[int]
    start: int  # first context token in the window (index into the context's tokens)
    length: int  # context tokens in the window
    first: int  # row position of the window's first context token (question length + 2)
    offsets: np.ndarray  # (T, 2) char span in the context; -1 outside it
    max_context: np.ndarray  # (T,) bool: the token is scored in this window


def question_windows(question: Encoding, context: Encoding, *, cls: int, sep: int, max_seq_length: int,
                     doc_stride: int, max_query_length: int,
                     max_windows: int | None = None) -> tuple[list[QAWindow], bool]:
    """The doc-stride windows of one question over its context (both encoded without special
    tokens), and whether the question was cut to max_query_length or the context to max_windows.
    SQuAD fine-tuning and serving both build their rows here."""
    q = question.ids[:max_query_length]
    truncated = len(question.ids) > len(q)
    c_ids = context.ids
    c_off = np.asarray(context.offsets, np.int64).reshape(-1, 2)
    max_doc = max_seq_length - len(q) - 3
    if max_doc < 1:
        raise ConfigError(f"max_seq_length: {max_seq_length} leaves no room for the context "
                          f"after a {len(q)}-token question")
    wins = doc_windows(len(c_ids), max_doc, doc_stride)
    if max_windows is not None and len(wins) > max_windows:
        wins, truncated = wins[:max_windows], True
    best = max_context_window(wins, len(c_ids))
    first = len(q) + 2
    out = []
    for wi, (ws, wl) in enumerate(wins):
        ids = [cls, *q, sep, *c_ids[ws:ws + wl], sep]
        off = np.full((len(ids), 2), -1, np.int64)
        off[first:first + wl] = c_off[ws:ws + wl]
        mc = np.zeros(len(ids), bool)
        mc[first:first + wl] = best[ws:ws + wl] == wi
        out.append(QAWindow(ids, [0] * first + [1] * (wl + 1), ws, wl, first, off, mc))
    return out, truncated


@dataclass
class QAWindows:
    batch: Batch  # one row per window: [CLS] question [SEP] window [SEP]
    offsets: list[np.ndarray]  # per window (T, 2) char span in the context; -1 outside it
    max_context: list[np.ndarray]  # per window (T,) bool: the token is scored in this window
    truncated: bool  # the question was cut to max_query_length or the context to max_windows


def qa_windows(tok: Tokenizer, question: str, context: str, *, max_seq_length: int, doc_stride: int,
               max_query_length: int, max_windows: int | None = None) -> QAWindows:
    """`question_windows` for one question, padded into one batch. The question is first cut to
    MAX_CHARS_PER_TOKEN * max_query_length characters and, with max_windows, the context to as
    many characters per token the windows can cover (`cut_text`)."""
    cls, sep, pad = special_ids(tok)
    question, q_cut = cut_text(question, MAX_CHARS_PER_TOKEN * max_query_length)
    c_cut = False
    if max_windows is not None:
        context, c_cut = cut_text(context, MAX_CHARS_PER_TOKEN * ((max_windows - 1) * doc_stride + max_seq_length))
    q_enc, c_enc = tok.encode_batch([question, context], add_special_tokens=False)
    wins, truncated = question_windows(q_enc, c_enc, cls=cls, sep=sep, max_seq_length=max_seq_length,
                                       doc_stride=doc_stride, max_query_length=max_query_length,
                                       max_windows=max_windows)
    truncated = truncated or q_cut or c_cut
    batch = pad_rows([w.input_ids for w in wins], [w.token_type_ids for w in wins], pad)
    return QAWindows(batch, [w.offsets for w in wins], [w.max_context for w in wins], truncated)


def window_spans(offsets: np.ndarray, max_context: np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray,
                 *, n_best: int, max_answer_length: int) -> list[tuple[float, int, int]]:
    """(start + end logit, char start, char end) of each candidate span in one window: the
    n_best starts (on context tokens scored in this window) by n_best ends, at most
    max_answer_length tokens long. Logits and offsets cover the window's real tokens (T,)."""
    in_ctx = offsets[:, 0] >= 0
    starts = [j for j in np.argsort(-start_logits) if in_ctx[j] and max_context[j]][:n_best]
    ends = [j for j in np.argsort(-end_logits) if in_ctx[j]][:n_best]
    return [(float(start_logits[s] + end_logits[e]), int(offsets[s, 0]), int(offsets[e, 1]))
            for s in starts for e in ends if s <= e < s + max_answer_length]


def decode_answer(context: str, win: QAWindows, start_logits: np.ndarray, end_logits: np.ndarray,
                  answerable_logits: np.ndarray | None, *, max_answer_length: int,
                  no_answer_threshold: float = 0.0) -> dict[str, Any]:
    """Best span over all windows (score = start + end logit); with a v2 head, "no answer"
    unless the best window's has-answer logit beats the threshold tuned on dev."""
    cands = [c for w, off in enumerate(win.offsets)
             for c in window_spans(off, win.max_context[w], start_logits[w, :len(off)], end_logits[w, :len(off)],
                                   n_best=N_BEST, max_answer_length=max_answer_length)]
    best = max(cands, key=lambda c: c[0]) if cands else None  # the first of equal scores, as fine-tuning's sort
    out: dict[str, Any] = {"answer": "", "start": None, "end": None, "score": None, "has_answer": False,
                           "answerable_prob": None, "truncated": win.truncated}
    if best is not None:
        out.update(answer=context[best[1]:best[2]], start=best[1], end=best[2], score=best[0], has_answer=True)
    if answerable_logits is not None:
        logit = float(np.max(answerable_logits))
        out["answerable_prob"] = float(sigmoid(np.float64(logit)))
        if not logit > no_answer_threshold:
            out.update(answer="", start=None, end=None, has_answer=False)
    return out


# --- output post-processing -------------------------------------------------------------

def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def classification_results(logits: np.ndarray, kind: str, labels: Sequence[str],
                           truncated: Sequence[bool]) -> list[dict[str, Any]]:
    """(B, L) logits -> per item label, its probability and all scores; regression: the value."""
    if kind == "regression":
        return [{"label": None, "score": float(v), "scores": {}, "truncated": bool(t)}
                for v, t in zip(logits[:, 0], truncated)]
    probs = softmax(logits.astype(np.float64))
    return [{"label": labels[int(p.argmax())], "score": float(p.max()),
             "scores": {lab: float(x) for lab, x in zip(labels, p)}, "truncated": bool(t)}
            for p, t in zip(probs, truncated)]


# --- the exported model -----------------------------------------------------------------

KINDS = ("classification", "regression", "qa", "discriminator")


def read_metadata(export_dir: str | Path) -> dict[str, Any]:
    """An export's metadata.json, checked for what loading it relies on: a known `kind`, a
    `max_seq_length`, and `files` whose names are plain file names inside the export directory
    (a name with a path in it could make the server load another local file)."""
    f = Path(export_dir) / "metadata.json"
    meta = read_json_object(f, missing="missing; not an exported model directory (run `electra export` first)")
    if meta.get("kind") not in KINDS:
        raise DataError(f"{f}: kind must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    if not isinstance(meta.get("max_seq_length"), int) or meta["max_seq_length"] < 3:
        raise DataError(f"{f}: max_seq_length must be an integer >= 3, got {meta.get('max_seq_length')!r}")
    files, sums = meta.get("files", {}), meta.get("sha256", {})
    if not isinstance(files, dict) or not isinstance(sums, dict):
        raise DataError(f"{f}: files and sha256 must be JSON objects")
    for key, name in files.items():
        if not _plain_file_name(name):
            raise DataError(f"{f}: files.{key} must be a plain file name in the export directory, got {name!r}")
    return meta


def _plain_file_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def export_file(export_dir: str | Path, meta: dict[str, Any], key: str, default: str | None = None) -> Path:
    """The export's file `files[key]` (`read_metadata` checked the name), present and, where
    metadata.json records its sha256, with exactly the bytes the export wrote."""
    name = meta.get("files", {}).get(key, default)
    if name is None:
        raise DataError(f"{Path(export_dir) / 'metadata.json'}: files.{key} is missing")
    path = Path(export_dir) / name
    if not path.is_file():
        raise DataError(f"{path}: missing")
    want = meta.get("sha256", {}).get(name)
    if want is not None and (got := file_sha256(path)) != want:
        raise DataError(f"{path}: sha256 {got[:16]}... differs from {want[:16]}... in metadata.json; the file "
                        "was damaged or changed after the export (export it again)")
    return path


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu is installed (it falls back to CPU without a usable GPU)."""
    import onnxruntime as ort

    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


class Predictor:
    """One exported model ready to answer: ONNX Runtime session, tokenizer and metadata.

    Thread-safe: ORT sessions and tokenizers may be called concurrently."""

    def __init__(self, session: Any, tokenizer: Tokenizer, meta: dict[str, Any], model_file: str):
        self.session = session
        self.tokenizer = tokenizer
        self.meta = meta
        self.model_file = model_file
        self.kind: str = meta["kind"]
        self.max_seq_length: int = int(meta["max_seq_length"])
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, export_dir: str | Path, *, quantized: bool = False, threads: int | None = None,
             spin: bool = False, providers: Sequence[str] | None = None) -> Predictor:
        """Every file is checked before use (see `read_metadata`, `export_file`); a fault is one
        DataError naming the file. providers: ORT execution providers (default: CUDA when usable,
        else CPU). threads: ORT intra-op threads (default: one per physical core). spin: let idle ORT
        threads busy-wait for work. Off by default: on a CPU shared with other processes (or
        other workers) spinning threads steal the cores the busy ones need; measured on this
        project's 2-core machine under load, int8 16x128 took 1.07 s with spinning, 0.46 s without."""
        import onnxruntime as ort

        d = Path(export_dir)
        meta = read_metadata(d)
        if quantized and "int8" not in meta.get("files", {}):
            raise DataError(f"{d}: has no int8 model (export with --quantize)")
        model_file = export_file(d, meta, "int8" if quantized else "model")
        tok_file = export_file(d, meta, "tokenizer", default="tokenizer.json")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            session = ort.InferenceSession(str(model_file), opts, providers=list(providers or default_providers()))
        except Exception as e:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for a bad model
            raise DataError(f"{model_file}: ONNX Runtime cannot load it ({_first_line(e)})") from None
        inputs, outputs = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        if not set(INPUT_NAMES) <= set(inputs) or outputs != meta.get("outputs", outputs):
            raise DataError(f"{model_file}: inputs {inputs} and outputs {outputs} are not the exported model's "
                            f"({list(INPUT_NAMES)} and {meta.get('outputs')} in metadata.json)")
        try:
            tokenizer = Tokenizer.from_file(str(tok_file))
        except Exception as e:  # tokenizers raises a bare Exception for an unreadable file
            raise DataError(f"{tok_file}: not a tokenizers JSON file ({_first_line(e)})") from None
        try:
            special_ids(tokenizer)
        except DataError as e:
            raise DataError(f"{tok_file}: {str(e).removeprefix('tokenizer: ')}") from None
        return cls(session, tokenizer, meta, model_file.name)

    def run(self, batch: Batch) -> dict[str, np.ndarray]:
        """Raw outputs for one padded batch, by output name."""
        return dict(zip(self.output_names, self.session.run(None, batch.feeds())))

    def run_bucketed(self, batch: Batch) -> dict[str, np.ndarray]:
        """Outputs for a batch of any size: rows sorted by length and run in dense chunks of at
        most MAX_TOKENS_PER_RUN padded tokens, so one long row does not pad all the others.
        Per-token outputs come back padded to the input batch's width."""
        lengths = batch.attention_mask.sum(1)
        order = np.argsort(-lengths, kind="stable")
        width = batch.input_ids.shape[1]
        out: dict[str, np.ndarray] = {}
        i = 0
        while i < len(order):
            rows = max(1, MAX_TOKENS_PER_RUN // max(int(lengths[order[i]]), 1))
            chunk = order[i:i + rows]
            for k, v in self.run(batch.select(chunk)).items():
                if self._per_token(k):  # (b, t) with t <= width
                    out.setdefault(k, np.zeros((len(batch), width), v.dtype))[chunk, : v.shape[1]] = v
                else:
                    out.setdefault(k, np.zeros((len(batch), *v.shape[1:]), v.dtype))[chunk] = v
            i += rows
        return out

    def _per_token(self, output: str) -> bool:
        return output in ("start_logits", "end_logits") or (self.kind == "discriminator" and output == "logits")

    def _require(self, *kinds: str) -> None:
        if self.kind not in kinds:
            raise DataError(f"this model is a {self.kind} model ({self.meta.get('task', '?')}); "
                            f"the operation needs a {' or '.join(kinds)} model")

    def classify(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        self._require("classification", "regression")
        if not items:
            return []
        enc = encode_texts(self.tokenizer, items, self.max_seq_length)
        logits = self.run_bucketed(enc.batch)["logits"]
        return classification_results(logits, self.kind, self.meta.get("labels", []), enc.truncated)

    def answer(self, question: str, context: str, max_windows: int | None = None) -> dict[str, Any]:
        self._require("qa")
        m = self.meta
        win = qa_windows(self.tokenizer, question, context, max_seq_length=self.max_seq_length,
                         doc_stride=m["doc_stride"], max_query_length=m["max_query_length"], max_windows=max_windows)
        out = self.run_bucketed(win.batch)
        return decode_answer(context, win, out["start_logits"], out["end_logits"], out.get("answerable_logits"),
                             max_answer_length=m["max_answer_length"],
                             no_answer_threshold=m.get("no_answer_threshold", 0.0))

    def detect(self, text: str) -> dict[str, Any]:
        """Per-token probability that the token was replaced (the raw RTD discriminator)."""
        self._require("discriminator")
        enc = encode_texts(self.tokenizer, [text], self.max_seq_length)
        probs = sigmoid(self.run(enc.batch)["logits"][0].astype(np.float64))
        toks, off = enc.tokens[0], enc.offsets[0]
        return {"tokens": [{"token": toks[j], "start": int(off[j, 0]), "end": int(off[j, 1]),
                            "replaced_prob": float(probs[j])} for j in range(1, len(toks) - 1)],
                "truncated": enc.truncated[0]}
