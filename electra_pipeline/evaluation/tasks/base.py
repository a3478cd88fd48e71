"""The one small interface every fine-tuning task implements (as in the reference code).

A task knows how to read its official files, turn examples into token features, which head
and loss it needs, how to turn raw model outputs into predictions and how to score them. The
training loop in `finetune.py` knows nothing task-specific beyond this interface.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from electra_pipeline import atomic
from electra_pipeline.evaluation.finetuned import TaskMeta
from electra_pipeline.inference import pad_rows, special_ids  # noqa: F401  (special_ids: finetune/runner.py)

KINDS = ("classification", "regression", "qa")


@dataclass
class Feature:
    """One model input. Classification has one per example; QA one per context window."""

    example_index: int  # position of the source example in the list given to featurize
    input_ids: np.ndarray  # (T,) int32, unpadded: padding happens per batch
    token_type_ids: np.ndarray  # (T,) int32
    label: int | float | None = None  # class index or regression target; None when unlabeled
    start_position: int = 0  # qa: answer start token (0 = [CLS] when absent from the window)
    end_position: int = 0  # qa: answer end token, inclusive
    answerable: int = 1  # qa v2: 0 for an unanswerable question
    offsets: np.ndarray | None = None  # qa eval: (T, 2) char span in the context, -1 outside it
    max_context: np.ndarray | None = None  # qa eval: (T,) bool, window where the token is most central

    def __len__(self) -> int:
        return len(self.input_ids)


Predictions = dict[str, Any]  # example id -> task-specific prediction


class Task(ABC):
    """Interface of a fine-tuning task; subclasses set the class attributes."""

    name: str  # registry name, e.g. "sst2"
    kind: str  # classification | regression | qa
    labels: tuple[str, ...] = ()  # class names in logit order, as written in the files
    label_names: tuple[str, ...] = ()  # what they mean, as saved with the model and served; () = `labels`
    metric_names: tuple[str, ...] = ()  # metrics shown in results tables (percent)
    eval_splits: dict[str, str] = {"dev": ""}  # split -> suffix for its metric keys
    test_splits: dict[str, str] = {}  # split -> leaderboard submission file stem
    default_epochs: int = 3
    default_max_seq_length: int = 128

    @abstractmethod
    def read(self, data_dir: str | Path, split: str) -> list[Any]:
        """Examples of one split from the official files (or `hf:<name>` for the Hub)."""

    @abstractmethod
    def featurize(self, examples: Sequence[Any], tokenizer: Tokenizer, max_seq_length: int,
                  training: bool) -> list[Feature]:
        """Token features; `training` adds targets and, for pairs, may augment."""

    @abstractmethod
    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss from the head's outputs (fp32)."""

    @abstractmethod
    def predict(self, examples: Sequence[Any], features: Sequence[Feature],
                outputs: Sequence[dict[str, np.ndarray]]) -> Predictions:
        """Per-example predictions from per-feature outputs (aligned with `features`)."""

    @abstractmethod
    def score(self, examples: Sequence[Any], predictions: Predictions) -> dict[str, float]:
        """Metrics in percent; keys include `metric_names`."""

    @abstractmethod
    def example_id(self, example: Any) -> str:
        """Stable id used to key predictions."""

    def split_file(self, data_dir: str | Path, split: str) -> Path | None:
        """The file a split is read from (None where unknown), so runs can check inputs first."""
        return None

    def meta(self, max_seq_length: int, metrics: dict[str, float]) -> TaskMeta:
        """What the saved model directory records about this task."""
        return TaskMeta(task=self.name, kind=self.kind, labels=list(self.label_names or self.labels),
                        max_seq_length=max_seq_length,
                        metrics={k: v for k, v in metrics.items() if k in self.metric_names})

    def collate(self, features: Sequence[Feature], pad_id: int, training: bool) -> dict[str, torch.Tensor]:
        """Batch tensors, padded to this batch's longest feature (not to max_seq_length), exactly
        as serving pads them."""
        rows = pad_rows([f.input_ids for f in features], [f.token_type_ids for f in features], pad_id)
        batch = {"input_ids": torch.from_numpy(rows.input_ids),
                 "token_type_ids": torch.from_numpy(rows.token_type_ids),
                 "attention_mask": torch.from_numpy(rows.attention_mask)}
        if training:
            batch.update(self.targets(features))
        return batch

    def targets(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        dtype = torch.float32 if self.kind == "regression" else torch.long
        return {"labels": torch.tensor([f.label for f in features], dtype=dtype)}

    def write_predictions(self, examples: Sequence[Any], predictions: Predictions, path: Path) -> Path:
        """One JSON object per line: id, prediction (and gold when known)."""
        rows = (json.dumps({"id": self.example_id(ex), "prediction": predictions.get(self.example_id(ex))})
                for ex in examples)
        atomic.write_text(path, "".join(r + "\n" for r in rows))
        return path

    def write_submission(self, examples: Sequence[Any], predictions: Predictions, path: Path) -> Path | None:
        """Leaderboard submission file; tasks without a leaderboard format return None."""
        return None


def subset(items: list, limit: int | None, seed: int) -> list:
    """A fixed random subset in original order (first-N slices are often label-sorted)."""
    if limit is None or len(items) <= limit:
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]
