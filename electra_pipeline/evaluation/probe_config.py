"""The frozen-encoder probes' config (`probe.py`), apart from the code that imports torch and
scikit-learn, so `electra probe --help` shows its defaults at once."""

from __future__ import annotations

from dataclasses import dataclass

from electra_pipeline.errors import ConfigError
from electra_pipeline.evaluation.stats import RESAMPLES

DEFAULT_TASKS = ("sst2", "cola", "mrpc", "stsb", "rte", "qnli", "mnli")  # those with train + dev files run


@dataclass(kw_only=True)
class ProbeConfig:
    """One probe run; fields are validated on construction."""

    tasks: list[str] | None = None
    """GLUE tasks to probe; None: sst2 cola mrpc stsb rte, and qnli mnli where their train files exist"""
    max_train_examples: int | None = 20000
    """a fixed random subset of each task's training set (the full SST-2 has 67k: a linear probe of
    a few hundred features gains little beyond 20k, and the encoder's pass over them costs
    minutes on a CPU); None: all of it"""
    select_examples: int = 4000
    """training examples the layer, pooling and regularisation are chosen on (80% fit, 20% scored)"""
    max_seq_length: int = 128
    """tokens per sentence (pair), as fine-tuning"""
    batch_size: int = 128
    """sentences per encoder forward pass (length-sorted, so padding stays small)"""
    resamples: int = RESAMPLES
    """bootstrap resamples of the dev set for each interval"""
    seed: int = 0
    """fixes the subsets, the selection split and the bootstrap resamples"""

    def __post_init__(self) -> None:
        for name in ("select_examples", "max_seq_length", "batch_size", "resamples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"probe.{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_train_examples is not None and self.max_train_examples < 10:
            raise ConfigError(f"probe.max_train_examples: must be >= 10, got {self.max_train_examples}")
        if self.max_seq_length < 8:
            raise ConfigError(f"probe.max_seq_length: must be >= 8, got {self.max_seq_length}")
        if self.tasks is not None:
            from electra_pipeline.evaluation.tasks import SQUAD_TASKS, canonical_name

            self.tasks = list(dict.fromkeys(canonical_name(t) for t in self.tasks))
            if not self.tasks:
                raise ConfigError("probe.tasks: give at least one task, e.g. sst2")
            bad = [t for t in self.tasks if t in SQUAD_TASKS]
            if bad:
                raise ConfigError(f"probe.tasks: {bad[0]} is a span task; probes cover GLUE sentence (pair) tasks")
