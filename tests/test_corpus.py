"""Corpus ingestion on real text: formats, cleaning, exact dedup, errors, atomic output."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from electra_pipeline.data.corpus import CorpusConfig, Manifest, clean_paragraph, ingest, iter_documents
from electra_pipeline.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "electra_pipeline" / "sample" / "corpus" / "sample.txt.gz"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_docs(path: Path) -> list[list[str]]:
    """Documents of a text corpus file: paragraphs per line, blank line between documents."""
    docs, cur = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                cur.append(line)
            elif cur:
                docs.append(cur)
                cur = []
    if cur:
        docs.append(cur)
    return docs


@pytest.fixture(scope="module")
def docs() -> list[list[str]]:
    """Two short books and 20 Wikipedia articles from the shipped sample (~500 KB)."""
    all_docs = read_docs(SAMPLE)
    return [all_docs[4], all_docs[6]] + all_docs[7:27]


def write_text(path: Path, docs: list[list[str]]) -> Path:
    text = "\n\n".join("\n".join(d) for d in docs) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def corpus_texts(out: Path) -> list[str]:
    return list(iter_documents(out))


RAW = CorpusConfig(min_line_chars=0, dedup_documents=False, dedup_paragraphs=False)


def test_round_trip_keeps_documents_and_records_the_sources(tmp_path, docs):
    src = write_text(tmp_path / "part.txt.gz", docs)
    m = ingest([str(src)], tmp_path / "corpus", RAW, progress=False)
    expected = ["\n".join(clean_paragraph(p) for p in d) for d in docs]  # only a few LRM/ZWJ marks go
    assert corpus_texts(tmp_path / "corpus") == expected
    assert sum(a != "\n".join(d) for a, d in zip(expected, docs)) <= 3
    assert m.documents == len(docs) and m.paragraphs == sum(map(len, docs))
    assert m.bytes == sum(len(t.encode()) for t in expected)
    assert m.sources[0]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m.input_bytes == len(gzip.decompress(src.read_bytes()))
    on_disk = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert on_disk == m.to_dict() and Manifest.load(tmp_path / "corpus") == m
    table = pq.read_table(tmp_path / "corpus" / m.shards[0]["file"])
    assert table.column_names == ["text"]


def test_every_format_gives_the_same_corpus(tmp_path, docs):
    docs = docs[2:8]
    texts = ["\n".join(d) for d in docs]
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    write_text(src / "a.txt", docs)
    write_text(src / "nested" / "b.txt.gz", docs)
    (src / "c.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(texts)))
    (src / "d.json").write_text(json.dumps([{"body": t} for t in texts]))
    with open(src / "e.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "body"])
        w.writerows([i, t] for i, t in enumerate(texts))
    pq.write_table(pa.table({"body": texts, "n": list(range(len(texts)))}), src / "f.parquet")
    (src / "notes.md").write_text("ignored in folders: unsupported extension")
    (src / ".hidden.txt").write_text("ignored: hidden")
    cfg = CorpusConfig(text_field="body", min_line_chars=0, dedup_documents=False, dedup_paragraphs=False)
    for name in ("a.txt", "nested/b.txt.gz", "c.jsonl", "d.json", "e.csv", "f.parquet"):
        out = tmp_path / ("out-" + name.replace("/", "-"))
        m = ingest([str(src / name)], out, cfg, progress=False)
        assert corpus_texts(out) == texts, name
        assert m.documents == len(texts)
    # a folder (recursive) and a glob: every supported file, sorted, hidden/unsupported skipped
    m = ingest([str(src)], tmp_path / "folder", cfg, progress=False)
    assert [Path(s["path"]).name for s in m.sources] == ["a.txt", "c.jsonl", "d.json", "e.csv", "f.parquet", "b.txt.gz"]
    m = ingest([str(src / "*.json*")], tmp_path / "glob", cfg, progress=False)
    assert [Path(s["path"]).name for s in m.sources] == ["c.jsonl", "d.json"]


def test_zstd_sources_when_available(tmp_path, docs):
    zstd = pytest.importorskip("zstandard")
    text = "\n\n".join("\n".join(d) for d in docs[:3]) + "\n"
    (tmp_path / "a.txt.zst").write_bytes(zstd.ZstdCompressor().compress(text.encode()))
    ingest([str(tmp_path / "a.txt.zst")], tmp_path / "out", RAW, progress=False)
    assert corpus_texts(tmp_path / "out") == ["\n".join(d) for d in docs[:3]]


def test_cleaning_normalises_and_counts_drops(tmp_path):
    lines = [
        "Cafe\u0301 au lait is served\u00a0here,\tevery   day.",  # NFD accent, NBSP, tab, spaces
        "Zero\u200bwidth and bell\x07 characters vanish from this line.",
        "   ",  # whitespace-only: a document separator, like a blank line
        "Short.",  # dropped: too short
        "\x00\x01",  # dropped: nothing left
        "A second document starts after the separator.",
    ]
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    m = ingest([str(tmp_path / "a.txt")], tmp_path / "out", CorpusConfig(min_line_chars=10), progress=False)
    assert corpus_texts(tmp_path / "out") == [
        "Caf\u00e9 au lait is served here, every day.\nZerowidth and bell characters vanish from this line.",
        "A second document starts after the separator.",
    ]
    assert m.lines_dropped == {"empty": 1, "too_short": 1}
    assert clean_paragraph("  a\u2028b \ufeffc\ufffd ") == "a b c"


def test_dedup_removes_exact_duplicates_only(tmp_path, docs):
    a, b = docs[2], docs[3]
    near_a = [a[0].replace(" the ", " a ", 1)] + a[1:]  # one word differs in the first paragraph
    assert near_a != a
    a_spaced = [p.replace(" ", "  ") for p in a]  # equal after whitespace normalisation
    shared = "This exact paragraph appears in two different documents of the corpus."
    c = ["A short document with its own first paragraph.", shared]
    d = ["Another document, also with its own first paragraph.", shared, shared.upper()]
    src = write_text(tmp_path / "d.txt", [a, b, a, a_spaced, near_a, c, d])
    m = ingest([str(src)], tmp_path / "out", CorpusConfig(dedup_paragraphs=False), progress=False)
    assert m.duplicates_removed == {"documents": 2, "paragraphs": 0}
    assert corpus_texts(tmp_path / "out") == ["\n".join(x) for x in (a, b, near_a, c, d)]

    m = ingest([str(src)], tmp_path / "out2", CorpusConfig(), progress=False)
    # near_a shares every paragraph but its first with a: only the changed one survives
    assert corpus_texts(tmp_path / "out2") == ["\n".join(a), "\n".join(b), near_a[0], "\n".join(c),
                                              "\n".join([d[0], d[2]])]
    assert m.duplicates_removed == {"documents": 2, "paragraphs": len(a) - 1 + 1}


def test_undecodable_bytes_are_counted_or_fatal_in_strict_mode(tmp_path):
    good = "A perfectly fine first line of text.\n"
    (tmp_path / "bad.txt").write_bytes(good.encode() + b"Second line with \xff\xfe bad bytes in it.\n")
    m = ingest([str(tmp_path / "bad.txt")], tmp_path / "out", CorpusConfig(), progress=False)
    assert m.undecodable_bytes == 2 and m.sources[0]["undecodable_bytes"] == 2
    assert corpus_texts(tmp_path / "out") == [good.strip() + "\nSecond line with bad bytes in it."]
    with pytest.raises(DataError, match=r"bad\.txt:2: 2 undecodable"):
        ingest([str(tmp_path / "bad.txt")], tmp_path / "strict", CorpusConfig(strict=True), progress=False)
    assert not (tmp_path / "strict").exists()


def test_bad_inputs_raise_data_errors_naming_the_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    (tmp_path / "notes.docx").write_text("x")
    (tmp_path / "rec.jsonl").write_text('{"text": "Fine first record with enough text."}\n{"body": "no text field"}\n')
    (tmp_path / "broken.jsonl").write_text('{"text": "ok record with enough text"}\n{"text": \n')
    (tmp_path / "col.csv").write_text("id,body\n1,hello there my friend\n")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "col.parquet")
    cases = {
        "missing.txt": r"missing\.txt: no such file",
        "empty.txt": r"empty\.txt: empty file",
        "blank.txt": r"blank\.txt: contains no text",
        "notes.docx": r"notes\.docx: unsupported file type",
        "rec.jsonl": r"rec\.jsonl:2: record has no 'text' field",
        "broken.jsonl": r"broken\.jsonl:2: invalid JSON",
        "col.csv": r"col\.csv: no column 'text'",
        "col.parquet": r"col\.parquet: no column 'text'",
        "*.nothing": r"\*\.nothing: no supported files match",
    }
    for name, pattern in cases.items():
        with pytest.raises(DataError, match=pattern):
            ingest([str(tmp_path / name)], tmp_path / "out", CorpusConfig(), progress=False)
    assert not (tmp_path / "out").exists()


def test_config_errors_name_the_field():
    for kwargs, field in [({"min_line_chars": -1}, "min_line_chars"), ({"shard_mb": 0}, "shard_mb"),
                          ({"text_field": ""}, "text_field"), ({"strict": "yes"}, "strict"),
                          ({"row_group_mb": 8, "shard_mb": 4}, "row_group_mb")]:
        with pytest.raises(ConfigError, match=f"corpus.{field}"):
            CorpusConfig(**kwargs)
    with pytest.raises(TypeError):
        CorpusConfig(min_chars=3)  # unknown keys are errors


def test_rerun_is_a_no_op_and_a_failed_build_leaves_the_output_untouched(tmp_path, docs):
    src = write_text(tmp_path / "a.txt", docs[:5])
    out = tmp_path / "corpus"
    m1 = ingest([str(src)], out, CorpusConfig(), progress=False)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert ingest([str(src)], out, CorpusConfig(), progress=False) == m1
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before

    (tmp_path / "bad.jsonl").write_text('{"oops": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        ingest([str(src), str(tmp_path / "bad.jsonl")], out, CorpusConfig(), progress=False)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "bad.jsonl", "corpus"]  # no temp dirs left

    # changed input: rebuilt and replaced as a whole
    write_text(src, docs[:3])
    m2 = ingest([str(src)], out, RAW, progress=False)
    assert m2.documents == 3 and corpus_texts(out) == ["\n".join(map(clean_paragraph, d)) for d in docs[:3]]

    # a directory that is not a corpus is never overwritten
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="refusing to overwrite"):
        ingest([str(src)], tmp_path / "mine", CorpusConfig(), progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_cli_registers_and_runs(tmp_path, docs, capsys):
    import argparse

    from electra_cli import corpus as corpus_cli

    parser = argparse.ArgumentParser(prog="electra")
    corpus_cli.add_cli(parser.add_subparsers())
    src = write_text(tmp_path / "a.txt", docs[:4])
    args = parser.parse_args(["corpus", str(src), "--out", str(tmp_path / "c"), "--no-progress", "--min-line-chars", "5"])
    assert args.func(args) == 0
    assert "4 documents" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["corpus", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--out", "--text-field", "--min-line-chars", "--strict", "--no-dedup-paragraphs"):
        assert flag in help_text


@pytest.mark.shared_data
def test_shared_corpus_slices_ingest(tmp_path):
    """The project's corpus files, first ~1 MB of each: real Gutenberg and Wikipedia layout."""
    corpus_dir = SHARED_DATA / "corpus"
    if not corpus_dir.is_dir():
        pytest.skip(f"{corpus_dir} not present")
    sources, expected_docs = [], 0
    for name in ("gutenberg_en.txt.gz", "wikipedia_en_2015_sample.txt.gz"):
        with gzip.open(corpus_dir / name, "rb") as f:
            head = f.read(1 << 20)
        head = head[: head.rfind(b"\n\n") + 1]  # whole documents only
        expected_docs += head.count(b"\n\n") + 1
        (tmp_path / name).write_bytes(gzip.compress(head, mtime=0))
        sources.append(str(tmp_path / name))
    m = ingest(sources, tmp_path / "out", CorpusConfig(), progress=False)
    assert m.documents == expected_docs and m.undecodable_bytes == 0
    assert m.paragraphs > 1000 and m.bytes > 1_500_000
