"""What intrinsic evaluation scores and on which text, found the way a user names them: the
models of a run directory (or a Hugging Face ELECTRA directory and its generator), the held-out
slice of an examples directory, or plain text files packed as the training examples were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.modeling.model import Discriminator, Generator


@dataclass
class Models:
    """What is scored: a discriminator (None for an MLM run) and the generator / MLM model."""

    discriminator: Discriminator | None
    generator: Generator



def load_models(checkpoint: str | Path, generator: str | Path | None = None) -> Models:
    """A run directory of ours (discriminator/ + generator/, or generator/ alone for an MLM run) or
    a Hugging Face ELECTRA discriminator directory with its generator passed as `generator`."""
    from electra_pipeline import integrity
    from electra_pipeline.modeling import hf

    def load(kind: str, d: Path) -> Any:
        if d.is_dir():
            integrity.verify_dir(d)
        return hf.load_discriminator(d) if kind == "discriminator" else hf.load_generator(d)

    path = Path(checkpoint)
    if not path.is_dir():
        raise DataError(f"{path}: checkpoint directory not found")
    if (path / "generator").is_dir():
        disc = load("discriminator", path / "discriminator") if (path / "discriminator").is_dir() else None
        return Models(disc, load("generator", Path(generator) if generator else path / "generator"))
    if generator is None:
        raise ConfigError(f"generator: {path} holds no generator/; pass --generator DIR (a Hugging Face "
                          "ElectraForMaskedLM directory with the same vocabulary)")
    return Models(load("discriminator", path), load("generator", Path(generator)))


def examples_rows(examples_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, training rows) of an examples directory built with a held-out slice."""
    from electra_pipeline.data.batches import ExampleShards

    shards = ExampleShards(examples_dir)
    info = shards.meta.get("holdout") or {}
    file = Path(examples_dir) / info.get("file", "holdout.npy")
    if not info or not file.is_file():
        raise DataError(f"{Path(examples_dir) / 'meta.json'}: no held-out slice (rebuild the examples with "
                        "--holdout-fraction > 0, or pass --text FILE)")
    try:
        held = np.load(file, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DataError(f"{file}: unreadable held-out rows ({e})") from None
    return held, np.load(Path(examples_dir) / shards.meta["shards"][0]["file"], mmap_mode="r")


def text_rows(files: list[str | Path], tokenizer: str | Path, seq_len: int) -> np.ndarray:
    """Plain text files (one paragraph a line, a blank line between documents), packed into
    [CLS] A [SEP] B [SEP] rows exactly as the training examples were."""
    import random

    from electra_pipeline.data import examples, packing
    from electra_pipeline.data.tokenizer import TOKENIZER_FILE

    docs: list[str] = []
    for f in map(Path, files):
        if not f.is_file():
            raise DataError(f"{f}: held-out text file not found")
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{f}: not UTF-8 text (byte {e.start})") from None
        docs += [d.strip() for d in text.replace("\r\n", "\n").split("\n\n") if d.strip()]
    if not docs:
        raise DataError(f"{files[0]}: the held-out text is empty")
    tok = Path(tokenizer)
    enc = packing._Encoder(str(tok / TOKENIZER_FILE if tok.is_dir() else tok))
    cfg = examples.ExamplesConfig(seq_len=seq_len, holdout_fraction=0.0, num_proc=1)
    rows, _, _ = packing.pack_documents(docs, enc, cfg, random.Random("electra-intrinsic"))
    return rows


def start_models(run_cfg: dict[str, Any], seed: int) -> Models:
    """What a continued run (`init_from`) started from: the checkpoint's weights in the run's
    config, the parts it lacked initialised as the run initialised them."""
    from electra_pipeline.modeling import config as config_mod
    from electra_pipeline.modeling import warmstart
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    cfg = config_mod.from_dict(config_mod.PretrainConfig, run_cfg)
    torch.manual_seed(seed)
    model = ElectraPretrainer(cfg.model, cfg.train)
    extension = warmstart.extension_of(cfg.tokenizer) if cfg.tokenizer else None
    warmstart.load_weights(model, warmstart.find_source(cfg.init_from), extension)
    return Models(model.discriminator, model.generator)
