"""Model cards in the Hugging Face format: YAML front matter that parses, with license, language,
library, tags, datasets and (fine-tuned) the task metric with its measured value; a card without
results is still valid; the ONNX export's card is the source's, for ONNX."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
import yaml

from electra_pipeline.data import corpus
from electra_pipeline.evaluation import finetuned
from electra_pipeline.evaluation.finetuned import TaskMeta
from electra_pipeline.modeling import config as config_mod
from electra_pipeline.modeling import hf, modelcard, presets
from electra_pipeline.modeling.model import Discriminator

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "electra_pipeline" / "sample" / "corpus" / "sample.txt.gz"


def front_matter(card: str) -> tuple[dict, str]:
    """(metadata, body) exactly as the Hub splits a README: YAML between the first two `---` lines."""
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny discriminator directory with its pre-training card, over a real corpus manifest (two
    shipped-sample slices, one with a name YAML would misread if written by hand)."""
    root = tmp_path_factory.mktemp("card")
    docs = gzip.decompress(SAMPLE_CORPUS.read_bytes()).decode("utf-8").split("\n\n")
    (root / "a.txt").write_text("\n\n".join(docs[:10]) + "\n", encoding="utf-8")
    (root / "b: #1 ---.txt").write_text("\n\n".join(docs[10:20]) + "\n", encoding="utf-8")
    corpus.ingest([str(root / "a.txt"), str(root / "b: #1 ---.txt")], root / "corpus", corpus.CorpusConfig(),
                  progress=False)
    examples = root / "examples"  # the two fields of a packed-examples config.json the card reads
    examples.mkdir()
    (examples / "config.json").write_text(json.dumps({"config": {}, "corpus": str(root / "corpus"), "tokenizer": ""}))
    cfg = config_mod.to_dict(presets.tiny())
    cfg["data"] = str(examples)
    summary = {"steps": 20, "compute": {"tokens": 20 * 32 * 128, "train_flops": 1.5e12, "device_hours": 0.01,
                                        "devices": 1, "device": "cpu", "precision": "fp32", "train_minutes": 0.6}}
    torch.manual_seed(0)
    out = hf.save_hf(Discriminator(presets.tiny().model), root / "discriminator", "discriminator")
    (out / "README.md").write_text(hf.model_card("discriminator", cfg, summary))
    return out


def test_pretrained_and_finetuned_cards_carry_hugging_face_metadata(pretrained: Path) -> None:
    meta, body = front_matter((pretrained / "README.md").read_text())
    assert meta["license"] == "apache-2.0" and meta["language"] == "en"  # pyproject.toml: Apache-2.0
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "feature-extraction"
    assert {"electra", "tiny", "pretraining"} <= set(meta["tags"])
    assert meta["datasets"] == ["a.txt", "b: #1 ---.txt"]  # the corpus manifest's sources
    manifest = json.loads((pretrained.parent / "corpus" / "manifest.json").read_text())
    assert all(s["sha256"] in body for s in manifest["sources"])  # their checksums in the body
    assert "device-hours" in body and "training FLOPs" in body and "Intended use and limits" in body

    task = TaskMeta(task="mnli", kind="classification", labels=["entailment", "neutral", "contradiction"],
                    metrics={"accuracy": 81.25, "accuracy_mm": 80.5})
    summary = {"metrics": {"accuracy": 80.0, "accuracy_mm": 79.0}, "best_seed": 2,
               "seeds": {"1": {"accuracy": 79.0, "accuracy_mm": 78.0}, "2": {"accuracy": 81.25, "accuracy_mm": 80.5},
                         "3": {"accuracy": 80.0, "accuracy_mm": 79.0}},
               "splits": {"dev_matched": "", "dev_mismatched": "_mm"},
               "baselines": {"random_init": {"accuracy": 61.0, "accuracy_mm": 60.0},
                             "majority": {"accuracy": 35.4, "accuracy_mm": 35.2}}}
    card = finetuned.model_card(task, {"checkpoint": str(pretrained), "finetune": {"epochs": 3}}, summary)
    meta, body = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["language"] == "en"  # from the encoder's card
    assert meta["pipeline_tag"] == "text-classification" and meta["datasets"] == ["glue"]
    assert {"electra", "mnli", "text-classification", "tiny"} <= set(meta["tags"])
    assert meta["metrics"] == ["accuracy"]
    [entry] = meta["model-index"]
    by_split = {r["dataset"]["split"]: r for r in entry["results"]}
    assert set(by_split) == {"validation_matched", "validation_mismatched"}
    matched = by_split["validation_matched"]
    assert matched["task"]["type"] == "text-classification"
    assert (matched["dataset"]["type"], matched["dataset"]["config"]) == ("glue", "mnli")
    assert [(m["type"], m["value"]) for m in matched["metrics"]] == [("accuracy", 81.25)]  # these weights' score
    assert [(m["type"], m["value"]) for m in by_split["validation_mismatched"]["metrics"]] == [("accuracy", 80.5)]
    assert "| random init | majority class |" in body and "| 61 | 35.4 |" in body
    assert "### ELECTRA discriminator (tiny preset)" in body  # the encoder's card, nested


def test_hub_library_reads_the_model_index(pretrained: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    task = TaskMeta(task="stsb", kind="regression", metrics={"pearson": 85.0, "spearman": 84.5})
    card = finetuned.model_card(task, {"checkpoint": str(pretrained)}, {"metrics": dict(task.metrics)})
    data = hub.ModelCard(card).data
    assert data.license == "apache-2.0" and data.datasets == ["glue"]
    assert sorted((r.metric_type, r.metric_value, r.dataset_config) for r in data.eval_results) == [
        ("pearsonr", 85.0, "stsb"), ("spearmanr", 84.5, "stsb")]


def test_a_model_without_results_still_gets_a_valid_card(tmp_path: Path) -> None:
    cfg = config_mod.to_dict(presets.tiny())  # data "" and no corpus: no datasets, no crash
    summary = {"steps": 0, "compute": {"tokens": 0, "train_flops": 0.0, "device": "cpu", "precision": "fp32",
                                       "train_minutes": 0.0}}
    meta, _ = front_matter(hf.model_card("generator", cfg, summary))
    assert meta["pipeline_tag"] == "fill-mask" and "datasets" not in meta and meta["license"] == "apache-2.0"
    cfg["data"] = str(tmp_path / "gone")  # an examples directory that no longer exists
    assert "datasets" not in front_matter(hf.model_card("generator", cfg, summary))[0]

    qa = TaskMeta(task="squad_v2", kind="qa", answerability=True)
    meta, body = front_matter(finetuned.model_card(qa, {}, {}))
    assert meta["datasets"] == ["squad_v2"] and meta["pipeline_tag"] == "question-answering"
    assert "model-index" not in meta and "metrics" not in meta and "No dev results" in body


def test_onnx_card_is_the_source_card_for_onnx(pretrained: Path) -> None:
    task = TaskMeta(task="sst2", kind="classification", labels=["negative", "positive"], metrics={"accuracy": 90.0})
    source = finetuned.model_card(task, {"checkpoint": str(pretrained)}, {"metrics": {"accuracy": 90.0}})
    export_meta = {"task": "sst2", "kind": "classification", "metrics": {"accuracy": 90.0}, "opset": 17,
                   "exporter": "torchscript", "max_abs_diff": 3e-7, "files": {"model": "model.onnx", "int8": "model.int8.onnx"}}
    meta, body = front_matter(modelcard.onnx_card(source, export_meta))
    assert meta["library_name"] == "onnx" and {"onnx", "int8", "sst2"} <= set(meta["tags"])
    assert meta["model-index"] == front_matter(source)[0]["model-index"] and meta["license"] == "apache-2.0"
    assert "max |ONNX - PyTorch| 3e-07" in body and "##### ELECTRA discriminator (tiny preset)" in body

    meta, body = front_matter(modelcard.onnx_card(None, {"task": "discriminator", "kind": "discriminator",
                                                         "source": "/x"}))
    assert meta["library_name"] == "onnx" and meta["pipeline_tag"] == "token-classification"
    assert "model-index" not in meta and "no model card" in body


def test_custom_architecture_card_says_how_transformers_loads_it() -> None:
    """The cpu preset's card: custom_code tag and the Auto class with trust_remote_code, per kind."""
    cfg = config_mod.to_dict(presets.cpu())
    cfg["data"] = ""
    summary = {"steps": 20, "compute": {"tokens": 20 * 16 * 128, "train_flops": 1e12, "devices": 1, "device": "cpu",
                                        "precision": "fp32", "train_minutes": 0.5}}
    for kind, auto_class in (("discriminator", "AutoModelForPreTraining"), ("generator", "AutoModelForMaskedLM")):
        meta, body = front_matter(hf.model_card(kind, cfg, summary))
        assert meta["library_name"] == "transformers" and "custom_code" in meta["tags"]
        assert f"`{auto_class}.from_pretrained(dir, trust_remote_code=True)`" in body
    meta, body = front_matter(hf.model_card("discriminator", config_mod.to_dict(presets.tiny()) | {"data": ""}, summary))
    assert "custom_code" not in meta["tags"] and "trust_remote_code" not in body
