"""`ExamplesConfig`: how `electra examples` cuts a corpus into pre-training rows. Apart from
`examples.py` (numpy, tokenizers) so that what reads the config (packing, the CLI's and the
flows' forms) does not import what builds the rows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from electra_pipeline.errors import ConfigError


@dataclass(kw_only=True)
class ExamplesConfig:
    """How the corpus is cut into fixed-length pre-training rows."""

    seq_len: int = 128
    """Row length L, [CLS]/[SEP]/[PAD] included (128 for ELECTRA-Small, 512 for Base/Large)."""
    seed: int = 0
    """Fixes packing choices and the row shuffle: same seed + corpus + tokenizer => same bytes."""
    examples_per_shard: int = 100_000
    """Rows per .npy shard (the last one may be shorter)."""
    single_segment_prob: float = 0.1
    """Chance that segment A may take the whole row (as in classification inputs)."""
    short_seq_prob: float = 0.05
    """Chance that the next example targets a random length in [5, L] instead of L."""
    split_sentences: bool = True
    """Cut paragraphs into sentences before packing; False: a line is a sentence (the reference)."""
    num_proc: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes (default: all cores). Does not change the output."""
    encode_batch_size: int = 1000
    """Texts per `encode_batch` call (new word pieces, see `packing._Encoder`). Does not change the output."""
    holdout_fraction: float = 0.02
    """Share of documents kept out of the training rows, chosen by a hash of their text, and packed
    into `holdout.npy` for intrinsic evaluation (`electra intrinsic`). 0 keeps none out."""

    def __post_init__(self) -> None:
        for name, low in (("seq_len", 8), ("examples_per_shard", 1), ("num_proc", 1), ("encode_batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"examples.{name}: must be an integer >= {low}, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"examples.seed: must be an integer >= 0, got {self.seed!r}")
        for name in ("single_segment_prob", "short_seq_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"examples.{name}: must be a probability in [0, 1], got {v!r}")
        v = self.holdout_fraction
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ConfigError(f"examples.holdout_fraction: must be in [0, 1), got {v!r}")
        if not isinstance(self.split_sentences, bool):
            raise ConfigError(f"examples.split_sentences: must be true or false, got {self.split_sentences!r}")
