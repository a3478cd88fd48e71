"""Data-stage throughput: raw text files -> packed example shards, and WordPiece training time.

    python bench/data_throughput.py [--data ../shared/data/corpus] [--num-proc 2] [--naive-mb 20]
    python bench/data_throughput.py --smoke --work /tmp/dt   # a slice of the shipped sample: seconds

Ours (end to end) = `ingest` (read, clean, dedup, Parquet) + `build_examples` (tokenise, pack,
shuffle, .npy) over every *.txt / *.txt.gz file in --data; MB/s counts uncompressed input bytes
(1 MB = 1e6 B). WordPiece training (vocab 30,522) on the same corpus is timed separately.

Naive reference, measured in the same run: one process, `Tokenizer.encode` line by line, ELECTRA's
ExampleBuilder in pure Python lists, one np.save. It runs on the first --naive-mb MB of raw text
(split evenly over the input files) with the tokenizer trained above: slower per MB, so a slice.

The last line is machine-readable:
    data_throughput mb_per_s=<ours> reference_mb_per_s=<naive> ratio=<r> tokenizer_train_s=<t>
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from electra_pipeline.data.corpus import CorpusConfig, ingest  # noqa: E402
from electra_pipeline.data.examples import ExamplesConfig, build_examples  # noqa: E402
from electra_pipeline.data.tokenizer import TokenizerConfig, load_tokenizer, train_wordpiece  # noqa: E402


def cpu_seconds() -> float:
    """User+system CPU of this process and its finished children: contention-independent work."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def naive_reference(files: list[Path], tokenizer_file: Path, budget_bytes: int, seq_len: int, out: Path) -> tuple[int, float]:
    """The straightforward pipeline on the first `budget_bytes` of text; returns (bytes, seconds)."""
    tok = load_tokenizer(tokenizer_file)
    rng = random.Random(0)
    cls, sep = 2, 3
    rows: list[list[int]] = []
    sentences: list[list[int]] = []
    state = {"length": 0, "target": seq_len}

    def create() -> None:
        target = state["target"]
        first_target = 100000 if rng.random() < 0.1 else (target - 3) // 2
        first: list[int] = []
        second: list[int] = []
        for s in sentences:
            if (not first or len(first) + len(s) < first_target
                    or (not second and len(first) < first_target and rng.random() < 0.5)):
                first += s
            else:
                second += s
        first = first[:seq_len - 2]
        second = second[:max(0, seq_len - len(first) - 3)]
        ids = [cls] + first + [sep] + (second + [sep] if second else [])
        rows.append(ids + [0] * (seq_len - len(ids)))
        sentences.clear()
        state["length"] = 0
        state["target"] = rng.randint(5, seq_len) if rng.random() < 0.05 else seq_len

    used = 0
    start = time.perf_counter()
    per_file = budget_bytes // len(files)
    for path in files:
        taken = 0
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                taken += len(line.encode("utf-8"))
                line = line.strip()
                if not line:
                    if state["length"]:
                        create()
                else:
                    ids = tok.encode(line, add_special_tokens=False).ids
                    sentences.append(ids)
                    state["length"] += len(ids)
                    if state["length"] >= state["target"]:
                        create()
                if taken >= per_file:
                    break
        if state["length"]:
            create()
        used += taken
    np.save(out, np.array(rows, dtype=np.uint16))
    return used, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "corpus",
                        help="folder of *.txt/*.txt.gz corpus files (default: ../shared/data/corpus)")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="example-building workers")
    parser.add_argument("--seq-len", type=int, default=128, help="example length")
    parser.add_argument("--vocab-size", type=int, default=30522, help="WordPiece vocabulary size")
    parser.add_argument("--naive-mb", type=float, default=20, help="MB of raw text for the naive reference")
    parser.add_argument("--work", type=Path, default=None, help="keep outputs here (default: a temp dir, removed)")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script in seconds: a slice of the shipped sample corpus (written into the "
                             "work dir), vocab 1,000, seq 64, one process, a 0.05 MB naive slice")
    args = parser.parse_args(argv)

    work = args.work or (Path(tempfile.mkdtemp(prefix="data_throughput-")) if args.smoke else None)
    if args.smoke:
        from smoke import corpus_slice

        args.data = corpus_slice(work / "input", chars_per_doc=400)[0].parent
        args.vocab_size, args.seq_len, args.num_proc, args.naive_mb = 1000, 64, 1, 0.05
    files = sorted(p for p in args.data.glob("*") if p.name.endswith((".txt", ".txt.gz")))
    if not files:
        print(f"no *.txt / *.txt.gz files in {args.data}", file=sys.stderr)
        return 2
    work = work or Path(tempfile.mkdtemp(prefix="data_throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        manifest = ingest([str(f) for f in files], work / "corpus", CorpusConfig(), progress=False)
        t_ingest, c_ingest = time.perf_counter() - t0, cpu_seconds() - c0
        mb = manifest.input_bytes / 1e6

        c0, t0 = cpu_seconds(), time.perf_counter()
        tok_file = train_wordpiece(work / "corpus", work / "tokenizer", TokenizerConfig(vocab_size=args.vocab_size),
                                   progress=False)
        t_tok, c_tok = time.perf_counter() - t0, cpu_seconds() - c0

        c0, t0 = cpu_seconds(), time.perf_counter()
        meta = build_examples(work / "corpus", work / "tokenizer", work / "examples",
                              ExamplesConfig(seq_len=args.seq_len, num_proc=args.num_proc), progress=False)
        t_ex, c_ex = time.perf_counter() - t0, cpu_seconds() - c0

        c0 = cpu_seconds()
        naive_bytes, t_naive = naive_reference(files, tok_file, int(args.naive_mb * 1e6), args.seq_len,
                                               work / "naive.npy")
        c_naive = cpu_seconds() - c0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    ours = mb / (t_ingest + t_ex)
    naive = naive_bytes / 1e6 / t_naive
    rows = [
        ("ingest (clean+dedup+parquet)", f"{mb:.1f}", t_ingest, c_ingest, mb / t_ingest),
        (f"examples (tokenise+pack, {args.num_proc} proc)", f"{mb:.1f}", t_ex, c_ex, mb / t_ex),
        ("ours end to end", f"{mb:.1f}", t_ingest + t_ex, c_ingest + c_ex, ours),
        (f"naive reference (1 proc, first {naive_bytes / 1e6:.0f} MB)", f"{naive_bytes / 1e6:.1f}", t_naive, c_naive, naive),
        (f"WordPiece train (vocab {args.vocab_size})", f"{mb:.1f}", t_tok, c_tok, mb / t_tok),
    ]
    print(f"\ninput: {len(files)} files, {mb:.1f} MB raw text, {manifest.documents:,} documents -> "
          f"{meta['num_examples']:,} examples of {args.seq_len}; cores {os.cpu_count()}, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    print(f"{'stage':<48} {'MB':>7} {'wall s':>8} {'cpu s':>8} {'MB/s':>7}")
    for name, size, wall, cpu, rate in rows:
        print(f"{name:<48} {size:>7} {wall:>8.1f} {cpu:>8.1f} {rate:>7.2f}")
    print(f"data_throughput mb_per_s={ours:.2f} reference_mb_per_s={naive:.2f} ratio={ours / naive:.2f} "
          f"tokenizer_train_s={t_tok:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
