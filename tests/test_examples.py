"""Packed pre-training examples: the reader's format, ELECTRA's packing rules, determinism."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from electra_pipeline.data.corpus import CorpusConfig, ingest
from electra_pipeline.data.examples import ExamplesConfig, build_examples
from electra_pipeline.data.packing import _Encoder, _pack, _sentence_ends, _SentenceMarks
from electra_pipeline.data.tokenizer import TokenizerConfig, load_tokenizer, train_wordpiece
from electra_pipeline.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "electra_pipeline" / "sample" / "corpus" / "sample.txt.gz"
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


def sample_docs() -> list[str]:
    return gzip.decompress(SAMPLE.read_bytes()).decode("utf-8").strip("\n").split("\n\n")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, tokenizer) from ~1.2 MB of the sample, in 0.25 MB row groups (several work units)."""
    root = tmp_path_factory.mktemp("real")
    docs = sample_docs()
    (root / "a.txt").write_text("\n\n".join(docs[4:7] + docs[7:70]) + "\n", encoding="utf-8")
    ingest([str(root / "a.txt")], root / "corpus", CorpusConfig(row_group_mb=0.25), progress=False)
    train_wordpiece(root / "corpus", root / "tok", TokenizerConfig(vocab_size=2000), progress=False)
    return root / "corpus", root / "tok"


@pytest.fixture(scope="module")
def real_examples(real, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ex") / "examples"
    build_examples(real[0], real[1], out, ExamplesConfig(seq_len=64, examples_per_shard=1000, num_proc=1),
                   progress=False)
    return out


def rows_of(out: Path) -> np.ndarray:
    meta = json.loads((out / "meta.json").read_text())
    return np.concatenate([np.load(out / s["file"]) for s in meta["shards"]])


def test_output_matches_the_reader_contract(real, real_examples):
    out, tok_file = real_examples, real[1] / "tokenizer.json"
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta) == {"format", "seq_len", "vocab_size", "num_examples", "shards", "special_ids",
                         "tokenizer_sha256", "seed", "holdout", "stats"}
    assert meta["format"] == "electra-examples/1" and meta["seq_len"] == 64 and meta["vocab_size"] == 2000
    assert meta["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert meta["tokenizer_sha256"] == hashlib.sha256(tok_file.read_bytes()).hexdigest()
    sizes = [s["num_examples"] for s in meta["shards"]]
    assert [s["file"] for s in meta["shards"]] == [f"shard-{i:05d}.npy" for i in range(len(sizes))]
    assert len(sizes) >= 3 and all(n == 1000 for n in sizes[:-1]) and 0 < sizes[-1] <= 1000
    assert sum(sizes) == meta["num_examples"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["meta.json", "config.json", "length_hist.png", "holdout.npy"] + [s["file"] for s in meta["shards"]])
    assert (out / "length_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "num_proc" not in json.loads((out / "config.json").read_text())["config"]

    rows = rows_of(out)
    assert rows.dtype == np.uint16 and rows.shape == (meta["num_examples"], 64)
    lengths = (rows != PAD).sum(1)
    assert (rows[:, 0] == CLS).all()
    for row, n in zip(rows, lengths):
        assert (row[n:] == PAD).all() and (row[:n] != PAD).all()  # padding only at the end
        assert row[n - 1] == SEP and (row[:n] == SEP).sum() in (1, 2)
        assert not np.isin(row[1:n], [CLS, MASK]).any()  # content never holds special ids
    stats = meta["stats"]
    assert stats["examples"] == meta["num_examples"] and sum(stats["length_histogram"]) == len(rows)
    assert np.bincount(lengths, minlength=65).tolist() == stats["length_histogram"]
    content = int(lengths.sum()) - len(rows) - int((rows == SEP).sum())
    assert content + stats["truncated_tokens"] == stats["tokens"]  # every token is placed or counted as cut
    single = int(((rows == SEP).sum(1) == 1).sum())
    assert single == stats["single_segment_examples"] and 0.05 < single / len(rows) < 0.6  # short L: long sentences fill A

    # the trainer's reader accepts it and derives the segments the way the format says
    from electra_pipeline.data.batches import ExampleShards, derive_segments

    shards = ExampleShards(out)
    assert len(shards) == len(rows)
    batch = shards.batch(np.arange(5))
    assert (batch.input_ids.numpy() == rows[:5]).all()
    types_, mask = derive_segments(rows[:5].astype(np.int64), SEP, PAD)
    first_sep = np.argmax(rows[:5] == SEP, axis=1)
    for i in range(5):
        assert (types_[i, : first_sep[i] + 1] == 0).all() and (types_[i, first_sep[i] + 1: lengths[i]] == 1).all()
    assert (mask == (rows[:5] != PAD)).all()


MARKERS = [chr(0x4E00 + k) for k in range(40)]  # CJK ideographs: always single tokens after BERT normalisation


@pytest.fixture(scope="module")
def marked(tmp_path_factory) -> tuple[Path, Path]:
    """40 documents of real sentences where every word is followed by its document's marker."""
    root = tmp_path_factory.mktemp("marked")
    rng = random.Random(0)
    docs = []
    for k, doc in enumerate(sample_docs()[7:47]):
        paras = doc.split("\n")[: rng.randint(1, 5)]  # documents of very different lengths
        docs.append("\n".join(" ".join(f"{w} {MARKERS[k]}" for w in p.split()) for p in paras))
    (root / "m.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    ingest([str(root / "m.txt")], root / "corpus", CorpusConfig(row_group_mb=0.1, dedup_paragraphs=False),
           progress=False)
    train_wordpiece(root / "corpus", root / "tok", TokenizerConfig(vocab_size=1500), progress=False)
    return root / "corpus", root / "tok"


@pytest.mark.parametrize("split_sentences", [True, False])
def test_documents_never_cross(marked, tmp_path, split_sentences):
    corpus, tok_dir = marked
    tok = load_tokenizer(tok_dir)
    marker_ids = [tok.token_to_id(m) for m in MARKERS]
    assert None not in marker_ids and len(set(marker_ids)) == len(MARKERS)
    cfg = ExamplesConfig(seq_len=48, split_sentences=split_sentences, short_seq_prob=0.2, num_proc=1)
    build_examples(corpus, tok_dir, tmp_path / "ex", cfg, progress=False)
    rows = rows_of(tmp_path / "ex")
    per_row = [set(np.intersect1d(row, marker_ids).tolist()) for row in rows]
    assert all(len(m) == 1 for m in per_row), "an example mixes documents"
    assert len(set().union(*per_row)) == len(MARKERS)  # and every document was used


def test_worker_pool_finishes_under_a_parent_sigterm_handler(real, tmp_path):
    """Prefect installs a SIGTERM handler in flow runs; forked workers inherited it and hung the
    pipeline at pool shutdown. Here the parent's handler ignores SIGTERM outright."""
    import subprocess
    import sys

    script = (
        "import signal, sys\n"
        "from pathlib import Path\n"
        "from electra_pipeline.data.examples import ExamplesConfig, build_examples\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)\n"
        "meta = build_examples(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),\n"
        "                      ExamplesConfig(seq_len=64, num_proc=2), progress=False)\n"
        "print(meta['num_examples'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(real[0]), str(real[1]), str(tmp_path / "ex")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 0 and (tmp_path / "ex" / "meta.json").is_file()


def test_same_seed_same_bytes_whatever_num_proc(real, tmp_path):
    corpus, tok = real
    for n in (1, 2):
        build_examples(corpus, tok, tmp_path / f"p{n}", ExamplesConfig(seq_len=64, examples_per_shard=700, num_proc=n),
                       progress=False)
    files = sorted(p.name for p in (tmp_path / "p1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "p2").iterdir())
    for name in files:
        assert (tmp_path / "p1" / name).read_bytes() == (tmp_path / "p2" / name).read_bytes(), name
    build_examples(corpus, tok, tmp_path / "s1", ExamplesConfig(seq_len=64, examples_per_shard=700, seed=1, num_proc=2),
                   progress=False)
    assert (tmp_path / "s1" / "shard-00000.npy").read_bytes() != (tmp_path / "p1" / "shard-00000.npy").read_bytes()


def reference_examples(docs: list[list[list[int]]], L: int, rng: random.Random) -> list[list[int]]:
    """google-research/electra build_pretraining_dataset.py ExampleBuilder, line for line, with
    sentences given as token lists, a blank line after each document and `random` -> rng."""
    out: list[list[int]] = []
    state = {"sentences": [], "length": 0, "target": L}

    def create_example() -> None:
        if rng.random() < 0.1:
            first_segment_target_length = 100000
        else:
            first_segment_target_length = (state["target"] - 3) // 2
        first_segment, second_segment = [], []
        for sentence in state["sentences"]:
            if (len(first_segment) == 0 or len(first_segment) + len(sentence) < first_segment_target_length
                    or (len(second_segment) == 0 and len(first_segment) < first_segment_target_length
                        and rng.random() < 0.5)):
                first_segment += sentence
            else:
                second_segment += sentence
        first_segment = first_segment[:L - 2]
        second_segment = second_segment[:max(0, L - len(first_segment) - 3)]
        state["sentences"], state["length"] = [], 0
        if rng.random() < 0.05:
            state["target"] = rng.randint(5, L)
        else:
            state["target"] = L
        input_ids = [CLS] + first_segment + [SEP]
        if second_segment:
            input_ids += second_segment + [SEP]
        out.append(input_ids + [0] * (L - len(input_ids)))

    def add_line(sentence: list[int] | None) -> None:
        if sentence is None:  # empty lines separate docs
            if state["length"] != 0:
                create_example()
            return
        state["sentences"].append(sentence)
        state["length"] += len(sentence)
        if state["length"] >= state["target"]:
            create_example()

    for doc in docs:
        for sentence in doc:
            add_line(sentence)
        add_line(None)
    return out


@pytest.mark.parametrize("L", [16, 128])
def test_packing_matches_the_reference_builder(L):
    gen = random.Random(L)
    docs = [[[gen.randint(5, 999) for _ in range(gen.choice([1, 3, 8, 20, 40, 150]))]
             for _ in range(gen.randint(1, 30))] for _ in range(300)]
    tokens = np.array([t for d in docs for s in d for t in s], dtype=np.int32)
    lengths = [len(s) for d in docs for s in d]
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    first, last, i = [], [], 0
    for d in docs:
        first.append(i)
        i += len(d)
        last.append(i)
    rows, row_lengths, stats = _pack(tokens, starts, ends, first, last, L, ExamplesConfig(num_proc=1),
                                     random.Random(7))
    expected = np.array(reference_examples(docs, L, random.Random(7)))
    assert rows.shape == expected.shape and (rows == expected).all()
    assert (row_lengths == (expected != 0).sum(1)).all() and stats["examples"] == len(expected)


def test_fast_encoder_gives_the_tokenizers_ids(real, tmp_path):
    corpus, tok_dir = real
    texts = [p for d in sample_docs()[200:215] for p in d.split("\n")] + [
        "Literal [MASK] and [CLS] tokens stay text.", "Tabs\tand\u00a0odd   spacing", "Ærøskøbing café, 東京",
        "", "UPPER lower MiXeD 12,345.67"]
    cased = train_wordpiece(corpus, tmp_path / "cased", TokenizerConfig(vocab_size=600, lowercase=False), progress=False)
    def split(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        return [a.tolist() for a in np.split(flat, np.cumsum(lengths)[:-1])]

    for path in (tok_dir / "tokenizer.json", cased):
        enc = _Encoder(str(path), batch_size=64)
        assert enc.split
        tok = load_tokenizer(path)
        tok.encode_special_tokens = True
        expected = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        assert split(*enc(texts)) == expected
        assert split(*enc(texts[::-1])) == expected[::-1]  # again, from the warm table
        small = _Encoder(str(path))
        small.max_cached = 50  # a full table is emptied before new pieces go in: same ids
        assert split(*small(texts[:20])) == expected[:20] and split(*small(texts[20:])) == expected[20:]
        assert len(small.index) == len(set(small._PIECES.findall(" ".join(t for t in texts[20:] if t.isprintable())))
                                       | {t for t in texts[20:] if not t.isprintable()})
    ids, _ = _Encoder(str(tok_dir / "tokenizer.json"))(["Literal [MASK] and [CLS] tokens stay text."])
    assert MASK not in ids and CLS not in ids


def test_sentence_splitter(real):
    tok = load_tokenizer(real[1])
    tok.encode_special_tokens = True
    text = 'Mr. Smith went to Washington. He arrived late (very late.) Then "e.g. this" ended! Did it? Yes.'
    ids = np.array(tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)
    ends = _sentence_ends(ids, np.array([len(ids)]), _SentenceMarks.of(tok))
    pieces = [tok.decode(ids[a:b].tolist()) for a, b in zip([0, *ends[:-1]], ends)]
    assert [re.sub(r"\s", "", p) for p in pieces] == [
        "mr.smithwenttowashington.", "hearrivedlate(verylate.)", 'then"e.g.this"ended!', "didit?", "yes."]


def test_errors_name_the_input_and_leave_the_output_untouched(real, real_examples, tmp_path):
    corpus, tok = real
    out = tmp_path / "ex"
    shutil.copytree(real_examples, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg = ExamplesConfig(seq_len=64, num_proc=1)
    with pytest.raises(DataError, match="nope: no such corpus"):
        build_examples(tmp_path / "nope", tok, out, cfg, progress=False)
    with pytest.raises(DataError, match="missing: tokenizer not found"):
        build_examples(corpus, tmp_path / "missing", out, cfg, progress=False)
    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"body": ["text in the wrong column"]}), tmp_path / "bad" / "shard-00000.parquet")
    with pytest.raises(DataError, match="shard-00000.parquet: no 'text' column"):
        build_examples(tmp_path / "bad", tok, out, cfg, progress=False)
    (tmp_path / "empty").mkdir()
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty" / "shard-00000.parquet")
    with pytest.raises(DataError, match="no examples"):  # fails after the workers ran
        build_examples(tmp_path / "empty", tok, out, cfg, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "empty", "ex"]  # no temp dirs left


def test_statistics_and_histogram_go_to_the_tracker(real, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from electra_pipeline.tracking import MLflowTracker, finished

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with finished(MLflowTracker.start(tracking_uri=uri, experiment="examples-test")) as tracker:
        meta = build_examples(real[0], real[1], tmp_path / "ex", ExamplesConfig(seq_len=32, num_proc=1),
                              progress=False, tracker=tracker)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.data.metrics["data/examples"] == meta["num_examples"]
    assert run.data.metrics["data/tokens"] == meta["stats"]["tokens"]
    assert [f.path for f in client.list_artifacts(tracker.run_id, "data")] == ["data/length_hist.png"]


def test_config_errors_name_the_field():
    for kwargs, field in [({"seq_len": 4}, "seq_len"), ({"num_proc": 0}, "num_proc"),
                          ({"short_seq_prob": 1.5}, "short_seq_prob"), ({"examples_per_shard": 0}, "examples_per_shard"),
                          ({"seed": -1}, "seed")]:
        with pytest.raises(ConfigError, match=f"examples.{field}"):
            ExamplesConfig(**kwargs)


def test_cli_pipeline_corpus_tokenizer_examples(tmp_path, capsys):
    import argparse

    from electra_cli import corpus, examples, tokenizer

    parser = argparse.ArgumentParser(prog="electra")
    sub = parser.add_subparsers()
    for module in (corpus, tokenizer, examples):
        module.add_cli(sub)
    (tmp_path / "a.txt").write_text("\n\n".join(sample_docs()[7:30]) + "\n", encoding="utf-8")
    for argv in (["corpus", str(tmp_path / "a.txt"), "-o", str(tmp_path / "c"), "--no-progress"],
                 ["tokenizer", str(tmp_path / "c"), "-o", str(tmp_path / "t"), "--vocab-size", "800", "--no-progress"],
                 ["examples", "--corpus", str(tmp_path / "c"), "--tokenizer", str(tmp_path / "t"), "-o",
                  str(tmp_path / "e"), "--seq-len", "64", "--num-proc", "2", "--no-progress"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert "rows of 64" in capsys.readouterr().out
    assert json.loads((tmp_path / "e" / "meta.json").read_text())["num_examples"] > 100
    with pytest.raises(SystemExit):
        parser.parse_args(["examples", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--corpus", "--tokenizer", "--seq-len", "--seed", "--num-proc", "--examples-per-shard",
                 "--no-sentence-split"):
        assert flag in help_text
