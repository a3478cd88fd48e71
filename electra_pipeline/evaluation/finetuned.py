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

from electra_pipeline import integrity
from electra_pipeline.atomic import staged_dir
from electra_pipeline.errors import DataError, read_json_object
from electra_pipeline.modeling import hf, modelcard
from electra_pipeline.modeling.model import POOLINGS, ElectraForQuestionAnswering, ElectraForSequenceClassification

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
        integrity.write_sums(tmp)
    return Path(out_dir)


# summary["baselines"] key -> (table column, what it is)
BASELINES = {"random_init": ("random init", "the same encoder config at random initialisation, fine-tuned with the "
                                            "same recipe and seeds"),
             "majority": ("majority class", "the constant prediction from the training labels (regression: their mean)")}
_NOT_SCORES = ("thresh", "threshold", "total")  # SQuAD v2 bookkeeping keys in the metrics, not scores


def model_card(meta: TaskMeta, run_info: dict, summary: dict) -> str:
    """README.md of a fine-tuned model (Hugging Face model-card format): task, dev results per seed
    next to the baselines, the fine-tuning recipe, and the pre-trained checkpoint it started from
    with that run's card.

    summary: "metrics" (median over seeds), "seeds" (seed -> metrics), optionally "best_seed" (the
    seed whose weights are here), "splits" (`Task.eval_splits`) and "baselines" (`BASELINES` key ->
    metrics). Every key may be missing: a model without results still gets a valid card."""
    ft = run_info.get("finetune", {})
    ckpt = run_info.get("checkpoint")
    seeds = summary.get("seeds", {})
    median = summary.get("metrics", {})
    best = summary.get("best_seed")
    given = summary.get("baselines") or {}
    baselines = {k: given[k] for k in dict.fromkeys([*BASELINES, *given]) if given.get(k)}  # random init first
    parent_meta, parent_body = {}, ""
    card = Path(ckpt) / "README.md" if ckpt else None
    if card is not None and card.is_file():  # the pre-training run's card: data, recipe, compute, lineage
        parent_meta, parent_body = modelcard.parse(card.read_text())
    # these weights' own dev metrics (the best seed's, as task.json, the ONNX export and the registry report them)
    values = meta.metrics or {k: v for k, v in median.items() if not k.endswith(_NOT_SCORES)}
    notes = {k: f" (seed {best}; median over {len(seeds)} seeds {median[k]:.4g})"
             for k in values if best is not None and len(seeds) > 1 and k in median}
    dataset, _, _ = modelcard.task_dataset(meta.task)
    pipeline = modelcard.pipeline_tag(meta.kind)
    inherited = [x for x in modelcard.as_list(parent_meta.get("tags"))  # the encoder's objective and preset
                 if x not in ("pretraining", "fill-mask", "replaced-token-detection")]
    index = modelcard.model_index(f"electra-{meta.task}", meta.task, meta.kind, values,
                                  summary.get("splits") or {"dev": ""}, notes)
    metadata = {
        "license": parent_meta.get("license", modelcard.LICENSE),
        "language": parent_meta.get("language", modelcard.LANGUAGE),
        "library_name": "electra-pipeline",  # our parameter names: load_finetuned, export, serving
        "pipeline_tag": pipeline,
        "tags": modelcard.unique(["electra", meta.task, meta.kind, pipeline, *inherited, "electra-pipeline"]),
        "datasets": [dataset],
        **({"metrics": modelcard.unique(modelcard.metric_id(k) for k in values)} if values else {}),
        **({"model-index": index} if index else {}),
    }
    lines = [f"# ELECTRA fine-tuned on {meta.task} ({meta.kind})", ""]
    if median:
        lines += ["Dev results (median over seeds"
                  + (f"; this directory holds seed {best}" if best is not None else "; this directory holds the best seed")
                  + "):", "",
                  "| metric | median | " + " | ".join([*(f"seed {s}" for s in seeds),
                                                        *(BASELINES.get(b, (b,))[0] for b in baselines)]) + " |",
                  "|---|---|" + "---|" * (len(seeds) + len(baselines))]
        for k, v in median.items():
            cells = [m.get(k, float("nan")) for m in seeds.values()] + [b.get(k, float("nan")) for b in baselines.values()]
            lines.append(f"| {k} | {v:.4g} | " + " | ".join(f"{x:.4g}" for x in cells) + " |")
        known = [b for b in baselines if b in BASELINES]
        if known:
            lines += ["", "Baselines: " + "; ".join(f"{BASELINES[b][0]}, {BASELINES[b][1]}" for b in known) + "."]
    else:
        lines.append("No dev results were recorded for this model.")
    labels = ", ".join(meta.labels) or ("answer spans" if meta.kind == "qa" else "a score (regression)")
    lines += ["", f"- labels: {labels}",
              "- fine-tuning: " + (f"{run_info.get('train_examples')} training examples from "
                                   f"`{run_info.get('data_dir')}`, {ft.get('epochs')} epochs, lr {ft.get('lr')}, layer "
                                   f"decay {ft.get('layer_decay')}, batch {ft.get('batch_size')}, max length "
                                   f"{ft.get('max_seq_length')}" + ("" if meta.kind == "qa" else f", {meta.pooling} pooling")
                                   + f", seeds {', '.join(map(str, seeds)) or ft.get('seeds')}"
                                   if ft else "recipe not recorded"),
              "- dev examples scored: " + (", ".join(f"{n:,} ({s})" for s, n in run_info["eval_examples"].items())
                                           if run_info.get("eval_examples") else "unknown"),
              f"- encoder: {'`' + ckpt + '`' if ckpt else 'random initialisation (a baseline)'}"]
    if parent_body:
        lines += ["", "## The pre-trained encoder", "", modelcard.demote(parent_body, 2)]
    lines += ["", "## Intended use and limits", "",
              "Research and evaluation of ELECTRA pre-training recipes. Scores are on the dev set (a sample when "
              "fewer dev examples were scored than the task has) and carry seed noise (see the per-seed columns); "
              "the best seed was picked on that dev set, so its own scores are optimistic. Not evaluated for "
              "fairness, robustness or use outside the task's domain and language.", ""]
    return modelcard.render(metadata, "\n".join(lines))


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
    integrity.verify_dir(p)
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
    for k, v in model.state_dict().items():
        if sd[k].shape != v.shape:
            raise DataError(f"{weights}: tensor {k} has shape {tuple(sd[k].shape)}, but {cfg_file} gives "
                            f"{tuple(v.shape)}; the weights and the config do not belong together")
    model.load_state_dict({k: sd[k] for k in model.state_dict()})
    if not (p / "tokenizer.json").is_file():
        raise DataError(f"{p / 'tokenizer.json'}: missing")
    return model.to(device).eval(), meta
