"""WordPiece trained in-process on real text: fixed special ids, BERT templates, HF parity."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from electra_pipeline.data.corpus import CorpusConfig, ingest
from electra_pipeline.data.tokenizer import (
    SPECIAL_TOKENS,
    TokenizerConfig,
    load_tokenizer,
    tokenizer_stats,
    train_wordpiece,
)
from electra_pipeline.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "electra_pipeline" / "sample" / "corpus" / "sample.txt.gz"
VOCAB = 3000


def sample_docs() -> list[str]:
    return gzip.decompress(SAMPLE.read_bytes()).decode("utf-8").strip("\n").split("\n\n")


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    """Paragraphs of the last 10 sample articles: never used for training."""
    return [p for d in sample_docs()[-10:] for p in d.split("\n")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A corpus of the first ~1.2 MB of the sample: two books and 60 articles."""
    root = tmp_path_factory.mktemp("tok")
    docs = sample_docs()
    (root / "train.txt").write_text("\n\n".join(docs[3:5] + docs[7:67]) + "\n", encoding="utf-8")
    ingest([str(root / "train.txt")], root / "corpus", CorpusConfig(), progress=False)
    return root / "corpus"


@pytest.fixture(scope="module")
def tok_dir(corpus) -> Path:
    train_wordpiece(corpus, corpus.parent / "tokenizer", TokenizerConfig(vocab_size=VOCAB), progress=False)
    return corpus.parent / "tokenizer"


def test_saved_files_and_fixed_special_ids(tok_dir):
    assert sorted(p.name for p in tok_dir.iterdir()) == [
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "train_config.json", "vocab.txt"]
    tok = load_tokenizer(tok_dir)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.get_vocab_size() == VOCAB
    vocab_txt = (tok_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab_txt) == VOCAB and vocab_txt[:5] == list(SPECIAL_TOKENS)
    assert all(tok.token_to_id(t) == i for i, t in enumerate(vocab_txt))
    assert json.loads((tok_dir / "train_config.json").read_text())["config"]["vocab_size"] == VOCAB
    assert load_tokenizer(tok_dir / "tokenizer.json").to_str() == tok.to_str()


def test_training_is_reproducible(corpus, tmp_path):
    for name in ("a", "b"):
        train_wordpiece(corpus, tmp_path / name, TokenizerConfig(vocab_size=1500, max_chars=400_000), progress=False)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert (tmp_path / "a" / "vocab.txt").read_bytes() == (tmp_path / "b" / "vocab.txt").read_bytes()


def test_bert_templates_type_ids_and_decoder(tok_dir):
    tok = load_tokenizer(tok_dir)
    single = tok.encode("The Time Traveller smiled.")
    assert single.ids[0] == 2 and single.ids[-1] == 3 and set(single.type_ids) == {0}
    pair = tok.encode("Alice was tired.", "The Rabbit ran by.")
    first_sep = pair.ids.index(3)
    assert pair.ids[-1] == 3 and pair.ids.count(3) == 2
    assert pair.type_ids == [0] * (first_sep + 1) + [1] * (len(pair.ids) - first_sep - 1)
    # uncased + accents stripped by default; the WordPiece decoder joins ## pieces
    assert tok.decode(tok.encode("Café RÉSUMÉ of the Telephone").ids) == "cafe resume of the telephone"


def test_case_and_accent_switches(corpus, tmp_path):
    cased = load_tokenizer(train_wordpiece(corpus, tmp_path / "cased", TokenizerConfig(vocab_size=800, lowercase=False),
                                           progress=False))
    assert "The" in cased.encode("The").tokens
    accents = load_tokenizer(train_wordpiece(corpus, tmp_path / "acc", TokenizerConfig(vocab_size=800, strip_accents=False),
                                             progress=False))
    assert "é" in "".join(accents.encode("é").tokens)
    hf = json.loads((tmp_path / "acc" / "tokenizer_config.json").read_text())
    assert hf["do_lower_case"] is True and hf["strip_accents"] is False


def test_stats_on_held_out_text(tok_dir, held_out):
    stats = tokenizer_stats(load_tokenizer(tok_dir), held_out)
    assert stats["texts"] == len(held_out) and stats["tokens"] > stats["words"] > 1000
    assert stats["unk_rate"] < 0.01
    assert 1.0 < stats["tokens_per_word"] < 2.0  # a 3k vocab splits more than BERT's ~1.3


def test_transformers_loads_it_with_the_same_ids(tok_dir, tmp_path, held_out):
    transformers = pytest.importorskip("transformers")
    tok = load_tokenizer(tok_dir)
    texts = held_out[:20] + ["Naïve café owners in Zürich — 東京 [MASK] ﬁne\u00a0print"]
    pairs = list(zip(held_out[20:30], held_out[30:40]))
    # transformers 5 ignores BertTokenizerFast(vocab_file=...); the from_pretrained paths are what users call
    vocab_only = tmp_path / "vocab_only"
    vocab_only.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tok_dir / name, vocab_only / name)
    loaded = {"PreTrainedTokenizerFast(tokenizer_file)": transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tok_dir / "tokenizer.json"))}
    for cls in ("BertTokenizer", "BertTokenizerFast", "BertTokenizerLegacy", "AutoTokenizer"):
        if hasattr(transformers, cls):
            loaded[cls] = getattr(transformers, cls).from_pretrained(str(tok_dir))
    loaded["BertTokenizer(vocab.txt only)"] = transformers.BertTokenizer.from_pretrained(str(vocab_only))
    for name, hf in loaded.items():
        for text in texts:
            assert hf(text)["input_ids"] == tok.encode(text).ids, (name, text)
        if name.startswith("PreTrained"):
            continue  # no template/type-id info without the config files
        for a, b in pairs:
            ours, theirs = tok.encode(a, b), hf(a, b)
            assert theirs["input_ids"] == ours.ids and theirs["token_type_ids"] == ours.type_ids, name
        assert hf.pad_token_id == 0 and hf.mask_token_id == 4 and hf.cls_token_id == 2


def test_train_from_raw_text_files(tmp_path):
    docs = sample_docs()[7:20]
    (tmp_path / "a.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    path = train_wordpiece([tmp_path / "a.txt"], tmp_path / "tok", TokenizerConfig(vocab_size=600), progress=False)
    assert load_tokenizer(path).get_vocab_size() == 600


def test_load_errors_name_the_file(tmp_path, tok_dir):
    with pytest.raises(DataError, match="nowhere/tokenizer.json: tokenizer not found"):
        load_tokenizer(tmp_path / "nowhere" / "tokenizer.json")
    (tmp_path / "foreign.json").write_text('{"hello": "world"}')
    with pytest.raises(DataError, match=r"foreign\.json: not a tokenizers tokenizer\.json"):
        load_tokenizer(tmp_path / "foreign.json")
    # a real tokenizer with other special ids (e.g. [UNK] first, like many BERT vocabularies)
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordPiece({"[UNK]": 0, "[PAD]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5},
                               unk_token="[UNK]")).save(str(tmp_path / "other.json"))
    with pytest.raises(DataError, match=r"other\.json: \[PAD\] has id 1, expected 0"):
        load_tokenizer(tmp_path / "other.json")


def test_failed_training_leaves_the_output_untouched(tmp_path, tok_dir):
    out = tmp_path / "tok"
    shutil.copytree(tok_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty.txt: empty file"):
        train_wordpiece([tmp_path / "empty.txt"], out, TokenizerConfig(vocab_size=600), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "tok"]


def test_config_errors_name_the_field():
    for kwargs, field in [({"vocab_size": 3}, "vocab_size"), ({"min_frequency": -1}, "min_frequency"),
                          ({"max_chars": 0}, "max_chars"), ({"lowercase": "no"}, "lowercase"),
                          ({"strip_accents": 1}, "strip_accents")]:
        with pytest.raises(ConfigError, match=f"tokenizer.{field}"):
            TokenizerConfig(**kwargs)


def test_cli_registers_and_runs(corpus, tmp_path, capsys):
    import argparse

    from electra_cli import tokenizer as tokenizer_cli

    parser = argparse.ArgumentParser(prog="electra")
    tokenizer_cli.add_cli(parser.add_subparsers())
    args = parser.parse_args(["tokenizer", str(corpus), "--out", str(tmp_path / "t"), "--vocab-size", "700",
                              "--max-chars", "300000", "--no-progress"])
    assert args.func(args) == 0
    assert "700 tokens" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["tokenizer", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--vocab-size", "--min-frequency", "--cased", "--keep-accents", "--max-chars"):
        assert flag in help_text


def test_a_size_other_than_asked_is_reported_and_noise_refused(tmp_path, capsys):
    """The size note; binary input is refused before training (ingestion's text check)."""
    from electra_cli import main
    from electra_pipeline.data.tokenizer import TokenizerConfig, train_wordpiece
    from electra_pipeline.errors import DataError

    (tmp_path / "tiny.txt").write_text("the cat sat on the mat and the cat sat again\n" * 50)
    assert main(["tokenizer", str(tmp_path / "tiny.txt"), "-o", str(tmp_path / "tok"), "--vocab-size", "5000",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note: asked for 5,000 tokens, got" in err and "fewer distinct pieces" in err
    (tmp_path / "noise.txt").write_bytes(bytes(range(256)) * 64)
    with pytest.raises(DataError, match="noise.txt: not text"):
        train_wordpiece(tmp_path / "noise.txt", tmp_path / "tok2", TokenizerConfig(vocab_size=100), progress=False)
