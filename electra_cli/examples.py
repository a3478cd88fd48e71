"""`electra examples`: pack a corpus into pre-training rows (`electra_pipeline.data.examples`) from the
command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from electra_cli.flags import HelpFormatter, add_field_flags, fields_from_args
from electra_pipeline.data.examples_config import ExamplesConfig

_FLAG_FIELDS = ["seq_len", "seed", "examples_per_shard", "single_segment_prob", "short_seq_prob", "holdout_fraction"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra examples`."""
    p = subparsers.add_parser(
        "examples", help="pack the corpus into fixed-length pre-training rows",
        description="Tokenise a corpus directory (from `electra corpus`) with a trained tokenizer and pack the "
                    "sentences of each document into [CLS] A [SEP] B [SEP] rows of --seq-len tokens, as ELECTRA's "
                    "build_pretraining_dataset.py does (never across documents). Writes shuffled shard-NNNNN.npy "
                    "files, meta.json, config.json and length_hist.png to --out. Same seed => same bytes, whatever "
                    "--num-proc.",
        formatter_class=HelpFormatter)
    p.add_argument("--corpus", required=True, type=Path, help="corpus directory (Parquet shards + manifest.json)")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer directory or its tokenizer.json")
    p.add_argument("--out", "-o", required=True, type=Path, help="output examples directory (replaced atomically)")
    add_field_flags(p, ExamplesConfig, _FLAG_FIELDS)
    p.add_argument("--no-sentence-split", action="store_true",
                   help="treat each paragraph (line) as one sentence, exactly like the reference")
    p.add_argument("--num-proc", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from electra_pipeline.data.examples import build_examples

    kwargs = {} if args.num_proc is None else {"num_proc": args.num_proc}
    cfg = ExamplesConfig(**fields_from_args(args, ExamplesConfig, _FLAG_FIELDS),
                         split_sentences=not args.no_sentence_split, **kwargs)
    meta = build_examples(args.corpus, args.tokenizer, args.out, cfg, progress=not args.no_progress)
    s = meta["stats"]
    print(f"examples: {meta['num_examples']:,} rows of {meta['seq_len']} in {len(meta['shards'])} shard(s) -> {args.out}")
    print(f"  {s['documents']:,} documents, {s['tokens']:,} tokens, mean length {s['mean_length']:.1f}, "
          f"padding {100 * s['padding_fraction']:.1f}%, {s['seconds']:.1f} s")
    h = meta["holdout"]
    print(f"  held out: {h['documents']:,} documents ({100 * h['fraction']:g}%), {h['num_examples']:,} rows -> "
          f"{args.out / h['file']}")
    return 0
