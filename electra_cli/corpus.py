"""`electra corpus`: ingest raw sources (`electra_pipeline.data.corpus`) from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from electra_cli.flags import HelpFormatter, add_field_flags, fields_from_args
from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.data.corpus.ingest import ingest


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra corpus`."""
    p = subparsers.add_parser(
        "corpus", help="ingest raw text into a cleaned, deduplicated Parquet corpus",
        description="Read text files, JSONL/JSON, CSV, Parquet (files, folders or quoted globs) or a Hugging Face "
                    "hub dataset, clean it (NFC, control characters, whitespace, short lines), remove exact "
                    "duplicate documents and paragraphs, and write Parquet shards (one row per document) plus "
                    "manifest.json to --out. Plain text: one paragraph per line, a blank line between documents. "
                    "Re-running with unchanged inputs is a no-op.",
        formatter_class=HelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="file, folder, quoted glob ('data/**/*.jsonl') or hf:NAME[:CONFIG][@SPLIT]")
    p.add_argument("--out", "-o", required=True, type=Path, help="output corpus directory (replaced atomically)")
    add_field_flags(p, CorpusConfig, ["text_field", "min_line_chars"])
    p.add_argument("--no-dedup-documents", action="store_true", help="keep exact duplicate documents")
    p.add_argument("--no-dedup-paragraphs", action="store_true", help="keep exact duplicate paragraphs")
    p.add_argument("--strict", action="store_true", help="fail on undecodable (non-UTF-8) bytes instead of dropping and counting them")
    add_field_flags(p, CorpusConfig, ["shard_mb", "row_group_mb"])
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = CorpusConfig(**fields_from_args(args, CorpusConfig, ["text_field", "min_line_chars", "shard_mb", "row_group_mb"]),
                       dedup_documents=not args.no_dedup_documents, dedup_paragraphs=not args.no_dedup_paragraphs,
                       strict=args.strict)
    m = ingest(args.sources, args.out, cfg, progress=not args.no_progress)
    print(f"corpus: {m.documents:,} documents, {m.paragraphs:,} paragraphs, {m.bytes / 1e6:.1f} MB in "
          f"{len(m.shards)} shard(s) -> {args.out}")
    print(f"  dropped: {m.lines_dropped['empty']:,} empty and {m.lines_dropped['too_short']:,} short paragraphs, "
          f"{m.duplicates_removed['documents']:,} duplicate documents, {m.duplicates_removed['paragraphs']:,} "
          f"duplicate paragraphs; {m.undecodable_bytes:,} undecodable bytes")
    return 0
