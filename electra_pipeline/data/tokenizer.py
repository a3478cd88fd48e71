"""BERT-style WordPiece: trained on the cleaned corpus, saved so Hugging Face loads it as is.

The five special tokens come first, in a fixed order, so their ids never depend on the corpus:
[PAD]=0 (padding is "id == 0" everywhere downstream), [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

Output directory:
    tokenizer.json            the `tokenizers` pipeline (normaliser, pre-tokeniser, WordPiece,
                              [CLS] A [SEP] B [SEP] post-processor with type ids, decoder)
    vocab.txt                 one token per line, line number = id (BERT's format)
    tokenizer_config.json     + special_tokens_map.json: for transformers' from_pretrained
    train_config.json         the resolved TokenizerConfig and what it was trained on
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from electra_pipeline.atomic import staged_dir
from electra_pipeline.data.corpus import iter_documents
from electra_pipeline.errors import ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # id = position
SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
TOKENIZER_FILE = "tokenizer.json"


@dataclass(kw_only=True)
class TokenizerConfig:
    """WordPiece training settings (defaults: BERT/ELECTRA uncased, 30,522 tokens)."""

    vocab_size: int = 30522
    """Final vocabulary size, special tokens and single characters included."""
    min_frequency: int = 2
    """A pair must occur at least this often to be merged."""
    lowercase: bool = True
    """Uncased model (BERT's do_lower_case)."""
    strip_accents: bool | None = None
    """Remove accents (NFD + drop combining marks); None follows `lowercase`, as in BERT."""
    limit_alphabet: int = 1000
    """At most this many distinct characters become single-character tokens; rarer ones are [UNK]."""
    max_chars: int | None = None
    """Train on at most this many characters of the corpus (None: all of it)."""
    batch_size: int = 1000
    """Paragraphs handed to the trainer per batch (it counts words in parallel within a batch)."""
    model_max_length: int = 512
    """Written to tokenizer_config.json: the longest input the model's position table allows."""

    def __post_init__(self) -> None:
        def positive_int(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"tokenizer.{name}: must be an integer >= {low}, got {v!r}")

        positive_int("vocab_size", len(SPECIAL_TOKENS) + 1)
        positive_int("min_frequency", 0)
        positive_int("limit_alphabet", 1)
        positive_int("batch_size", 1)
        positive_int("model_max_length", 8)
        if self.max_chars is not None:
            positive_int("max_chars", 1)
        if not isinstance(self.lowercase, bool):
            raise ConfigError(f"tokenizer.lowercase: must be true or false, got {self.lowercase!r}")
        if self.strip_accents is not None and not isinstance(self.strip_accents, bool):
            raise ConfigError(f"tokenizer.strip_accents: must be true, false or null, got {self.strip_accents!r}")

    @property
    def resolved_strip_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents


def new_tokenizer(cfg: TokenizerConfig) -> Any:
    """An untrained BERT pipeline: normaliser, pre-tokeniser, WordPiece model, decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=cfg.resolved_strip_accents, lowercase=cfg.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _canonical_ids(tok: Any) -> None:
    """Renumber the trained vocabulary in a fixed order: specials, single characters, the rest,
    each sorted. The trainer's merge order breaks count ties differently from run to run, so the
    same corpus could give the same vocabulary under different ids; WordPiece only needs the set
    (longest match first), and fixed ids make tokenizer.json, and every example built with it,
    reproducible."""
    from tokenizers import models

    rest = sorted((t for t in tok.get_vocab(with_added_tokens=False) if t not in SPECIAL_TOKENS),
                  key=lambda t: (len(t) > 1, t))
    vocab = {t: i for i, t in enumerate(list(SPECIAL_TOKENS) + rest)}
    tok.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)


def _post_processor() -> Any:
    from tokenizers import processors

    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", SPECIAL_IDS["cls"]), ("[SEP]", SPECIAL_IDS["sep"])])


def _paragraph_batches(corpus: Path | list[Path], cfg: TokenizerConfig) -> Iterator[list[str]]:
    """Paragraph batches for `train_from_iterator`, stopping after `max_chars`."""
    batch: list[str] = []
    chars = 0
    for doc in iter_documents(corpus):
        for para in doc.split("\n"):
            batch.append(para)
            chars += len(para)
            if len(batch) >= cfg.batch_size:
                yield batch
                batch = []
            if cfg.max_chars is not None and chars >= cfg.max_chars:
                break
        if cfg.max_chars is not None and chars >= cfg.max_chars:
            break
    if batch:
        yield batch


@contextmanager
def _parallel_tokenizers() -> Iterator[None]:
    """Let `tokenizers` use every core for the duration of training.

    The CLI (and tests) set TOKENIZERS_PARALLELISM=false so that later forks are safe; WordPiece
    counting is twice as fast with both cores, and the Rust side reads the variable per call,
    so it is enabled here and restored after."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _progress_bar(progress: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def _write_vocab_txt(tok: Any, path: Path) -> None:
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise DataError(f"{path}: vocabulary ids are not contiguous; cannot write vocab.txt")
    path.write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")


def _hf_files(cfg: TokenizerConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """tokenizer_config.json and special_tokens_map.json as transformers expects them."""
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    config = {
        "tokenizer_class": "BertTokenizer",  # transformers 5: tokenizers-backed; 4: BertTokenizer(Fast)
        "do_lower_case": cfg.lowercase,
        "strip_accents": cfg.resolved_strip_accents,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        "model_max_length": cfg.model_max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        **specials,
    }
    return config, specials


def fit_wordpiece(texts: Iterable[str] | Iterable[list[str]], cfg: TokenizerConfig) -> Any:
    """Train the BERT-style WordPiece in memory: canonical ids, specials at 0-4, [CLS] A [SEP] B
    [SEP] templates. `train_wordpiece` wraps it with corpus reading and atomic files; tests and
    benchmarks call it on a list of texts."""
    from tokenizers import trainers

    tok = new_tokenizer(cfg)
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=cfg.limit_alphabet, continuing_subword_prefix="##", show_progress=False)
    with _parallel_tokenizers():
        tok.train_from_iterator(texts, trainer=trainer)
    _canonical_ids(tok)
    for token, i in zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS))):
        if tok.token_to_id(token) != i:  # guard the contract every later stage relies on
            raise DataError(f"tokenizer training gave {token} id {tok.token_to_id(token)}, expected {i}")
    tok.post_processor = _post_processor()
    return tok


def train_wordpiece(corpus: Path | list[Path], out_dir: Path, cfg: TokenizerConfig, progress: bool = True) -> Path:
    """Train WordPiece on a corpus directory (or raw text sources) and save it to `out_dir`;
    returns the path of tokenizer.json. The directory appears complete or not at all."""
    out_dir = Path(out_dir)
    counted = {"paragraphs": 0, "chars": 0}

    def batches() -> Iterator[list[str]]:
        with _progress_bar(progress, desc="wordpiece", unit="para") as bar:
            for batch in _paragraph_batches(corpus, cfg):
                counted["paragraphs"] += len(batch)
                counted["chars"] += sum(map(len, batch))
                bar.update(len(batch))
                yield batch

    start = time.perf_counter()
    tok = fit_wordpiece(batches(), cfg)
    seconds = time.perf_counter() - start
    if counted["paragraphs"] == 0:
        raise DataError(f"{corpus}: no text to train the tokenizer on")

    sources = [str(corpus)] if isinstance(corpus, (str, Path)) else [str(p) for p in corpus]
    return save_tokenizer_dir(tok, out_dir, cfg, {"config": dataclasses.asdict(cfg), "corpus": sources,
                                                  "vocab_size": tok.get_vocab_size(), "trained_on": counted,
                                                  "train_seconds": round(seconds, 2)})


def save_tokenizer_dir(tok: Any, out_dir: Path, cfg: TokenizerConfig, provenance: dict[str, Any]) -> Path:
    """tokenizer.json, vocab.txt, the transformers files and `train_config.json` (`provenance`),
    written atomically; returns the path of tokenizer.json."""
    with staged_dir(out_dir, TOKENIZER_FILE) as tmp:
        tok.save(str(tmp / TOKENIZER_FILE))
        _write_vocab_txt(tok, tmp / "vocab.txt")
        hf_config, specials = _hf_files(cfg)
        (tmp / "tokenizer_config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
        (tmp / "train_config.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return out_dir / TOKENIZER_FILE


def load_tokenizer(path: str | Path) -> Any:
    """A trained tokenizer from its directory or tokenizer.json, checked to be one of ours
    (the five special tokens at ids 0-4), so id 0 can safely mean padding downstream."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{file}: tokenizer not found (train one with `electra tokenizer`)")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on parse errors
        raise DataError(f"{file}: not a tokenizers tokenizer.json ({str(e).splitlines()[0][:200]})") from None
    for token, expected in zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS))):
        got = tok.token_to_id(token)
        if got != expected:
            raise DataError(f"{file}: {token} has id {got}, expected {expected}; not an electra-pipeline tokenizer "
                            f"(special tokens must be {', '.join(SPECIAL_TOKENS)} = 0..4)")
    return tok


def tokenizer_stats(tok: Any, texts: Iterable[str]) -> dict[str, float]:
    """How well the vocabulary fits held-out text: [UNK] rate (of all tokens) and tokens per
    whitespace-separated word (1.0 = every word is one token; ~1.3 is typical for BERT on English)."""
    texts = [t for t in texts if t]
    tokens = unks = words = chars = 0
    unk = tok.token_to_id("[UNK]")
    for i in range(0, len(texts), 1000):
        batch = texts[i:i + 1000]
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            tokens += len(enc.ids)
            unks += enc.ids.count(unk)
        words += sum(len(t.split()) for t in batch)
        chars += sum(map(len, batch))
    return {"texts": len(texts), "words": words, "tokens": tokens,
            "unk_rate": unks / tokens if tokens else 0.0,
            "tokens_per_word": tokens / words if words else 0.0,
            "chars_per_token": chars / tokens if tokens else 0.0}


def file_sha256(path: Path) -> str:
    """sha256 of a tokenizer.json: ties packed examples to the exact vocabulary they used."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
