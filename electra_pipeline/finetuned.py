"""The fine-tuned model directory: what fine-tuning writes and export/serving read.

    <dir>/config.json        HF-style ELECTRA config of the encoder (hf.to_hf_config)
    <dir>/model.safetensors  our parameter names (ElectraForSequenceClassification / ...QuestionAnswering)
    <dir>/task.json          TaskMeta: task, kind, labels, max_seq_length, metrics
    <dir>/tokenizer.json     the tokenizer the model was trained with

Written atomically (temp dir, then rename), read with clear errors naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from electra_pipeline import hf
from electra_pipeline.atomic import staged_dir
from electra_pipeline.errors import DataError, read_json_object
from electra_pipeline.model import POOLINGS, ElectraForQuestionAnswering, ElectraForSequenceClassification

KINDS = ("classification", "regression", "qa")


@dataclass(kw_only=True)
class TaskMeta:
    """What a served model needs to know about its task."""

    task: str  # registry name, e.g. "sst2", "stsb", "squad_v2"
    kind: str  # classification | regression | qa
    labels: list[str] = field(default_factory=list)  # class names in logit order (classification)
    max_seq_length: int = 128
    pooling: str = "cls"  # classification/regression head input: [CLS] row or mean of tokens (model.POOLINGS)
    answerability: bool = False  # qa: SQuAD 2.0 head with a has-answer logit
    doc_stride: int = 128  # qa: window stride over long contexts
    max_query_length: int = 64  # qa
    max_answer_length: int = 30  # qa
    no_answer_threshold: float = 0.0  # qa v2: tuned on dev; answer only when score > threshold
    metrics: dict[str, float] = field(default_factory=dict)  # dev metrics at save time

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"task.json: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise DataError("task.json: a classification task needs at least 2 labels")
        if self.pooling not in POOLINGS:
            raise DataError(f"task.json: pooling must be one of {POOLINGS}, got {self.pooling!r}")


TaskModel = ElectraForSequenceClassification | ElectraForQuestionAnswering


def build_model(cfg, meta: TaskMeta) -> TaskModel:
    if meta.kind == "qa":
        return ElectraForQuestionAnswering(cfg, answerability=meta.answerability)
    return ElectraForSequenceClassification(cfg, num_labels=1 if meta.kind == "regression" else len(meta.labels),
                                            pooling=meta.pooling)


def save_finetuned(model: TaskModel, meta: TaskMeta, tokenizer_file: str | Path, out_dir: str | Path) -> Path:
    with staged_dir(Path(out_dir), "task.json") as tmp:
        (tmp / "config.json").write_text(json.dumps(hf.to_hf_config(model.config, "discriminator"), indent=2) + "\n")
        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "task.json").write_text(json.dumps(dataclasses.asdict(meta), indent=2) + "\n")
        shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
    return Path(out_dir)


def model_card(meta: TaskMeta, run_info: dict, summary: dict) -> str:
    """README.md of a fine-tuned model (Hugging Face model-card format): task, dev results per seed,
    the fine-tuning recipe, and the pre-trained checkpoint it started from with that run's card."""
    ft = run_info.get("finetune", {})
    ckpt = run_info.get("checkpoint")
    seeds = summary.get("seeds", {})
    lines = ["---", "library_name: electra-pipeline", f"tags: [electra, {meta.task}, {meta.kind}]",
             "metrics: [" + ", ".join(summary.get("metrics", {})) + "]", "---", "",
             f"# ELECTRA fine-tuned on {meta.task} ({meta.kind})", "",
             "Dev results (median over seeds; this directory holds the best seed):", "",
             "| metric | median | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for k, v in summary.get("metrics", {}).items():
        lines.append(f"| {k} | {v:.4g} | " + " | ".join(f"{m.get(k, float('nan')):.4g}" for m in seeds.values()) + " |")
    lines += ["", f"- labels: {', '.join(meta.labels) if meta.labels else 'a score (regression)'}",
              f"- fine-tuning: {run_info.get('train_examples')} training examples, {ft.get('epochs')} epochs, "
              f"lr {ft.get('lr')}, layer decay {ft.get('layer_decay')}, batch {ft.get('batch_size')}, "
              f"max length {ft.get('max_seq_length')}, {meta.pooling} pooling",
              f"- encoder: {'`' + ckpt + '`' if ckpt else 'random initialisation (a baseline)'}"]
    card = Path(ckpt) / "README.md" if ckpt else None
    if card is not None and card.is_file():  # the pre-training run's card: data, recipe, compute, lineage
        body = card.read_text().split("---", 2)[-1].strip()
        lines += ["", "## The pre-trained encoder", "", body.replace("\n# ", "\n### ", 1).removeprefix("# ")]
    lines += ["", "Intended use: research and evaluation of ELECTRA pre-training recipes; scores are on the dev set "
              "and carry seed noise (see the per-seed columns).", ""]
    return "\n".join(lines)


def read_meta(path: str | Path) -> TaskMeta:
    f = Path(path) / "task.json"
    if not f.is_file():
        raise DataError(f"{f}: missing; not a fine-tuned model directory (run `electra finetune` first)")
    try:
        d = json.loads(f.read_text())
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        known = {x.name for x in dataclasses.fields(TaskMeta)}
        return TaskMeta(**{k: v for k, v in d.items() if k in known})
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
        raise DataError(f"{f}: invalid ({e})") from None


def load_finetuned(path: str | Path, device: str | torch.device = "cpu") -> tuple[TaskModel, TaskMeta]:
    """(model in eval mode, meta). The tokenizer is `<path>/tokenizer.json`."""
    p = Path(path)
    meta = read_meta(p)
    cfg_file = p / "config.json"
    cfg_dict = read_json_object(cfg_file)
    cfg = hf.from_hf_config(cfg_dict, str(cfg_file))
    model = build_model(cfg, meta)
    weights = p / "model.safetensors"
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{weights}: unreadable or truncated ({e})") from None
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise DataError(f"{weights}: lacks {len(missing)} tensors (first: {sorted(missing)[0]})")
    model.load_state_dict({k: sd[k] for k in model.state_dict()})
    if not (p / "tokenizer.json").is_file():
        raise DataError(f"{p / 'tokenizer.json'}: missing")
    return model.to(device).eval(), meta
