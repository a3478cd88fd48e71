"""The held-out evaluation's config (`intrinsic.py`), apart from the code that imports torch, so
`electra intrinsic --help` shows its defaults at once."""

from __future__ import annotations

from dataclasses import dataclass

from electra_pipeline.errors import ConfigError


@dataclass(kw_only=True)
class IntrinsicConfig:
    """How the held-out text is corrupted and how much of it is scored."""

    mask_prob: float = 0.15  # share of each row's real tokens corrupted
    max_rows: int = 256  # held-out rows scored (the first ones: the same rows every time)
    fit_rows: int = 512  # training rows the context-free detector is fitted on
    unigram_tokens: int = 2_000_000  # training tokens counted for the unigram replacement table
    batch_size: int = 32
    seed: int = 0  # fixes positions and replacements: the same seed gives the same corrupted text

    def __post_init__(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ConfigError(f"intrinsic.mask_prob: must be in (0, 1), got {self.mask_prob}")
        for name in ("max_rows", "fit_rows", "unigram_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"intrinsic.{name}: must be >= 1, got {getattr(self, name)}")
