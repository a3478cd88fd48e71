"""The Hugging Face model-card format: YAML front matter (the Hub's metadata) above a Markdown body.

    ---
    license: apache-2.0
    language: en
    library_name: transformers
    pipeline_tag: fill-mask
    tags: [electra, ...]
    datasets: [...]
    model-index: [...]   fine-tuned models: the task metric(s) with their measured values
    ---
    # ELECTRA ...

The front matter is `huggingface_hub`'s `ModelCardData` and the model-index its `EvalResult`s, so
the Hub and `huggingface_hub.ModelCard` read the cards as they read their own, and any path or name
parses back. The cards themselves are written beside what they describe: `hf.model_card` (pre-training),
`finetuned.model_card` (fine-tuning) and `onnx_card` here (ONNX exports, and so the MLflow
registry, which stores the export directory).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LICENSE = "apache-2.0"  # the project's license (pyproject.toml); a config `license` field overrides it
LANGUAGE = "en"  # the shipped corpus, GLUE and SQuAD are English; a config `language` field overrides it


def render(metadata: dict[str, Any], body: str) -> str:
    """The card: front matter (the Hub's fields first, then ours, then the model-index) and the body."""
    from huggingface_hub import ModelCardData  # a second to import: only where a card is written

    return f"---\n{ModelCardData(**metadata).to_yaml()}\n---\n\n{body.strip()}\n"


def parse(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, body). A card without front matter, or with front matter that is not a YAML
    mapping (a third-party card), is all body."""
    if text.startswith("---\n") and text.find("\n---\n", 3) != -1:
        from huggingface_hub import ModelCard

        try:
            card = ModelCard(text)
        except (ValueError, yaml.YAMLError):  # not a mapping, or not YAML
            return {}, text
        return card.data.to_dict(), card.text.lstrip("\n")
    return {}, text


def demote(body: str, levels: int = 1) -> str:
    """The body's headings `levels` deeper, to nest one card inside another."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in body.splitlines())


def as_list(value: Any) -> list[Any]:
    """A metadata value that may be one item or a list (`tags: electra` is valid YAML) as a list."""
    return list(value) if isinstance(value, list) else [] if value is None else [value]


def unique(items: Iterable[Any]) -> list[Any]:
    """Items in first-seen order without repeats or empties (tags, datasets)."""
    return [x for x in dict.fromkeys(items) if x]


# --- the pre-training corpus ---------------------------------------------------------------------


@dataclass
class Corpus:
    """The corpus behind a packed-examples directory, as its manifest records it."""

    path: str  # the corpus directory
    manifest_sha256: str  # of manifest.json: pins sources, cleaning config and counts at once
    documents: int
    bytes: int  # UTF-8 bytes of cleaned text
    sources: list[dict[str, Any]]  # the manifest's: path, format, sha256 (None for hub datasets), ...

    @property
    def datasets(self) -> list[str]:
        """Source names for the `datasets` metadata: the Hub id of an `hf:` source, else the file name."""
        return unique(s["path"][3:].partition("@")[0].partition(":")[0] if s.get("format") == "hf"
                      else Path(str(s.get("path", ""))).name for s in self.sources)


def pretraining_corpus(examples_dir: str | Path) -> Corpus | None:
    """The corpus a packed-examples directory was built from (its config.json names the corpus
    directory, whose manifest.json lists the sources with checksums); None when either file is gone
    or unreadable: the card then says only what the run config says."""
    from electra_pipeline.data.corpus import MANIFEST_FILE, Manifest
    from electra_pipeline.errors import DataError

    try:
        corpus = Path(json.loads((Path(examples_dir) / "config.json").read_text())["corpus"])
        manifest = Manifest.load(corpus)
        digest = hashlib.sha256((corpus / MANIFEST_FILE).read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None
    return Corpus(path=str(corpus), manifest_sha256=digest, documents=manifest.documents, bytes=manifest.bytes,
                  sources=list(manifest.sources))


# --- fine-tuning results ---------------------------------------------------------------------------

# our metric key -> (Hugging Face metric id, pretty name)
_METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1"),
    "mcc": ("matthews_correlation", "Matthews correlation"),
    "pearson": ("pearsonr", "Pearson correlation"),
    "spearman": ("spearmanr", "Spearman correlation"),
    "exact_match": ("exact_match", "Exact match"),
    "HasAns_exact": ("exact_match", "Exact match (answerable questions)"),
    "HasAns_f1": ("f1", "F1 (answerable questions)"),
    "NoAns_exact": ("exact_match", "Exact match (unanswerable questions)"),
}
_SQUAD = {"squad_v1": ("squad", "SQuAD v1.1"), "squad_v2": ("squad_v2", "SQuAD v2.0")}
_GLUE_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
               "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
_CLASSIFICATION = ("text-classification", "Text Classification")  # regression too, as STS-B models on the Hub
_TASK_TYPES = {"classification": _CLASSIFICATION, "regression": _CLASSIFICATION,
               "qa": ("question-answering", "Question Answering")}


def pipeline_tag(kind: str) -> str:
    """The Hub pipeline (and model-index task type) of a fine-tuned model kind."""
    return _TASK_TYPES.get(kind, _CLASSIFICATION)[0]


def task_dataset(task: str) -> tuple[str, str | None, str]:
    """(Hub dataset id, config, pretty name) of a fine-tuning task: GLUE tasks are configs of `glue`."""
    if task in _SQUAD:
        return _SQUAD[task][0], None, _SQUAD[task][1]
    return "glue", task, f"GLUE {_GLUE_NAMES.get(task, task)}"


def metric_id(key: str) -> str:
    """The Hub metric id of one of our metric keys (a split suffix such as MNLI's `_mm` dropped)."""
    for ours, (hub, _) in _METRICS.items():
        if key == ours or key.startswith(ours + "_"):
            return hub
    return key


def model_index(name: str, task: str, kind: str, values: dict[str, float], splits: dict[str, str],
                notes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`model-index` metadata: one result per evaluated split (e.g. MNLI matched and mismatched),
    each naming the task metric(s) with the measured values; [] without values.

    splits: our split -> the suffix of its metric keys (`Task.eval_splits`, e.g. {"dev": ""}).
    notes: metric key -> text appended to its pretty name (e.g. how the value relates to other seeds)."""
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    notes = notes or {}
    dataset, config, pretty = task_dataset(task)
    task_type, task_name = _TASK_TYPES.get(kind, _CLASSIFICATION)
    suffixed = sorted((s for s in splits.values() if s), key=len, reverse=True)
    results = []
    for split, suffix in splits.items():
        for k, v in values.items():
            if not (k.endswith(suffix) if suffix else not any(k.endswith(s) for s in suffixed)):
                continue
            results.append(EvalResult(
                task_type=task_type, task_name=task_name, dataset_type=dataset, dataset_name=pretty,
                dataset_config=config, dataset_split=split.replace("dev", "validation", 1),
                metric_type=metric_id(k), metric_value=round(float(v), 4),
                metric_name=_METRICS.get(k.removesuffix(suffix) if suffix else k, (k, k))[1] + notes.get(k, "")))
    return eval_results_to_model_index(name, results) if results else []


# --- ONNX exports ----------------------------------------------------------------------------------

_EXPORT_PIPELINES = {"discriminator": "token-classification", "qa": "question-answering"}


def onnx_card(source: str | None, meta: dict[str, Any]) -> str:
    """The card of an ONNX export: the source model's card (metadata and body) with the ONNX
    library, what was exported and how closely it matches PyTorch; a card of its own when the
    source has none. meta: the export's metadata.json."""
    metadata, body = parse(source) if source else ({}, "")
    kind, task = meta.get("kind", ""), meta.get("task", "")
    metadata = {"license": metadata.pop("license", LICENSE), "language": metadata.pop("language", LANGUAGE),
                "library_name": "onnx", **{k: v for k, v in metadata.items() if k != "library_name"}}
    metadata["pipeline_tag"] = _EXPORT_PIPELINES.get(kind, "text-classification")  # what the graph outputs
    metadata["tags"] = unique([*as_list(metadata.get("tags")), "electra", "onnx",
                               *(["int8"] if (meta.get("files") or {}).get("int8") else [])])
    if not metadata.get("model-index") and meta.get("metrics") and kind != "discriminator":
        metadata["model-index"] = model_index(f"electra-{task}-onnx", task, kind, meta["metrics"], {"dev": ""})
    m = meta.get("model") or {}
    lines = [f"# ELECTRA {task} ({kind}), ONNX export", "",
             f"- files: {', '.join(f'`{f}`' for f in (meta.get('files') or {}).values())}; load with "
             "`electra_pipeline.inference.Predictor.load(<this directory>)` or serve with `serving/`",
             f"- model: {m.get('num_layers')} layers x {m.get('hidden_size')} hidden, {m.get('vocab_size')}-token "
             f"vocabulary; inputs {', '.join(meta.get('inputs') or [])} (int64, batch x sequence)",
             f"- exporter: {meta.get('exporter')} (opset {meta.get('opset')}, {meta.get('attention')} attention"
             + (", fused" if meta.get("optimized") else "") + f"); max |ONNX - PyTorch| "
             f"{meta.get('max_abs_diff', float('nan')):.2g} on real text",
             ]
    if meta.get("int8_max_abs_diff") is not None:
        agree = meta.get("int8_agreement")
        lines.append(f"- int8 (dynamic quantisation): max |int8 - PyTorch| {meta['int8_max_abs_diff']:.2g}"
                     + (f", {agree:.1%} agreement" if agree is not None else ""))
    for variant, values in (meta.get("dev_metrics") or {}).items():
        lines.append(f"- dev metrics of the {variant} ONNX model: "
                     + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    if body:
        lines += ["", "## The source model", "", demote(body, 2)]
    else:
        lines += ["", f"Source: `{meta.get('source')}` (it had no model card)."]
    return render(metadata, "\n".join(lines))
