"""The nine GLUE tasks: one spec each, one reader for the official TSV layout, one head.

Files are read as GLUE ships them (`<glue_dir>/<TaskDir>/{train,dev,test}.tsv`, MNLI's
`dev_matched.tsv` etc.): split on tabs with no quoting (MNLI and MRPC contain bare quotes),
columns found by header name (CoLA train/dev have no header). A row with the wrong number of
fields or a label outside the task's label set is an error naming `file:line`, because a
silently skipped row changes the reported number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from electra_pipeline import atomic
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.evaluation import metrics
from electra_pipeline.evaluation.tasks.base import Feature, Predictions, Task
from electra_pipeline.inference import special_ids, text_row

HF_PREFIX = "hf:"


@dataclass
class Example:
    """One sentence (pair) with its gold label: a class index, a float (STS-B) or None (test)."""

    guid: str
    text_a: str
    text_b: str | None
    label: int | float | None


@dataclass(frozen=True)
class GlueSpec:
    """Where a task's data lives and what its columns and labels are."""

    name: str
    dir_name: str  # directory under the GLUE root
    text_a: str  # header name of the first text column
    text_b: str | None  # second text column (None: single sentence)
    label: str  # label column in train/dev (STS-B: the float `score`)
    labels: tuple[str, ...]  # label strings as written in the files; () = regression
    metric_names: tuple[str, ...]
    eval_splits: dict[str, str] = field(default_factory=lambda: {"dev": ""})
    test_splits: dict[str, str] = field(default_factory=dict)  # split -> submission file stem
    id_column: str = "index"  # test-set id column
    epochs: int = 3
    swap_augment: bool = False  # also train on (b, a): symmetric tasks (MRPC, STS-B)
    headerless_columns: tuple[str, ...] = ()  # names for train/dev columns when there is no header
    hf_columns: tuple[str, str | None] = ("sentence", None)
    hf_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"})
    label_names: tuple[str, ...] = ()  # what each label means, in `labels` order (served and saved); () = `labels`


_PAIR = ("sentence1", "sentence2")
SPECS: dict[str, GlueSpec] = {s.name: s for s in (
    GlueSpec(name="cola", dir_name="CoLA", text_a="sentence", text_b=None, label="label", labels=("0", "1"),
             label_names=("unacceptable", "acceptable"), metric_names=("mcc",), test_splits={"test": "CoLA"},
             headerless_columns=("source", "label", "original_label", "sentence")),
    GlueSpec(name="sst2", dir_name="SST-2", text_a="sentence", text_b=None, label="label", labels=("0", "1"),
             label_names=("negative", "positive"), metric_names=("accuracy",), test_splits={"test": "SST-2"}),
    GlueSpec(name="mrpc", dir_name="MRPC", text_a="#1 String", text_b="#2 String", label="Quality",
             labels=("0", "1"), label_names=("not_equivalent", "equivalent"), metric_names=("f1", "accuracy"),
             test_splits={"test": "MRPC"}, swap_augment=True, hf_columns=_PAIR),
    GlueSpec(name="stsb", dir_name="STS-B", text_a="sentence1", text_b="sentence2", label="score", labels=(),
             metric_names=("pearson", "spearman"), test_splits={"test": "STS-B"}, epochs=10, swap_augment=True,
             hf_columns=_PAIR),
    GlueSpec(name="qqp", dir_name="QQP", text_a="question1", text_b="question2", label="is_duplicate",
             labels=("0", "1"), label_names=("not_duplicate", "duplicate"), metric_names=("f1", "accuracy"),
             test_splits={"test": "QQP"}, id_column="id", hf_columns=("question1", "question2")),
    GlueSpec(name="mnli", dir_name="MNLI", text_a="sentence1", text_b="sentence2", label="gold_label",
             labels=("entailment", "neutral", "contradiction"), metric_names=("accuracy", "accuracy_mm"),
             eval_splits={"dev_matched": "", "dev_mismatched": "_mm"},
             test_splits={"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"},
             hf_columns=("premise", "hypothesis"),
             hf_splits={"train": "train", "dev_matched": "validation_matched",
                        "dev_mismatched": "validation_mismatched", "test_matched": "test_matched",
                        "test_mismatched": "test_mismatched"}),
    GlueSpec(name="qnli", dir_name="QNLI", text_a="question", text_b="sentence", label="label",
             labels=("entailment", "not_entailment"), metric_names=("accuracy",), test_splits={"test": "QNLI"},
             hf_columns=("question", "sentence")),
    GlueSpec(name="rte", dir_name="RTE", text_a="sentence1", text_b="sentence2", label="label",
             labels=("entailment", "not_entailment"), metric_names=("accuracy",), test_splits={"test": "RTE"},
             epochs=10, hf_columns=_PAIR),
    GlueSpec(name="wnli", dir_name="WNLI", text_a="sentence1", text_b="sentence2", label="label",
             labels=("0", "1"), label_names=("not_entailment", "entailment"), metric_names=("accuracy",),
             test_splits={"test": "WNLI"}, hf_columns=_PAIR),
)}


def task_dir(data_dir: str | Path, dir_name: str) -> Path:
    """`<data_dir>/<TaskDir>`, or `<data_dir>/glue/<TaskDir>` so one data root serves all tasks."""
    root = Path(data_dir)
    for cand in (root / dir_name, root / "glue" / dir_name):
        if cand.is_dir():
            return cand
    return root / dir_name


def read_tsv(path: Path, spec: GlueSpec, split: str) -> list[Example]:
    """Parse one official GLUE TSV; errors name `file:line`."""
    if not path.is_file():
        raise DataError(f"{path}: missing {split} split for {spec.name} (expected the GLUE layout "
                        f"<glue_dir>/{spec.dir_name}/{split}.tsv)")
    testing = split.startswith("test")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC starts with a BOM
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if lines and lines[-1] == "":
        lines.pop()
    if spec.headerless_columns and not testing:
        header, first = list(spec.headerless_columns), 1
    else:
        header, first = lines[0].rstrip("\r").split("\t") if lines else [], 2
        lines = lines[1:]
    col = {name: i for i, name in enumerate(header)}
    wanted = [spec.text_a] + ([spec.text_b] if spec.text_b else [])
    wanted += [spec.id_column] if testing else [spec.label]
    missing = [c for c in wanted if c not in col]
    if missing:
        raise DataError(f"{path}:1: header lacks column {missing[0]!r} (has {header})")
    examples = []
    for n, line in enumerate(lines, start=first):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}:{n}: expected {len(header)} tab-separated fields, found {len(fields)}")
        label: int | float | None = None
        if not testing:
            raw = fields[col[spec.label]]
            if spec.labels:
                if raw not in spec.labels:
                    raise DataError(f"{path}:{n}: unknown label {raw!r} (expected one of {list(spec.labels)})")
                label = spec.labels.index(raw)
            else:
                try:
                    label = float(raw)
                except ValueError:
                    raise DataError(f"{path}:{n}: score {raw!r} is not a number") from None
                if not math.isfinite(label):
                    raise DataError(f"{path}:{n}: score {raw!r} is not finite")
        guid = fields[col[spec.id_column]] if (testing or spec.id_column in col) else str(n)
        examples.append(Example(guid=guid, text_a=fields[col[spec.text_a]],
                                text_b=fields[col[spec.text_b]] if spec.text_b else None, label=label))
    return examples


def read_hf(spec: GlueSpec, split: str) -> list[Example]:
    """The Hugging Face `nyu-mll/glue` copy, for users without the TSVs (needs network)."""
    from datasets import load_dataset  # heavy import, only on this path

    if split not in spec.hf_splits:
        raise DataError(f"hf:glue/{spec.name}: no split {split!r} (has {sorted(spec.hf_splits)})")
    ds = load_dataset("nyu-mll/glue", spec.name, split=spec.hf_splits[split])
    a, b = spec.hf_columns
    out = []
    for row in ds:
        raw = row["label"]
        label = None if (raw is None or raw == -1) else (float(raw) if not spec.labels else int(raw))
        out.append(Example(guid=str(row["idx"]), text_a=row[a], text_b=row[b] if b else None, label=label))
    return out


class GlueTask(Task):
    """Sentence or sentence-pair classification (or STS-B regression) on [CLS]."""

    def __init__(self, spec: GlueSpec):
        self.spec = spec
        self.name = spec.name
        self.kind = "classification" if spec.labels else "regression"
        self.labels = spec.labels
        self.label_names = spec.label_names or spec.labels
        self.metric_names = spec.metric_names
        self.eval_splits = dict(spec.eval_splits)
        self.test_splits = dict(spec.test_splits)
        self.default_epochs = spec.epochs

    def split_file(self, data_dir: str | Path, split: str) -> Path:
        return task_dir(data_dir, self.spec.dir_name) / f"{split}.tsv"

    def read(self, data_dir: str | Path, split: str) -> list[Example]:
        known = ["train", *self.eval_splits, *self.test_splits]
        if split not in known:
            raise ConfigError(f"split: {self.name} has no split {split!r} (known: {known})")
        if str(data_dir).startswith(HF_PREFIX):
            return read_hf(self.spec, split)
        return read_tsv(self.split_file(data_dir, split), self.spec, split)

    def example_id(self, example: Example) -> str:
        return example.guid

    def featurize(self, examples: Sequence[Example], tokenizer: Tokenizer, max_seq_length: int,
                  training: bool) -> list[Feature]:
        """Rows built by `inference.text_row`, the function serving builds them with."""
        cls, sep, _ = special_ids(tokenizer)
        order = [(i, False) for i in range(len(examples))]
        if training and self.spec.swap_augment:
            order += [(i, True) for i in range(len(examples))]
        enc_a = tokenizer.encode_batch([e.text_a for e in examples], add_special_tokens=False)
        enc_b = (tokenizer.encode_batch([e.text_b or "" for e in examples], add_special_tokens=False)
                 if self.spec.text_b else None)
        feats = []
        for i, swapped in order:
            a = enc_a[i].ids
            b = enc_b[i].ids if enc_b is not None else None
            if swapped:
                a, b = b, a
            ids, types, _, _ = text_row(a, b, max_seq_length, cls, sep)
            feats.append(Feature(example_index=i, input_ids=np.asarray(ids, np.int32),
                                 token_type_ids=np.asarray(types, np.int32), label=examples[i].label))
        if training and any(f.label is None for f in feats):
            raise DataError(f"{self.name}: training examples without labels")
        return feats

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = outputs["logits"].float()
        if self.kind == "regression":
            return F.mse_loss(logits.squeeze(-1), batch["labels"])
        return F.cross_entropy(logits, batch["labels"])

    def predict(self, examples: Sequence[Example], features: Sequence[Feature],
                outputs: Sequence[dict[str, np.ndarray]]) -> Predictions:
        preds: Predictions = {}
        for f, out in zip(features, outputs):
            logits = out["logits"]
            value = float(logits[0]) if self.kind == "regression" else int(np.argmax(logits))
            preds[examples[f.example_index].guid] = value
        return preds

    def score(self, examples: Sequence[Example], predictions: Predictions) -> dict[str, float]:
        gold = [e.label for e in examples]
        if any(g is None for g in gold):
            raise DataError(f"{self.name}: cannot score examples without labels")
        pred = [predictions[e.guid] for e in examples]
        fns = {"mcc": metrics.matthews_corr, "accuracy": metrics.accuracy, "f1": metrics.f1,
               "pearson": metrics.pearson, "spearman": metrics.spearman}
        return {m: fns[m](gold, pred) for m in self.metric_names if m in fns}

    def write_submission(self, examples: Sequence[Example], predictions: Predictions, path: Path) -> Path:
        """GLUE leaderboard format: `index<TAB>prediction` with label strings (STS-B: 0-5 float)."""
        lines = ["index\tprediction\n"]
        for e in examples:
            p = predictions[e.guid]
            value = f"{min(5.0, max(0.0, p)):.3f}" if self.kind == "regression" else self.labels[p]
            lines.append(f"{e.guid}\t{value}\n")
        atomic.write_text(path, "".join(lines))
        return path
