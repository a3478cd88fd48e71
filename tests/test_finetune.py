"""Fine-tuning recipe, the loop on real data, outputs, tracking and the CLI."""

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer

from electra_cli.finetune import add_cli, build_config
from electra_pipeline.data.tokenizer import TokenizerConfig, fit_wordpiece
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.evaluation.finetune import (
    FinetuneConfig,
    evaluate,
    finetune,
    layer_depth,
    lr_lambda,
    param_groups,
)
from electra_pipeline.evaluation.finetune.recipe import resolved
from electra_pipeline.evaluation.finetune.runner import write_model_card
from electra_pipeline.evaluation.finetuned import TaskMeta, build_model, load_finetuned
from electra_pipeline.evaluation.tasks import get_task
from electra_pipeline.modeling import hf
from electra_pipeline.modeling.config import ModelConfig
from electra_pipeline.modeling.model import Discriminator, init_weights

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = REPO / "electra_pipeline" / "sample"


def wordpiece(texts: list[str], vocab_size: int) -> Tokenizer:
    """A throwaway BERT-style WordPiece trained in-process on real text."""
    return fit_wordpiece(texts, TokenizerConfig(vocab_size=vocab_size, min_frequency=0))


def tiny_config(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                       embedding_size=64, max_position_embeddings=128)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy shared CPU two spinning
    OpenMP threads run ~10x slower than one; restored afterwards for other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> tuple[Path, Path]:
    """(tokenizer.json, tiny HF-format discriminator checkpoint) trained on the shipped real text."""
    d = tmp_path_factory.mktemp("assets")
    texts = []
    for task in ("sst2", "mrpc", "rte", "stsb", "cola"):
        for e in get_task(task).read(SAMPLE, "train"):
            texts += [e.text_a, e.text_b or ""]
    texts += [e.context for e in get_task("squad_v1").read(SAMPLE, "train")]
    tok = wordpiece(texts, 2000)
    tok.save(str(d / "tokenizer.json"))
    torch.manual_seed(0)
    disc = Discriminator(tiny_config(tok.get_vocab_size()))
    init_weights(disc, 0.02)
    hf.save_hf(disc, d / "ckpt", "discriminator")
    return d / "tokenizer.json", d / "ckpt"


class RecordingTracker:
    """Implements the tracker interface and remembers every call, for assertions."""

    def __init__(self, name: str = "root"):
        self.name, self.params, self.metrics, self.artifacts, self.children = name, {}, [], [], []
        self.run_id = None

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(Path(path))

    def set_tags(self, tags):
        pass

    @contextlib.contextmanager
    def child(self, name):
        c = RecordingTracker(name)
        self.children.append(c)
        yield c


# --- recipe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("lr", 0.0), ("layer_decay", 1.5), ("layer_decay_form", "bert"),
                                          ("warmup_fraction", 1.0), ("epochs", 0), ("seeds", []),
                                          ("select", "median"), ("model_preset", "huge"), ("device", "tpu"),
                                          ("lr_grid", [1e-3, 0.0]), ("lr_select_fraction", 1.0)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^finetune\.{field}:"):
        FinetuneConfig(**{field: value})


def test_defaults_follow_the_reference_per_size_and_task():
    small, large = ModelConfig(), ModelConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                                              embedding_size=1024)
    cfg = FinetuneConfig()
    assert cfg.batch_size == 32 and cfg.weight_decay == 0.0 and cfg.warmup_fraction == 0.1
    r = resolved(cfg, get_task("sst2"), small)
    assert (r.lr, r.layer_decay, r.epochs, r.max_seq_length) == (1e-4, 0.8, 3, 128)
    r = resolved(cfg, get_task("rte"), large)
    assert (r.lr, r.layer_decay, r.epochs) == (5e-5, 0.9, 10)
    assert resolved(cfg, get_task("stsb"), small).epochs == 10
    assert resolved(cfg, get_task("squad_v1"), small).max_seq_length == 512
    with pytest.raises(ConfigError, match="max_seq_length: 512 exceeds"):
        resolved(cfg, get_task("squad_v1"), tiny_config(100))


def test_layerwise_lr_decay_code_and_paper_forms():
    model = build_model(tiny_config(50), TaskMeta(task="sst2", kind="classification", labels=["0", "1"]))
    n = 2
    assert layer_depth("electra.embeddings.word_embeddings.weight", n, "code") == (0, 4)
    assert layer_depth("electra.layers.1.ffn.output.weight", n, "code") == (2, 4)
    assert layer_depth("classifier.out_proj.weight", n, "code") == (4, 4)
    assert layer_depth("classifier.out_proj.weight", n, "paper") == (3, 3)
    for form, expected in (("code", {0: 0.8 ** 4, 1: 0.8 ** 3, 2: 0.8 ** 2, 4: 1.0}),
                           ("paper", {0: 0.8 ** 3, 1: 0.8 ** 2, 2: 0.8, 3: 1.0})):
        groups = param_groups(model, 1e-4, 0.8, form, 0.0)
        assert {g["depth"]: g["lr"] / 1e-4 for g in groups} == pytest.approx(expected)
        seen = [id(p) for g in groups for p in g["params"]]
        assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    head = [g for g in param_groups(model, 1e-4, 0.8, "code", 0.0) if g["depth"] == 4][0]
    assert {id(p) for p in head["params"]} == {id(p) for p in model.classifier.parameters()}


def test_warmup_then_linear_decay():
    f = lr_lambda(10, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0.0


# --- bad inputs -----------------------------------------------------------------------------


def test_vocab_mismatch_is_a_clear_error(assets, tmp_path):
    tok_file, _ = assets
    disc = Discriminator(tiny_config(123))
    hf.save_hf(disc, tmp_path / "other", "discriminator")
    with pytest.raises(DataError, match=r"vocab_size 123 does not match the tokenizer's"):
        finetune("sst2", tmp_path / "other", tok_file, SAMPLE, tmp_path / "out", FinetuneConfig(seeds=[1]))
    with pytest.raises(DataError, match="checkpoint directory not found"):
        finetune("sst2", tmp_path / "nope", tok_file, SAMPLE, tmp_path / "out", FinetuneConfig(seeds=[1]))
    with pytest.raises(DataError, match="tokenizer file not found"):
        finetune("sst2", None, tmp_path / "nope.json", SAMPLE, tmp_path / "out", FinetuneConfig(seeds=[1]))


def test_inputs_are_checked_before_any_run(assets, tmp_path):
    from electra_pipeline.evaluation.finetune.runner import check_inputs

    tok_file, ckpt = assets
    cfg = FinetuneConfig(seeds=[1])
    check_inputs(["sst2", "squad_v1"], ckpt, tok_file, SAMPLE, FinetuneConfig(max_seq_length=128))
    with pytest.raises(ConfigError, match="unknown task 'glue'"):
        check_inputs(["sst2", "glue"], ckpt, tok_file, SAMPLE, cfg)
    with pytest.raises(DataError, match=r"MNLI/train\.tsv: missing train split for mnli"):
        check_inputs(["mnli"], ckpt, tok_file, SAMPLE, cfg)
    with pytest.raises(DataError, match="no GLUE task with train and dev files"):
        check_inputs([], ckpt, tok_file, tmp_path, cfg)
    with pytest.raises(ConfigError, match="max_seq_length: 512 exceeds"):  # SQuAD's default vs a 128-position model
        check_inputs(["squad_v1"], ckpt, tok_file, SAMPLE, cfg)


# --- learning on real data ------------------------------------------------------------------


def test_tiny_model_learns_sst2_beyond_the_majority_class(tmp_path):
    """One epoch on 4k real SST-2 sentences from a random tiny encoder; held-out dev slice."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    glue = SHARED / "glue"
    sst = get_task("sst2")
    tok = wordpiece([e.text_a for e in sst.read(glue, "train")], 4000)
    tok.save(str(tmp_path / "tokenizer.json"))
    torch.manual_seed(0)
    disc = Discriminator(tiny_config(tok.get_vocab_size()))
    init_weights(disc, 0.02)
    hf.save_hf(disc, tmp_path / "ckpt", "discriminator")
    cfg = FinetuneConfig(lr=2e-3, layer_decay=1.0, epochs=1, seeds=[1], max_train_examples=4000,
                         max_eval_examples=400, max_seq_length=64, predict_test=False, device="cpu")
    r = finetune("sst2", tmp_path / "ckpt", tmp_path / "tokenizer.json", glue, tmp_path / "out", cfg, progress=False)
    dev = [json.loads(line) for line in (tmp_path / "out" / "predictions" / "dev.jsonl").read_text().splitlines()]
    gold = {e.guid: e.label for e in sst.read(glue, "dev")}
    majority = 100 * max(np.mean([gold[d["id"]] == c for d in dev]) for c in (0, 1))
    assert len(dev) == 400
    assert r.metrics["accuracy"] > majority + 8, (r.metrics, majority)


# --- outputs, tracking, reload --------------------------------------------------------------


def test_evaluate_writes_table_submission_and_reloadable_models(assets, tmp_path):
    tok_file, ckpt = assets
    tracker = RecordingTracker()
    cfg = FinetuneConfig(lr=1e-3, epochs=2, seeds=[1, 2], max_seq_length=64, max_train_examples=64,
                         max_eval_examples=40, device="cpu")
    res = evaluate(["sst2", "stsb"], ckpt, tok_file, SAMPLE, tmp_path, cfg, tracker=tracker, progress=False)
    assert set(res.results) == {"sst2", "stsb"}
    table = res.table_md.read_text()
    assert "| sst2 |" in table and "| stsb |" in table and "**GLUE**" in table
    data = json.loads(res.table_json.read_text())
    # the one results schema (electra_pipeline.evaluation.results), shared with the pipeline's evaluate flow
    assert set(data) == {"label", "checkpoint", "glue_score", "tasks", "failed"}
    assert {"metrics", "score", "seeds", "model_dir"} <= set(data["tasks"]["sst2"])
    stsb = data["tasks"]["stsb"]["metrics"]
    assert data["glue_score"] == pytest.approx((data["tasks"]["sst2"]["metrics"]["accuracy"]
                                                + (stsb["pearson"] + stsb["spearman"]) / 2) / 2)
    # median over the two seeds, per metric
    seeds = res.results["sst2"].seed_metrics
    assert res.results["sst2"].metrics["accuracy"] == pytest.approx(np.median([m["accuracy"] for m in seeds.values()]))
    # GLUE leaderboard files
    sub = sorted(p.name for p in res.submission_dir.iterdir())
    assert sub == ["SST-2.tsv", "STS-B.tsv"]
    lines = (res.submission_dir / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 51 and all(x.split("\t")[1] in "01" for x in lines[1:])
    # one child run per task, and per seed inside it, with per-epoch dev metrics
    assert [c.name for c in tracker.children] == ["sst2", "stsb"]
    seed_runs = tracker.children[0].children
    assert [c.name for c in seed_runs] == ["sst2-seed1", "sst2-seed2"]
    assert [step for m, step in seed_runs[0].metrics if "dev/accuracy" in m] == [1, 2]
    assert any(p.name == "dev.jsonl" for p in seed_runs[0].artifacts)
    assert any("glue/score" in m for m, _ in tracker.metrics)
    # the saved model reproduces the reported dev predictions
    model, meta = load_finetuned(res.results["sst2"].model_dir)
    assert meta.task == "sst2" and meta.labels == ["negative", "positive"] and meta.max_seq_length == 64
    card = (res.results["sst2"].model_dir / "README.md").read_text()  # the model card
    assert card.startswith("---\n") and "| accuracy |" in card and "seed 1" in card and "negative, positive" in card
    front = yaml.safe_load(card.split("---\n")[1])  # Hugging Face metadata: the task metric with its value
    [result] = front["model-index"][0]["results"]
    assert front["datasets"] == ["glue"] and result["dataset"]["config"] == "sst2"
    assert result["metrics"][0]["type"] == "accuracy" and result["metrics"][0]["value"] == pytest.approx(
        seeds[res.results["sst2"].best_seed]["accuracy"], abs=1e-4)
    assert "| majority class |" in card  # the majority baseline beside the results, from the same dev examples
    write_model_card(res.results["sst2"].out_dir, {"random_init": {"accuracy": 12.5}})  # what the evaluate flow adds
    card = (res.results["sst2"].model_dir / "README.md").read_text()
    assert "| random init | majority class |" in card and "| 12.5 |" in card
    task = get_task("sst2")
    from electra_pipeline.evaluation.tasks.base import subset
    examples = subset(task.read(SAMPLE, "dev"), 40, 0)
    tok = Tokenizer.from_file(str(res.results["sst2"].model_dir / "tokenizer.json"))
    feats = task.featurize(examples, tok, 64, training=False)
    from electra_pipeline.evaluation.finetune.loop import run_model
    preds = task.predict(examples, feats, run_model(model, task, feats, 16, 0, torch.device("cpu"), "fp32"))
    rows = res.results["sst2"].predictions["dev"].read_text().splitlines()
    saved = {d["id"]: d["prediction"] for d in map(json.loads, rows)}
    assert preds == saved


def test_squad_finetune_end_to_end_on_the_sample(assets, tmp_path):
    tok_file, ckpt = assets
    cfg = FinetuneConfig(lr=1e-3, epochs=1, seeds=[1], max_seq_length=128, doc_stride=64, device="cpu")
    r = finetune("squad_v1", ckpt, tok_file, SAMPLE, tmp_path, cfg, progress=False)
    assert set(r.metrics) == {"exact_match", "f1"} and 0 <= r.metrics["f1"] <= 100
    preds = json.loads((tmp_path / "predictions" / "dev.json").read_text())
    assert len(preds) == 70 and all(isinstance(v, str) for v in preds.values())
    model, meta = load_finetuned(r.model_dir)
    assert meta.kind == "qa" and meta.doc_stride == 64 and not meta.answerability


def test_random_init_baseline_and_select_best(assets, tmp_path):
    tok_file, _ = assets
    cfg = FinetuneConfig(model_preset="tiny", epochs=2, seeds=[3], max_seq_length=32, max_train_examples=32,
                         max_eval_examples=16, select="best", predict_test=False, device="cpu")
    r = finetune("rte", None, tok_file, SAMPLE, tmp_path, cfg, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["checkpoint"] is None and saved["model"]["num_layers"] == 2 and saved["finetune"]["epochs"] == 2
    assert r.best_seed == 3 and "accuracy" in r.metrics


def test_lr_grid_is_chosen_on_held_out_training_examples(assets, tmp_path):
    """One first-seed run per rate on 80% of train, scored on the other 20%: dev never chooses."""
    tok_file, ckpt = assets
    cfg = FinetuneConfig(lr_grid=[1e-5, 3e-3], epochs=2, seeds=[1, 2], max_seq_length=32, max_train_examples=60,
                         max_eval_examples=16, predict_test=False, device="cpu")
    tracker = RecordingTracker()
    finetune("sst2", ckpt, tok_file, SAMPLE, tmp_path, cfg, tracker=tracker, progress=False)
    selection = json.loads((tmp_path / "metrics.json").read_text())["lr_selection"]
    scores = selection["heldout_scores"]
    assert set(scores) == {"1e-05", "0.003"} and selection["seed"] == 1
    assert selection["lr"] == float(max(scores, key=scores.get))
    assert json.loads((tmp_path / "config.json").read_text())["finetune"]["lr"] == selection["lr"]
    trials = [c for c in tracker.children if c.name.endswith("-heldout")]
    assert [c.params["heldout_examples"] for c in trials] == [12, 12]
    assert [c.name for c in tracker.children if not c.name.endswith("-heldout")] == ["sst2-seed1", "sst2-seed2"]


# --- CLI ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="electra")
    add_cli(p.add_subparsers(dest="command"))
    return p


def test_cli_flags_and_config_file(tmp_path):
    (tmp_path / "ft.yaml").write_text("lr: 3.0e-5\nepochs: 4\nseeds: [7, 8]\n")
    args = _parser().parse_args(["finetune", "mrpc", "--tokenizer", "t.json", "--config", str(tmp_path / "ft.yaml"),
                                 "--epochs", "2", "--layer-decay-form", "paper", "--max-seq-length", "none"])
    cfg = build_config(args)
    assert (cfg.lr, cfg.epochs, cfg.seeds, cfg.layer_decay_form, cfg.max_seq_length) == (3e-5, 2, [7, 8], "paper", None)
    args = _parser().parse_args(["evaluate", "sst2", "rte", "--tokenizer", "t.json", "--seeds", "1", "--lr", "-1"])
    assert args.tasks == ["sst2", "rte"]
    with pytest.raises(ConfigError, match=r"^finetune\.lr:"):
        build_config(args)
    (tmp_path / "bad.yaml").write_text("learning_rate: 1e-4\n")
    args = _parser().parse_args(["finetune", "sst2", "--tokenizer", "t.json", "--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(ConfigError, match="learning_rate: unknown config key"):
        build_config(args)


def test_cli_finetune_runs_and_reports(assets, tmp_path, capsys):
    tok_file, ckpt = assets
    args = _parser().parse_args(["finetune", "sst2", "--checkpoint", str(ckpt), "--tokenizer", str(tok_file),
                                 "--out", str(tmp_path / "ft"), "--seeds", "1", "--epochs", "1",
                                 "--max-train-examples", "32", "--max-eval-examples", "16", "--max-seq-length", "32",
                                 "--no-tracking", "--no-progress", "--device", "cpu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "sst2: median over 1 seed(s): accuracy=" in out and "SST-2" in out
    assert (tmp_path / "ft" / "model" / "task.json").is_file()
