"""ONNX export: ONNX Runtime equals PyTorch for every model kind, dynamic axes, int8, atomicity,
clear errors; plus the pure pre/post-processing in `inference.py` and MLflow registration.

The helpers at the top build tiny models with a WordPiece tokenizer trained in-process on real
text; `test_serving.py` reuses them."""

from __future__ import annotations

import dataclasses
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from electra_cli import export as export_cli
from electra_pipeline import inference
from electra_pipeline.errors import DataError
from electra_pipeline.evaluation.finetuned import TaskMeta, load_finetuned, save_finetuned
from electra_pipeline.export import onnx as export
from electra_pipeline.export import registry
from electra_pipeline.modeling.config import ModelConfig
from electra_pipeline.modeling.hf import save_hf
from electra_pipeline.modeling.model import Discriminator, ElectraForQuestionAnswering, ElectraForSequenceClassification

REPO = Path(__file__).resolve().parents[1]
TEXT_SOURCES = (REPO / "electra_pipeline" / "sample", REPO.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# --- helpers (also used by test_serving.py) ----------------------------------------------

def real_lines(limit: int = 4000) -> list[str]:
    """Real English lines: the repo's shipped sample if present, else SST-2 sentences."""
    for src in TEXT_SOURCES:
        files = sorted(p for p in src.rglob("*") if p.suffix in (".txt", ".gz", ".tsv")) if src.is_dir() else [src]
        for f in files:
            if not f.is_file():
                continue
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", encoding="utf-8", errors="replace") as fh:
                lines = [ln.split("\t")[0].strip() for _, ln in zip(range(limit + 1), fh)]
            lines = [ln for ln in lines if len(ln) > 3 and ln != "sentence"]
            if len(lines) > 100:
                return lines
    pytest.skip("no real text found (repo sample or shared SST-2) to train a tokenizer on")


def train_tokenizer(out: Path, vocab_size: int = 2000) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(real_lines(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3, 4]
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def tiny_cfg(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                       embedding_size=64, max_position_embeddings=128)


def _vocab(tok_file: Path) -> int:
    return len(json.loads(tok_file.read_text())["model"]["vocab"])


def make_classifier(root: Path, tok_file: Path, kind: str = "classification", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    labels = ["negative", "positive"] if kind == "classification" else []
    model = ElectraForSequenceClassification(tiny_cfg(_vocab(tok_file)), num_labels=len(labels) or 1).eval()
    meta = TaskMeta(task="sst2" if labels else "stsb", kind=kind, labels=labels, max_seq_length=64,
                    metrics={"accuracy": 50.0} if labels else {})
    return save_finetuned(model, meta, tok_file, root / f"{kind}_model")


def make_qa(root: Path, tok_file: Path, answerability: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = ElectraForQuestionAnswering(tiny_cfg(_vocab(tok_file)), answerability=answerability).eval()
    meta = TaskMeta(task="squad_v2" if answerability else "squad_v1", kind="qa", max_seq_length=64,
                    answerability=answerability, doc_stride=24, max_query_length=16, max_answer_length=12,
                    no_answer_threshold=-1e9 if answerability else 0.0)  # always answer: spans testable
    return save_finetuned(model, meta, tok_file, root / ("qa_v2_model" if answerability else "qa_model"))


def make_discriminator(root: Path, tok_file: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    out = save_hf(Discriminator(tiny_cfg(_vocab(tok_file))).eval(), root / "discriminator", "discriminator")
    (out / "tokenizer.json").write_bytes(tok_file.read_bytes())
    return out


# --- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def tok_file(root: Path) -> Path:
    return train_tokenizer(root / "tokenizer.json")


@pytest.fixture(scope="module")
def classifier(root: Path, tok_file: Path) -> Path:
    return make_classifier(root, tok_file)


@pytest.fixture(scope="module")
def classifier_export(root: Path, classifier: Path) -> tuple[Path, export.ExportReport]:
    report = export.export_onnx(classifier, root / "onnx_cls", quantize=True)
    return root / "onnx_cls", report


# --- pure pre/post-processing ------------------------------------------------------------

def test_longest_first_matches_token_by_token_rule() -> None:
    def slow(a: int, b: int, budget: int) -> tuple[int, int]:
        while a + b > budget:
            if a > b:
                a -= 1
            else:
                b -= 1
        return a, b

    for a in range(0, 12):
        for b in range(0, 12):
            for budget in range(0, 20):
                assert inference.longest_first(a, b, budget) == slow(a, b, budget), (a, b, budget)


def test_doc_windows_cover_the_context_with_stride() -> None:
    wins = inference.doc_windows(100, 40, 16)
    assert wins[0] == (0, 40) and wins[-1][0] + wins[-1][1] == 100
    assert all(b[0] - a[0] == 16 for a, b in zip(wins, wins[1:]))
    assert inference.doc_windows(10, 40, 16) == [(0, 10)]


def test_encode_texts_truncates_and_flags(tok_file: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_file))
    enc = inference.encode_texts(tok, ["a fine film .", "word " * 200, ("a short one", "and its pair")], 32)
    assert enc.truncated == [False, True, False]
    assert enc.batch.input_ids.shape == (3, 32) and enc.batch.input_ids.dtype == np.int64
    row = enc.batch.input_ids[2][enc.batch.attention_mask[2] == 1]
    assert row[0] == 2 and list(row).count(3) == 2  # [CLS] a [SEP] b [SEP]
    assert enc.batch.token_type_ids[2].max() == 1
    # the tokenizer's own template gives the same ids for an untruncated pair
    assert tok.encode("a short one", "and its pair").ids == row.tolist()


# --- export ------------------------------------------------------------------------------

def test_classifier_export_matches_pytorch(classifier: Path, classifier_export: tuple[Path, export.ExportReport]) -> None:
    out, report = classifier_export
    assert report.max_abs_diff <= 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metadata.json", "model.int8.onnx", "model.onnx",
                                                     "tokenizer.json"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["kind"] == "classification" and meta["labels"] == ["negative", "positive"]
    assert meta["max_abs_diff"] == report.max_abs_diff and meta["opset"] == 17 and meta["max_seq_length"] == 64
    assert meta["attention"] == "explicit" and meta["exporter"] == "torchscript"
    assert meta["files"]["int8"] == "model.int8.onnx" and meta["metrics"] == {"accuracy": 50.0}
    # checked with batch > 1 and padding, then other batch and sequence sizes
    shapes = report.checked_shapes
    assert shapes[0][0] > 1 and len({s[0] for s in shapes}) > 1 and len({s[1] for s in shapes}) > 1


def test_dynamic_axes_accept_other_batch_and_sequence_sizes(classifier: Path, classifier_export) -> None:
    from electra_pipeline.evaluation.finetuned import load_finetuned

    model, _ = load_finetuned(classifier)
    pred = inference.Predictor.load(classifier_export[0])
    rng = np.random.default_rng(0)
    for b, t in [(1, 3), (5, 64), (9, 17)]:
        ids = rng.integers(5, 1000, (b, t))
        mask = np.ones((b, t), np.int64)
        mask[0, t // 2 + 1:] = 0
        batch = inference.Batch(ids, mask, np.zeros_like(ids))
        with torch.inference_mode():
            ref = model(torch.from_numpy(ids), torch.from_numpy(batch.token_type_ids), torch.from_numpy(mask)).numpy()
        assert np.abs(pred.run(batch)["logits"] - ref).max() <= 1e-4


def test_export_has_an_onnx_model_card(classifier_export: tuple[Path, export.ExportReport]) -> None:
    import yaml

    card = (classifier_export[0] / "README.md").read_text()  # the source had none: the export writes one
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "onnx" and front["license"] and {"onnx", "int8"} <= set(front["tags"])
    assert front["model-index"][0]["results"][0]["metrics"] == [{"type": "accuracy", "value": 50.0, "name": "Accuracy"}]


def test_int8_export_is_close(classifier_export: tuple[Path, export.ExportReport]) -> None:
    out, report = classifier_export
    assert report.int8_max_abs_diff is not None and report.int8_max_abs_diff < 0.05
    # A random-init head leaves the two class logits nearly tied, so int8 rounding may flip any
    # one prediction: the agreement is reported, and what is checked is how close the scores stay.
    assert report.int8_agreement is not None and 0.0 <= report.int8_agreement <= 1.0
    texts = ["a gripping , beautifully acted film", "dull and far too long"]
    fp32 = inference.Predictor.load(out).classify(texts)
    int8 = inference.Predictor.load(out, quantized=True).classify(texts)
    assert all(abs(a["scores"]["positive"] - b["scores"]["positive"]) < 0.02 for a, b in zip(fp32, int8))


@pytest.mark.parametrize("answerability", [False, True])
def test_qa_export_matches_pytorch_and_decodes_spans(root: Path, tok_file: Path, answerability: bool) -> None:
    src = make_qa(root, tok_file, answerability)
    out = root / f"onnx_qa_{answerability}"
    report = export.export_onnx(src, out, optimize=True)
    assert report.max_abs_diff <= 1e-4 and report.kind == "qa"
    assert len(report.checked_shapes[0]) == 2 and report.checked_shapes[0][0] > 2  # several windows
    pred = inference.Predictor.load(out)
    assert pred.output_names == (["start_logits", "end_logits", "answerable_logits"] if answerability
                                 else ["start_logits", "end_logits"])
    context = "The harbour closed in the winter of 1962. " * 8 + "Her father repaired boats for forty years."
    res = pred.answer("How long did her father repair boats?", context)
    assert res["has_answer"] and res["answer"] == context[res["start"]:res["end"]] and res["answer"]
    assert res["truncated"] is False and (res["answerable_prob"] is not None) == answerability


def test_optimize_writes_fused_attention_and_int8_quantises_it(root: Path, classifier: Path) -> None:
    import onnx

    out = root / "onnx_fused"
    report = export.export_onnx(classifier, out, optimize=True, quantize=True)
    meta = json.loads((out / "metadata.json").read_text())
    layers = meta["model"]["num_layers"]
    # the last layer computes [CLS] alone (the classifier reads nothing else), outside the fused op
    assert report.max_abs_diff <= 1e-4 and meta["fused_ops"] == {"Attention": layers - 1}
    int8_ops = [n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node]
    assert int8_ops.count("QAttention") == layers - 1 and int8_ops.count("Softmax") == 1
    with pytest.raises(DataError, match="optimize"):
        export.export_onnx(classifier, root / "never", optimize=True, exporter="dynamo")
    assert not (root / "never").exists()


def test_optimized_discriminator_keeps_every_token(root: Path, tok_file: Path) -> None:
    src = make_discriminator(root, tok_file)  # per-token outputs: no [CLS]-only last layer
    report = export.export_onnx(src, root / "onnx_disc_fused", optimize=True)
    meta = json.loads((root / "onnx_disc_fused" / "metadata.json").read_text())
    assert report.max_abs_diff <= 1e-4 and meta["fused_ops"] == {"Attention": meta["model"]["num_layers"]}
    res = inference.Predictor.load(root / "onnx_disc_fused").detect("the chef cooked the meal")
    assert len(res["tokens"]) >= 5 and all(0.0 <= t["replaced_prob"] <= 1.0 for t in res["tokens"])


def test_discriminator_export_matches_pytorch(root: Path, tok_file: Path) -> None:
    src = make_discriminator(root, tok_file)
    report = export.export_onnx(src, root / "onnx_disc", quantize=True, attention="sdpa")  # SDPA traced as is
    assert report.kind == "discriminator" and report.max_abs_diff <= 1e-4
    assert report.int8_agreement is not None and report.int8_agreement > 0.8
    res = inference.Predictor.load(root / "onnx_disc").detect("the chef cooked the meal")
    assert [t["token"] for t in res["tokens"]][:2] == ["the", "chef"] or res["tokens"][0]["start"] == 0
    assert all(0.0 <= t["replaced_prob"] <= 1.0 for t in res["tokens"])


def test_regression_export_with_dynamo_exporter(root: Path, tok_file: Path) -> None:
    src = make_classifier(root, tok_file, kind="regression")
    report = export.export_onnx(src, root / "onnx_reg_dynamo", exporter="dynamo")
    assert report.max_abs_diff <= 1e-4 and report.opset >= 18
    res = inference.Predictor.load(root / "onnx_reg_dynamo").classify([("a man plays", "a man is playing")])
    assert res[0]["label"] is None and isinstance(res[0]["score"], float)


def test_failed_check_leaves_nothing_behind(root: Path, classifier: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = export._torch_outputs
    monkeypatch.setattr(export, "_torch_outputs", lambda w, b: [o + 1e-2 for o in real(w, b)])
    out = root / "must_not_exist"
    before = set(root.iterdir())
    with pytest.raises(export.ExportCheckError, match="disagrees"):
        export.export_onnx(classifier, out)
    assert not out.exists() and set(root.iterdir()) == before  # no temp dir left either


def test_missing_or_foreign_model_dir_is_a_data_error(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        export.export_onnx(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(DataError, match="neither a fine-tuned"):
        export.export_onnx(tmp_path / "foreign", tmp_path / "out")
    with pytest.raises(DataError, match="metadata.json"):
        inference.Predictor.load(tmp_path / "foreign")
    assert not (tmp_path / "out").exists()


def test_cli_export_help_and_run(root: Path, classifier: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="electra")
    export_cli.add_cli(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--help"])
    assert "--quantize" in capsys.readouterr().out
    args = parser.parse_args(["export", str(classifier), str(root / "cli_out"), "--optimize"])
    assert args.func(args) == 0
    assert "max_abs_diff" in capsys.readouterr().out
    assert json.loads((root / "cli_out" / "metadata.json").read_text())["optimized"] is True


def test_mlflow_register_and_download(classifier_export, root: Path, tok_file: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri()))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = registry.log_to_mlflow(classifier_export[0], "electra-sst2-test")
            # no baselines recorded with this export: registered, but not crowned
            assert res["model_uri"] == "models:/electra-sst2-test@challenger" and not res["alias_moved"]
            assert res["alias_reason"].startswith("no baselines recorded")
            local = registry.download_model(res["model_uri"], tmp_path / "dl")
            assert (local / "model.onnx").is_file() and (local / "tokenizer.json").is_file()
            texts = ["a fine film", "a dull film"]
            expected = inference.Predictor.load(classifier_export[0]).classify(texts)
            assert inference.Predictor.load(local).classify(texts) == expected
            # the registered pyfunc is logged as code (nothing unpickled) and predicts the same
            assert mlflow.pyfunc.load_model(res["model_uri"]).predict(texts) == expected
        assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        # the logged model carries its signature, an input example and its dev metrics
        info = mlflow.models.get_model_info(res["model_uri"])
        assert info.signature is not None and info.saved_input_example_info is not None
        logged = mlflow.MlflowClient().get_logged_model(info.model_id)
        dev = json.loads((classifier_export[0] / "metadata.json").read_text())["metrics"]
        on_model = {m.key: m.value for m in logged.metrics}
        assert {k: on_model.get(k) for k in [f"dev/{k}" for k in dev] + ["dev/score"]} == pytest.approx(
            {f"dev/{k}": v for k, v in dev.items()} | {"dev/score": registry.dev_score({"metrics": dev})})
        # a question-answering model takes a table (question, context), its signature says so
        export.export_onnx(make_qa(root, tok_file), root / "onnx_qa_registry")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            qa = registry.log_to_mlflow(root / "onnx_qa_registry", "electra-qa-test")
            rows = {"question": ["What is it?"], "context": ["It is a test of the answer span."]}
            got = mlflow.pyfunc.load_model(qa["model_uri"]).predict(pd.DataFrame(rows))
        assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert got == [inference.Predictor.load(root / "onnx_qa_registry").answer(*next(zip(*rows.values())))]
        assert mlflow.models.get_model_info(qa["model_uri"]).signature.inputs.input_names() == ["question", "context"]
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("optimize", [False, True])
def test_pre_ln_relative_attention_classifier_exports_exactly(root: Path, tok_file: Path, optimize: bool) -> None:
    """The small-budget architecture (pre-LN, learned relative-distance bias) exports and reloads:
    the [CLS]-only last layer and the explicit attention apply the bias like PyTorch does."""
    torch.manual_seed(3)
    cfg = dataclasses.replace(tiny_cfg(_vocab(tok_file)), pre_layer_norm=True, relative_attention=16)
    model = ElectraForSequenceClassification(cfg, num_labels=2).eval()
    with torch.no_grad():  # learned biases are not ALiBi's any more
        for layer in model.electra.layers:
            layer.attention.relative_bias.add_(torch.randn_like(layer.attention.relative_bias))
    meta = TaskMeta(task="sst2", kind="classification", labels=["negative", "positive"], max_seq_length=64)
    src = save_finetuned(model, meta, tok_file, root / f"preln_rel_{optimize}")
    report = export.export_onnx(src, root / f"onnx_preln_rel_{optimize}", optimize=optimize)
    assert report.max_abs_diff <= 1e-4
    if optimize:  # no fused Attention op: it has no input for a per-head distance bias
        assert json.loads((root / f"onnx_preln_rel_{optimize}" / "metadata.json").read_text())["fused_ops"] == {}


def test_mean_pooled_classifier_exports_and_reloads(root: Path, tok_file: Path) -> None:
    """A mean-pooled head keeps every row of the last layer (no [CLS]-only shortcut) and the
    pooling survives save -> load -> ONNX."""
    torch.manual_seed(4)
    cfg = dataclasses.replace(tiny_cfg(_vocab(tok_file)), pre_layer_norm=True, relative_attention=16)
    model = ElectraForSequenceClassification(cfg, num_labels=2, pooling="mean").eval()
    meta = TaskMeta(task="sst2", kind="classification", labels=["negative", "positive"], max_seq_length=64,
                    pooling="mean")
    src = save_finetuned(model, meta, tok_file, root / "mean_pooled")
    assert load_finetuned(src)[0].classifier.pooling == "mean"
    report = export.export_onnx(src, root / "onnx_mean_pooled")
    assert report.max_abs_diff <= 1e-4
    assert json.loads((root / "onnx_mean_pooled" / "metadata.json").read_text())["pooling"] == "mean"


def test_a_tokenizer_of_another_size_is_refused(root: Path, classifier: Path) -> None:
    """A smaller vocabulary would export and serve, scoring other words: refuse it, write nothing."""
    small = train_tokenizer(root / "small_tok" / "tokenizer.json", vocab_size=500)
    with pytest.raises(DataError, match="vocabulary of .* tokens, the model's has"):
        export.export_onnx(classifier, root / "onnx_small_tok", tokenizer=small)
    assert not (root / "onnx_small_tok").exists()


def test_champion_moves_only_on_a_better_dev_score(classifier_export, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every version gets @challenger; @champion moves only to a version that earned it (above the
    majority class and its random-init twin, the gain's interval above 0) and beats the holder's
    score (or when forced); each version carries its description, score, baselines and why."""
    import shutil

    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")

    def export_with(score: float | None, name: str, random_init: float = 60.0, low: float = 1.0,
                    run_id: str | None = None) -> Path:
        d = tmp_path / name
        shutil.copytree(classifier_export[0], d)
        meta = json.loads((d / "metadata.json").read_text())
        meta["metrics"] = {} if score is None else {"accuracy": score}
        gain = {"diff": (score or 0) - random_init, "low": low, "high": (score or 0) - random_init + 3,
                "level": 0.95, "method": "paired bootstrap over dev examples", "n": 872}
        meta["evaluation"] = {"task": "sst2", "score": score or 0.0, "majority": 50.9, "random_init": random_init,
                              "gain": gain, "bow": 78.7, **({"run_id": run_id} if run_id else {})}
        (d / "metadata.json").write_text(json.dumps(meta))
        return d

    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri()))
        client = mlflow.MlflowClient()
        steps = [(80.0, False, True), (80.0, False, False), (85.0, False, True), (None, False, False),
                 (70.0, False, False), (70.0, True, True)]
        for i, (score, force, moves) in enumerate(steps, start=1):
            res = registry.log_to_mlflow(export_with(score, f"v{i}"), "electra-promo", force=force)
            assert res["version"] == str(i) and res["alias_moved"] is moves, (i, res["alias_reason"])
            assert str(client.get_model_version_by_alias("electra-promo", "challenger").version) == str(i)
        champion = client.get_model_version_by_alias("electra-promo", "champion")
        assert str(champion.version) == "6" and champion.tags["score"] == "70"
        assert "Dev: accuracy 70" in champion.description
        assert client.get_model_version("electra-promo", "3").tags["dev.accuracy"] == "85"
        assert client.get_model_version("electra-promo", "3").tags["baseline.random_init"] == "60"
        # the gate, the other way: a higher score whose gain over random init is not resolved, and one at the
        # majority class, stay @challenger whatever the holder's score, and say why
        res = registry.log_to_mlflow(export_with(95.0, "v7", random_init=93.0, low=-1.5), "electra-promo")
        assert not res["alias_moved"] and "gain over random init is not resolved" in res["alias_reason"]
        assert "bag-of-words floor 78.7" in res["alias_reason"]
        res = registry.log_to_mlflow(export_with(50.0, "v8", random_init=40.0), "electra-promo")
        assert not res["alias_moved"] and "not above the majority class" in res["alias_reason"]
        v8 = client.get_model_version("electra-promo", "8")
        assert "@challenger only" in v8.description and "majority class 50.9" in v8.tags["alias_reason"]
        assert str(client.get_model_version_by_alias("electra-promo", "champion").version) == "6"
        # a version links to the evaluation run that justified it: a tag, and a link in its description
        with mlflow.start_run(run_name="evaluate-electra") as evaluation:
            pass
        res = registry.log_to_mlflow(export_with(90.0, "v9", run_id=evaluation.info.run_id), "electra-promo")
        v9 = client.get_model_version("electra-promo", res["version"])
        assert v9.tags["evaluation_run_id"] == evaluation.info.run_id and v9.run_id != evaluation.info.run_id
        link = f"(#/experiments/{evaluation.info.experiment_id}/runs/{evaluation.info.run_id}?workflowType=machine_learning)"
        assert f"Evidence: [evaluation run `evaluate-electra`]{link}" in v9.description
    finally:
        mlflow.set_tracking_uri(None)
