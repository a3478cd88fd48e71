"""What every bench's `--smoke` runs on: slices of the data shipped in the repo, written into the
caller's work directory, so a smoke run needs no ../shared data, no network and seconds of CPU.

A smoke run checks that a benchmark still runs end to end and prints its last line; its figures
say nothing (tiny models, a few steps, a few dozen examples).
"""

from __future__ import annotations

import gzip
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "electra_pipeline" / "sample"
SAMPLE_CORPUS = SAMPLE / "corpus" / "sample.txt.gz"
SAMPLE_GLUE = SAMPLE / "glue"


def sample_documents() -> list[list[str]]:
    """The shipped sample corpus as documents (blank-line separated) of paragraphs (lines)."""
    docs: list[list[str]] = [[]]
    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                docs[-1].append(line)
            elif docs[-1]:
                docs.append([])
    return [d for d in docs if d]


def corpus_slice(out: Path, chars_per_doc: int = 600, parts: int = 1) -> list[Path]:
    """Every sample document cut to its first paragraphs (about `chars_per_doc` characters), dealt
    in turn into `parts` text files under `out`: many short documents, so a held-out slice of
    documents is never empty. Returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    texts: list[list[str]] = [[] for _ in range(parts)]
    for i, doc in enumerate(sample_documents()):
        kept, size = [], 0
        for para in doc:
            kept.append(para)
            size += len(para)
            if size >= chars_per_doc:
                break
        texts[i % parts].append("\n".join(kept))
    files = []
    for i, docs in enumerate(texts):
        f = out / f"sample-{i}.txt"
        f.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        files.append(f)
    return files


def data_root(out: Path, chars_per_doc: int = 600) -> Path:
    """A `--data` root as the benches expect it: `corpus/` (a slice of the sample) and `glue/` (a
    link to the shipped GLUE sample, read only)."""
    corpus_slice(out / "corpus", chars_per_doc)
    glue = out / "glue"
    if not glue.exists():
        glue.symlink_to(SAMPLE_GLUE, target_is_directory=True)
    return out


def examples(out: Path, vocab_size: int = 1000, seq_len: int = 64) -> Path:
    """Packed examples with a held-out slice, built in-process from `corpus_slice` by the library's
    own stages (ingest -> WordPiece -> examples). Returns the examples directory."""
    from electra_pipeline.data.corpus import CorpusConfig, ingest
    from electra_pipeline.data.examples import ExamplesConfig, build_examples
    from electra_pipeline.data.tokenizer import TokenizerConfig, train_wordpiece

    ex = out / "examples"
    if not (ex / "meta.json").is_file():
        files = corpus_slice(out / "input")
        ingest([str(f) for f in files], out / "corpus", CorpusConfig(), progress=False)
        train_wordpiece(out / "corpus", out / "tokenizer", TokenizerConfig(vocab_size=vocab_size), progress=False)
        build_examples(out / "corpus", out / "tokenizer", ex,
                       ExamplesConfig(seq_len=seq_len, num_proc=1, holdout_fraction=0.05), progress=False)
    return ex
