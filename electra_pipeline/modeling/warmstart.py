"""Continue pre-training from existing weights: domain adaptation as a first-class run.

Starting from a trained encoder and pre-training it further on the user's own text ("Don't Stop
Pretraining", Gururangan et al. 2020) is how a small budget buys a useful model. `--init-from
SRC` accepts:

- a run directory of this project: `discriminator/` and `generator/` in Hugging Face ELECTRA
  format, and the run's `tokenizer.json`;
- a Hugging Face ELECTRA directory (config.json + model.safetensors + vocab.txt or
  tokenizer.json), e.g. `google/electra-small-discriminator` saved locally; a `generator/`
  subdirectory beside its files is used for the generator;
- `hf:NAME` (downloaded from the Hub with huggingface_hub; needs a network).

Model sizes come from the checkpoint. Where the source has no generator (published
discriminators usually come alone), the generator is initialised at random and shares the
loaded embeddings, as in ordinary pre-training.

Vocabulary. Every stage of this project relies on [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4
(`tokenizer.SPECIAL_TOKENS`); BERT's vocab.txt, which Google's ELECTRA uses, has them at 0 and
100-103. `Source.permutation` moves them to 0-4 by swapping each with the token that held its
target id (BERT's [unused0-3]), `Source.tokenizer` renumbers the vocabulary that way, and
`load_weights` swaps the embedding rows and the generator's output bias to match: the model
computes the same function on the same text. `electra tokenizer --from SRC` writes that
tokenizer, to build the examples with.

Vocabulary extension (`electra tokenizer --from SRC --extend-vocab N CORPUS`, off by default):
the N domain words that cost the most extra tokens under the checkpoint's vocabulary (count x
(pieces - 1) on the corpus) become tokens of their own at ids V..V+N-1, each embedding row (and
generator output bias) initialised as the mean of its pieces' rows. The tokenizer directory
records the words and their pieces (`train_config.json`, "extension"), which `load_weights` uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from electra_pipeline import integrity
from electra_pipeline.data.tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE
from electra_pipeline.errors import ConfigError, DataError, read_json_object
from electra_pipeline.modeling import hf
from electra_pipeline.modeling.config import ModelConfig, PretrainConfig

# ModelConfig fields a checkpoint fixes; the rest (dropout, generator size, ...) stay the run's
ARCHITECTURE = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "embedding_size",
                "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pre_layer_norm",
                "relative_attention")


@dataclass
class Source:
    """A checkpoint to start from: where its parts are and its vocabulary (by its own ids)."""

    path: Path
    discriminator: Path | None  # HF ELECTRA directory of the discriminator (or an MLM run's model)
    generator: Path | None
    vocab: list[str]  # token of each source id
    lowercase: bool
    tokenizer_file: Path | None  # the source's tokenizer.json, when it has one

    @property
    def encoder(self) -> Path:
        """The model whose sizes the run takes: the discriminator, else the MLM model."""
        return self.discriminator or self.generator  # find_source guarantees one

    @property
    def permutation(self) -> list[int]:
        """perm[new_id] = source id: the special tokens swapped to ids 0-4, nothing else moved."""
        perm = list(range(len(self.vocab)))
        where = {t: i for i, t in enumerate(self.vocab)}
        for new_id, token in enumerate(SPECIAL_TOKENS):
            old = where[token]
            if perm[new_id] == old:
                continue
            j = perm.index(old)
            perm[new_id], perm[j] = perm[j], perm[new_id]
        return perm

    def model_config(self) -> ModelConfig:
        return hf.from_hf_config(_read_json(self.encoder / "config.json"), str(self.encoder / "config.json"))

    def tokenizer(self) -> Any:
        """A tokenizers.Tokenizer in this project's layout (specials at 0-4)."""
        from tokenizers import Tokenizer, models

        from electra_pipeline.data.tokenizer import TokenizerConfig, _post_processor, new_tokenizer

        if self.tokenizer_file is not None and self.permutation == list(range(len(self.vocab))):
            return Tokenizer.from_file(str(self.tokenizer_file))
        tok = new_tokenizer(TokenizerConfig(lowercase=self.lowercase))
        vocab = {self.vocab[old]: new for new, old in enumerate(self.permutation)}
        tok.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100)
        tok.post_processor = _post_processor()
        return tok

    def sha256(self) -> str:
        """Checksum of the weights the run starts from (lineage in summary.json and MLflow)."""
        h = hashlib.sha256()
        for d in (self.discriminator, self.generator):
            if d is not None:
                h.update((d / "model.safetensors").read_bytes())
        return h.hexdigest()


def extension_of(tokenizer: str | Path) -> dict[str, Any] | None:
    """The "extension" record of a tokenizer directory written with --extend-vocab, else None."""
    p = Path(tokenizer)
    record = (p if p.is_dir() else p.parent) / "train_config.json"
    if not record.is_file():
        return None
    return _read_json(record).get("extension")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path)


def _is_model_dir(p: Path) -> bool:
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def _vocabulary(dirs: list[Path], where: str) -> tuple[list[str], bool, Path | None]:
    """(tokens by id, lowercase, tokenizer.json or None) from the first directory that has one."""
    for d in dirs:
        tj = d / TOKENIZER_FILE
        if tj.is_file():
            spec = _read_json(tj)
            model = spec.get("model") or {}
            if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
                raise DataError(f"{tj}: not a WordPiece tokenizer (ELECTRA uses WordPiece)")
            vocab = sorted(model["vocab"], key=model["vocab"].get)
            if [model["vocab"][t] for t in vocab] != list(range(len(vocab))):
                raise DataError(f"{tj}: vocabulary ids are not 0..{len(vocab) - 1}")
            norm = spec.get("normalizer") or {}
            return vocab, bool(norm.get("lowercase", True)), tj
        vt = d / "vocab.txt"
        if vt.is_file():
            vocab = vt.read_text(encoding="utf-8").splitlines()
            cfg_file = d / "tokenizer_config.json"
            lowercase = bool(_read_json(cfg_file).get("do_lower_case", True)) if cfg_file.is_file() else True
            return vocab, lowercase, None
    raise DataError(f"{where}: no tokenizer.json or vocab.txt; a checkpoint to continue needs its vocabulary")


def find_source(src: str | Path) -> Source:
    """Locate the parts of `src` (see the module docstring); errors name what is missing."""
    s = str(src)
    if s.startswith("hf:"):
        try:
            from huggingface_hub import snapshot_download

            s = snapshot_download(s[3:], allow_patterns=["*.json", "*.txt", "*.safetensors"])
        except Exception as e:  # offline, unknown repo: the hub raises many types
            raise DataError(f"init_from: could not download {src} ({str(e).splitlines()[0][:200]})") from None
    p = Path(s)
    if not p.is_dir():
        raise DataError(f"{p}: init_from: not found (a run directory or a Hugging Face ELECTRA directory)")
    if _is_model_dir(p):  # a Hugging Face directory
        arch = (_read_json(p / "config.json").get("architectures") or ["ElectraForPreTraining"])[0]
        disc, gen = (p, None) if arch != "ElectraForMaskedLM" else (None, p)
        if gen is None and _is_model_dir(p / "generator"):
            gen = p / "generator"
        dirs = [p]
    elif _is_model_dir(p / "discriminator") or _is_model_dir(p / "generator"):  # a run directory of ours
        disc = p / "discriminator" if _is_model_dir(p / "discriminator") else None
        gen = p / "generator" if _is_model_dir(p / "generator") else None
        dirs = [p, *(d for d in (disc, gen) if d is not None)]
    else:
        raise DataError(f"{p}: init_from: not an ELECTRA checkpoint (needs config.json + model.safetensors, or a "
                        "run directory with discriminator/ or generator/)")
    vocab, lowercase, tok_file = _vocabulary(dirs, str(p))
    missing = [t for t in SPECIAL_TOKENS if t not in set(vocab)]
    if missing:
        raise DataError(f"{p}: the vocabulary lacks {', '.join(missing)}")
    source = Source(path=p, discriminator=disc, generator=gen, vocab=vocab, lowercase=lowercase,
                    tokenizer_file=tok_file)
    size = source.model_config().vocab_size
    if size != len(vocab):
        raise DataError(f"{source.encoder / 'config.json'}: vocab_size {size}, but the checkpoint's vocabulary "
                        f"has {len(vocab)} tokens")
    return source


def adopt_architecture(cfg: PretrainConfig, explicit: dict[str, Any]) -> PretrainConfig:
    """`cfg` with the model sizes of `cfg.init_from`'s checkpoint. `explicit`: the `model`
    section the user set (file or flags); a value there that contradicts the checkpoint is an
    error naming the field, a preset's value is replaced."""
    source = find_source(cfg.init_from)
    theirs = source.model_config()
    extension = extension_of(cfg.tokenizer) if cfg.tokenizer else None
    added = len(extension["added"]) if extension else 0  # domain words added to the checkpoint's vocabulary
    changes = {}
    for name in ARCHITECTURE:
        value = getattr(theirs, name) + added if name == "vocab_size" else getattr(theirs, name)
        if name in explicit and getattr(cfg.model, name) != value:
            raise ConfigError(f"model.{name}: {getattr(cfg.model, name)} contradicts the checkpoint "
                              f"{cfg.init_from} ({name} {value}); drop the flag")
        changes[name] = value
    if source.discriminator is not None and source.generator is not None and cfg.train.objective != "mlm":
        gen = hf.from_hf_config(_read_json(source.generator / "config.json"), str(source.generator / "config.json"))
        fraction = gen.hidden_size / theirs.hidden_size
        if "generator_fraction" in explicit and cfg.model.generator_fraction != fraction:
            raise ConfigError(f"model.generator_fraction: {cfg.model.generator_fraction} contradicts the checkpoint's "
                              f"generator ({gen.hidden_size} of {theirs.hidden_size} wide: {fraction:g}); drop the flag")
        changes["generator_fraction"] = fraction
        layers = 0 if gen.num_layers == theirs.num_layers else gen.num_layers
        if "generator_layers" in explicit and (cfg.model.generator_layers or theirs.num_layers) != gen.num_layers:
            raise ConfigError(f"model.generator_layers: {cfg.model.generator_layers} contradicts the checkpoint's "
                              f"generator ({gen.num_layers} layers); drop the flag")
        changes["generator_layers"] = layers
    try:
        model = dataclasses.replace(cfg.model, **changes)
        return dataclasses.replace(cfg, model=model)
    except ConfigError as e:
        raise ConfigError(f"init_from {cfg.init_from}: {e}") from None


def check_tokenizer(cfg: PretrainConfig, tokenizer_vocab: dict[str, int], tok_file: Path) -> None:
    """The run's tokenizer must number tokens exactly as the checkpoint's (after the special-token
    swap), or every embedding row would belong to another word."""
    source = find_source(cfg.init_from)
    expected = {source.vocab[old]: new for new, old in enumerate(source.permutation)}
    extension = extension_of(tok_file)
    if extension:
        expected |= {word: len(source.vocab) + i for i, (word, _) in enumerate(extension["added"])}
    if tokenizer_vocab != expected:
        diff = next((t for t, i in expected.items() if tokenizer_vocab.get(t) != i), None)
        raise ConfigError(f"tokenizer: {tok_file} is not the vocabulary of {cfg.init_from} (first difference: "
                          f"{diff!r}); build the examples with `electra tokenizer --from {cfg.init_from} -o DIR`")


def _permute(sd: dict[str, torch.Tensor], key: str, perm: torch.Tensor) -> None:
    if key in sd:
        sd[key] = sd[key][perm]


def _extend_rows(sd: dict[str, torch.Tensor], key: str, added: list[list[Any]]) -> None:
    """Append one row per added word: the mean of its pieces' rows (ids in the run's numbering)."""
    if key in sd and added:
        t = sd[key]
        sd[key] = torch.cat([t, torch.stack([t[torch.tensor(pieces)].mean(0) for _, pieces in added])])


def load_weights(model: torch.nn.Module, source: Source, extension: dict[str, Any] | None = None) -> dict[str, str]:
    """Load `source` into an `ElectraPretrainer` in place; returns what each part started from.
    `extension`: the tokenizer's added words (`extension_of`), initialised from their pieces."""
    perm = torch.tensor(source.permutation)
    added = (extension or {}).get("added", [])
    emb = "electra.embeddings.word_embeddings.weight"
    done: dict[str, str] = {}
    targets = ([("discriminator", model.discriminator), ("generator", model.generator)]
               if model.discriminator is not None else [("mlm", model.generator)])
    for role, module in targets:
        if role == "mlm":  # the MLM model: an MLM run's model, else the discriminator's encoder
            path, kind = ((source.generator, "generator") if source.discriminator is None
                          else (source.discriminator, "discriminator"))
        else:
            path, kind = getattr(source, role), role
        if path is None:
            done[role] = "random init (the checkpoint has none; embeddings shared with the discriminator)"
            continue
        integrity.verify_dir(path)
        sd = hf._load(path, kind).state_dict()
        _permute(sd, emb, perm)
        _permute(sd, "head.bias", perm)
        _extend_rows(sd, emb, added)
        _extend_rows(sd, "head.bias", added)
        if role == "mlm" and kind == "discriminator":  # its RTD head is no MLM head
            sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        ours = module.state_dict()
        tied = role == "generator" and model.config.embedding_sharing == "tied"
        if tied:  # its embeddings are the discriminator's, loaded above
            sd = {k: v for k, v in sd.items() if not k.startswith("electra.embeddings.")}
        for k, v in sd.items():
            if k in ours and ours[k].shape != v.shape:
                raise DataError(f"{path}: tensor {k} has shape {tuple(v.shape)}, the run expects "
                                f"{tuple(ours[k].shape)}")
        keep = {k: v for k, v in sd.items() if k in ours}
        module.load_state_dict(keep, strict=False)
        fresh = sorted(set(ours) - set(keep) - ({k for k in ours if k.startswith("electra.embeddings.")}
                                                if tied else set()))
        done[role] = f"{path}" + (f" ({len(fresh)} tensors at random init, e.g. {fresh[0]})" if fresh else "")
    if added:
        done["vocabulary"] = f"{len(added)} added words, each initialised as the mean of its pieces"
    return done


def extend(source: Source, corpus: str | Path | list[Path], n: int, max_chars: int = 50_000_000) -> tuple[Any, dict[str, Any]]:
    """(tokenizer with `n` added words, extension record). Words are counted on up to
    `max_chars` of `corpus` after the tokenizer's normaliser and pre-tokeniser; the n with the
    largest count x (pieces - 1) are added, each as one token."""
    from collections import Counter

    from tokenizers import models

    from electra_pipeline.data.corpus import iter_documents

    tok = source.tokenizer()
    counts: Counter[str] = Counter()
    chars = 0
    for doc in iter_documents(corpus if isinstance(corpus, list) else Path(corpus)):
        text = tok.normalizer.normalize_str(doc) if tok.normalizer else doc
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
        chars += len(doc)
        if chars >= max_chars:
            break
    if not counts:
        raise DataError(f"{corpus}: no text to count words in")
    vocab = tok.get_vocab()
    words = [w for w, c in counts.items() if c >= 2 and w not in vocab]
    pieces = {w: e.ids for w, e in zip(words, tok.encode_batch(words, add_special_tokens=False))}
    unk = vocab["[UNK]"]
    ranked = sorted((w for w in words if len(pieces[w]) > 1 and unk not in pieces[w]),
                    key=lambda w: (-counts[w] * (len(pieces[w]) - 1), w))[:n]

    def tokens_per_word(t: Any) -> float:
        sample = [w for w, _ in counts.most_common(20_000)]
        lengths = {w: len(e.ids) for w, e in zip(sample, t.encode_batch(sample, add_special_tokens=False))}
        return sum(counts[w] * lengths[w] for w in sample) / sum(counts[w] for w in sample)

    before = tokens_per_word(tok)
    extended = dict(vocab) | {w: len(vocab) + i for i, w in enumerate(ranked)}
    tok.model = models.WordPiece(extended, unk_token="[UNK]", continuing_subword_prefix="##",
                                 max_input_chars_per_word=100)
    record = {"base_vocab_size": len(vocab), "added": [[w, pieces[w]] for w in ranked],
              "counted_chars": chars, "tokens_per_word": {"before": before, "after": tokens_per_word(tok)}}
    return tok, record


def save_tokenizer(src: str | Path, out_dir: str | Path, extend_vocab: int = 0,
                   corpus: str | Path | list[Path] | None = None) -> Path:
    """`electra tokenizer --from SRC [--extend-vocab N CORPUS]`: the checkpoint's vocabulary in this
    project's layout, optionally with N domain words added."""
    from electra_pipeline.data.tokenizer import TokenizerConfig, save_tokenizer_dir

    source = find_source(src)
    provenance: dict[str, Any] = {"from_checkpoint": str(src),
                                  "moved_special_tokens": source.permutation[:len(SPECIAL_TOKENS)]}
    if extend_vocab:
        if corpus is None:
            raise ConfigError("extend_vocab: needs a corpus to count domain words in")
        tok, provenance["extension"] = extend(source, corpus, extend_vocab)
    else:
        tok = source.tokenizer()
    provenance["vocab_size"] = tok.get_vocab_size()
    return save_tokenizer_dir(tok, Path(out_dir), TokenizerConfig(lowercase=source.lowercase,
                                                                  vocab_size=tok.get_vocab_size()), provenance)
