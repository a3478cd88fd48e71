"""Continuing pre-training from a checkpoint (`--init-from`): a transformers ELECTRA made here,
with BERT's vocabulary layout ([UNK] [CLS] [SEP] [MASK] at 100-103), computes the same function
once loaded, the trainer starts from it, and bad sources are one-line errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import electra_cli as cli
from electra_pipeline.data.tokenizer import SPECIAL_TOKENS
from electra_pipeline.modeling import objectives, warmstart
from electra_pipeline.modeling.config import TrainConfig
from electra_pipeline.training.pretrainer import ElectraPretrainer

transformers = pytest.importorskip("transformers")

TEXT = "The river ran quietly past the old mill, and the miller watched it from his door."


@pytest.fixture(scope="module")
def corpus_and_vocab(tmp_path_factory) -> tuple[Path, list[str]]:
    """The shipped sample as a corpus, and a WordPiece vocabulary of it (no special tokens)."""
    from conftest import SAMPLE_CORPUS

    from electra_pipeline.data import corpus, tokenizer

    root = tmp_path_factory.mktemp("ws")
    corpus.ingest([str(SAMPLE_CORPUS)], root / "corpus", corpus.CorpusConfig(), progress=False)
    lines = gzip.decompress(SAMPLE_CORPUS.read_bytes()).decode().splitlines()[:3000]
    tok = tokenizer.fit_wordpiece([TEXT] * 3 + [p for p in lines if p], tokenizer.TokenizerConfig(vocab_size=600))
    by_id = sorted(tok.get_vocab(), key=tok.get_vocab().get)
    return root / "corpus", [t for t in by_id if t not in SPECIAL_TOKENS]


@pytest.fixture(scope="module")
def source(tmp_path_factory, corpus_and_vocab) -> Path:
    """A Hugging Face ELECTRA discriminator + generator/ in Google's layout: vocab.txt with [PAD]
    at 0, [unused*] after it and [UNK] [CLS] [SEP] [MASK] at 100-103."""
    _, words = corpus_and_vocab
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    d = tmp_path_factory.mktemp("src") / "electra"
    torch.manual_seed(0)
    kw = dict(vocab_size=len(vocab), embedding_size=32, num_hidden_layers=2, max_position_embeddings=128,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        hidden_size=64, num_attention_heads=2, intermediate_size=128, **kw)).eval()
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        hidden_size=32, num_attention_heads=1, intermediate_size=64, **kw)).eval()
    with torch.no_grad():  # trained ELECTRA shares one embedding table; random weights get distinct rows
        gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
        gen.generator_lm_head.bias.normal_()
    disc.save_pretrained(d)
    gen.save_pretrained(d / "generator")
    (d / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return d


def _loaded(source: Path, objective: str = "electra") -> tuple[ElectraPretrainer, warmstart.Source]:
    from electra_pipeline.modeling import presets

    src = warmstart.find_source(source)
    cfg = presets.resolve("tiny", overrides={"init_from": str(source), "train": {"objective": objective}})
    model = ElectraPretrainer(cfg.model, TrainConfig(objective=objective, temperature=1.0, disc_weight=50.0))
    warmstart.load_weights(model, src)
    return model.eval(), src


def test_special_tokens_move_to_0_4_and_nothing_else(source: Path) -> None:
    src = warmstart.find_source(source)
    perm = src.permutation
    assert [src.vocab[perm[i]] for i in range(5)] == list(SPECIAL_TOKENS)
    assert sorted(perm) == list(range(len(src.vocab)))
    moved = [i for i, old in enumerate(perm) if i != old]
    assert sorted(moved) == [1, 2, 3, 4, 100, 101, 102, 103]
    tok = src.tokenizer()
    ids = tok.encode(TEXT).ids
    assert ids[0] == 2 and ids[-1] == 3 and 1 not in ids  # [CLS] ... [SEP], every word known


def test_loaded_model_computes_what_transformers_computes(source: Path) -> None:
    """Our ids through our model = the checkpoint's ids through transformers, for the
    discriminator's logits and the generator's (columns in our order)."""
    model, src = _loaded(source)
    perm = torch.tensor(src.permutation)
    ours = torch.tensor([src.tokenizer().encode(TEXT).ids])
    theirs = perm[ours]
    disc = transformers.ElectraForPreTraining.from_pretrained(source).eval()
    gen = transformers.ElectraForMaskedLM.from_pretrained(source / "generator").eval()
    with torch.no_grad():
        assert torch.allclose(model.discriminator(ours), disc(theirs).logits, atol=1e-4)
        pos = torch.arange(ours.shape[1])[None]
        got = model.generator(ours, None, None, pos)
        assert torch.allclose(got, gen(theirs).logits[..., perm], atol=1e-4)


def test_first_step_losses_equal_loading_the_weights_directly(source: Path) -> None:
    """The joint step's generator and discriminator losses from `load_weights` equal those of
    modules built from the same files by hand (hf loaders + the row swap)."""
    from electra_pipeline.modeling import hf

    model, src = _loaded(source)
    perm = torch.tensor(src.permutation)
    direct = ElectraPretrainer(model.config, model.train_cfg).eval()
    disc_sd = hf.load_discriminator(source).state_dict()
    disc_sd["electra.embeddings.word_embeddings.weight"] = disc_sd["electra.embeddings.word_embeddings.weight"][perm]
    direct.discriminator.load_state_dict(disc_sd)
    gen_sd = hf.load_generator(source / "generator").state_dict()
    gen_sd["head.bias"] = gen_sd["head.bias"][perm]
    direct.generator.load_state_dict({k: v for k, v in gen_sd.items() if not k.startswith("electra.embeddings.")},
                                     strict=False)
    ids = torch.tensor([src.tokenizer().encode(TEXT).ids] * 4)
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    losses = []
    for m in (model, direct):
        masked = m.mask(batch, torch.arange(5), 4, torch.Generator().manual_seed(7))
        out = m(batch, masked, torch.Generator().manual_seed(8))
        losses.append((float(out.metrics["loss/gen"]), float(out.metrics["loss/disc"])))
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert isinstance(out, objectives.StepOutput)


def test_mlm_objective_takes_the_discriminator_encoder(source: Path) -> None:
    model, _ = _loaded(source, "mlm")
    disc = transformers.ElectraForPreTraining.from_pretrained(source)
    ours = model.generator.electra.layers[0].ffn.intermediate.weight
    assert torch.equal(ours, disc.electra.encoder.layer[0].intermediate.dense.weight)


def test_cli_continues_pretraining_from_the_checkpoint(source: Path, corpus_and_vocab, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """tokenizer --from -> examples -> pretrain --init-from: sizes and vocabulary from the
    checkpoint, lineage in summary.json, weights start from the source."""
    corpus, _ = corpus_and_vocab
    assert cli.main(["tokenizer", "--from", str(source), "-o", str(tmp_path / "tok")]) == 0
    assert cli.main(["examples", "--corpus", str(corpus), "--tokenizer", str(tmp_path / "tok"), "-o",
                     str(tmp_path / "ex"), "--seq-len", "64", "--num-proc", "1", "--no-progress"]) == 0
    run = tmp_path / "run"
    args = ["pretrain", "--preset", "tiny", "--data", str(tmp_path / "ex"), "--tokenizer", str(tmp_path / "tok"),
            "--init-from", str(source), "--output-dir", str(run), "--train.seq_len", "64", "--train.batch_size", "4",
            "--train.max_steps", "2", "--train.lr", "1e-9", "--train.warmup_steps", "1", "--tracking.enabled", "false",
            "--no-progress"]
    assert cli.main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["init"]["from"] == str(source) and len(summary["init"]["sha256"]) == 64
    assert "generator" in summary["init"]["generator"]
    card = (run / "discriminator" / "README.md").read_text()  # the model card, Hugging Face metadata on top
    assert f"started from: `{source}`" in card
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers" and front["datasets"] == ["sample.txt.gz"]  # the corpus manifest's
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"]["hidden_size"], cfg["model"]["generator_fraction"], cfg["model"]["vocab_size"]) == (
        64, 0.5, len(warmstart.find_source(source).vocab))
    got = load_file(str(run / "discriminator" / "model.safetensors"))["electra.encoder.layer.1.output.dense.weight"]
    want = load_file(str(source / "model.safetensors"))["electra.encoder.layer.1.output.dense.weight"]
    assert torch.allclose(got, want, atol=1e-5)
    # the held-out figures show where the run started: here (lr 1e-9) where it ended
    assert cli.main(["intrinsic", str(run), "--max-rows", "64"]) == 0
    result = json.loads((run / "intrinsic.json").read_text())
    start, end = result["unigram"]["start"]["auc"], result["unigram"]["pretrained"]["auc"]
    assert start == pytest.approx(end, abs=1e-3) and "started from ROC-AUC" in capsys.readouterr().out

    # a run of ours continues too, optionally with its AdamW moments
    again = [str(tmp_path / "run2") if a == str(run) else str(run) if a == str(source) else a for a in args]
    assert cli.main(again + ["--train.init_optimizer", "true"]) == 0
    init = json.loads((tmp_path / "run2" / "summary.json").read_text())["init"]
    assert init["from"] == str(run) and init["optimizer"].endswith("step-00000002")
    from electra_pipeline.training import checkpoint
    from electra_pipeline.training.optim import build_optimizer

    model, _ = _loaded(source)
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    checkpoint.load_optimizer_moments(checkpoint.list_checkpoints(run)[-1], opt)
    moments = load_file(str(checkpoint.list_checkpoints(run)[-1] / "optimizer.safetensors"))
    assert torch.equal(opt.state[opt.param_groups[0]["params"][0]]["exp_avg"], moments["state.0.exp_avg"])

    # bad input: one line, exit 2, nothing written
    import shutil

    short = tmp_path / "short_vocab"
    shutil.copytree(source, short)
    (short / "vocab.txt").write_text("".join(t + "\n" for t in (source / "vocab.txt").read_text().split()[:-5]))
    capsys.readouterr()
    for extra, message in [
        (["--init-from", str(tmp_path / "nowhere")], "nowhere: init_from: not found"),
        (["--model.hidden_size", "128"], "model.hidden_size: 128 contradicts the checkpoint"),
        (["--resume", str(run)], "drop --init-from or --resume"),
        (["--init-from", str(tmp_path / "tok")], "not an ELECTRA checkpoint"),
        (["--train.init_optimizer", "true"], "train.init_optimizer: continues the optimizer of a run directory"),
        (["--init-from", str(short)], "but the checkpoint's vocabulary has"),
    ]:
        bad = [str(tmp_path / "bad") if a == str(run) else a for a in args] + extra
        assert cli.main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not (tmp_path / "bad").exists()


def test_a_tokenizer_other_than_the_checkpoints_is_refused(source: Path, tmp_path: Path) -> None:
    from electra_pipeline.data import tokenizer
    from electra_pipeline.errors import ConfigError
    from electra_pipeline.modeling import presets

    src = warmstart.find_source(source)
    tok = src.tokenizer()
    vocab = tok.get_vocab()
    swapped = dict(vocab)
    a, b = sorted(vocab, key=vocab.get)[10:12]
    swapped[a], swapped[b] = vocab[b], vocab[a]
    cfg = presets.resolve("tiny", overrides={"init_from": str(source)})
    warmstart.check_tokenizer(cfg, vocab, Path("tok.json"))
    with pytest.raises(ConfigError, match="not the vocabulary of"):
        warmstart.check_tokenizer(cfg, swapped, Path("tok.json"))
    assert np.array_equal(sorted(vocab.values()), np.arange(len(vocab)))
    assert tokenizer.load_tokenizer(warmstart.save_tokenizer(source, tmp_path / "t")).get_vocab() == vocab


def test_vocabulary_extension_adds_costly_words_initialised_from_their_pieces(source: Path, corpus_and_vocab,
                                                                                tmp_path: Path) -> None:
    from electra_pipeline.data.tokenizer import load_tokenizer
    from electra_pipeline.modeling import presets

    corpus, _ = corpus_and_vocab
    assert cli.main(["tokenizer", "--from", str(source), "--extend-vocab", "20", str(corpus), "-o",
                     str(tmp_path / "tok")]) == 0
    ext = warmstart.extension_of(tmp_path / "tok")
    src = warmstart.find_source(source)
    base = src.tokenizer()
    tok = load_tokenizer(tmp_path / "tok")
    V = len(src.vocab)
    assert ext["base_vocab_size"] == V and len(ext["added"]) == 20 and tok.get_vocab_size() == V + 20
    assert ext["tokens_per_word"]["after"] < ext["tokens_per_word"]["before"]
    for i, (word, pieces) in enumerate(ext["added"]):  # old ids kept, each word one new token
        assert tok.token_to_id(word) == V + i and base.encode(word, add_special_tokens=False).ids == pieces
    assert all(tok.token_to_id(t) == i for t, i in base.get_vocab().items())

    cfg = presets.resolve("tiny", overrides={"init_from": str(source), "tokenizer": str(tmp_path / "tok")})
    assert cfg.model.vocab_size == V + 20
    warmstart.check_tokenizer(cfg, tok.get_vocab(), tmp_path / "tok" / "tokenizer.json")
    model = ElectraPretrainer(cfg.model, TrainConfig())
    notes = warmstart.load_weights(model, src, ext)
    assert "20 added words" in notes["vocabulary"]
    emb = model.discriminator.electra.embeddings.word_embeddings.weight
    word, pieces = ext["added"][0]
    assert torch.allclose(emb[V], emb[torch.tensor(pieces)].mean(0))
    bias = model.generator.head.bias
    assert torch.allclose(bias[V], bias[torch.tensor(pieces)].mean(0))
    assert cli.main(["tokenizer", "--from", str(source), "--extend-vocab", "3", "-o", str(tmp_path / "t2")]) == 2


def test_a_shallower_generator_is_adopted_as_generator_layers(source: Path, tmp_path: Path) -> None:
    """A checkpoint whose generator has fewer layers than its discriminator continues with
    `model.generator_layers` set to that depth, and its weights load."""
    import shutil

    from electra_pipeline.errors import ConfigError
    from electra_pipeline.modeling import presets

    shallow = tmp_path / "shallow"
    shutil.copytree(source, shallow, ignore=shutil.ignore_patterns("generator"))
    gen = transformers.ElectraForMaskedLM.from_pretrained(source / "generator")
    gen.electra.encoder.layer = gen.electra.encoder.layer[:1]
    gen.config.num_hidden_layers = 1
    gen.save_pretrained(shallow / "generator")
    cfg = presets.resolve("tiny", overrides={"init_from": str(shallow)})
    assert (cfg.model.num_layers, cfg.model.generator_layers, cfg.model.generator().num_layers) == (2, 1, 1)
    model = ElectraPretrainer(cfg.model, cfg.train)
    warmstart.load_weights(model, warmstart.find_source(shallow))
    assert len(model.generator.electra.layers) == 1
    with pytest.raises(ConfigError, match="model.generator_layers"):
        presets.resolve("tiny", overrides={"init_from": str(shallow), "model": {"generator_layers": "2"}})
