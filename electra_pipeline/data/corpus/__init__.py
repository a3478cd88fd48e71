"""Corpus ingestion: raw text in many formats -> one cleaned, deduplicated Parquet corpus.

Every later stage (WordPiece training, example packing) reads the same simple thing: Parquet
shards with one row per document and a `text` column whose paragraphs are joined by "\\n".
Cleaning happens once, here, so the tokenizer and the packer never see control characters,
unnormalised Unicode or duplicated boilerplate, and `manifest.json` records what was dropped.

Output directory:
    manifest.json           sources (sha256), counts, drops by reason, duplicates, resolved config
    shard-00000.parquet     column `text`; row groups of ~`row_group_mb` (the unit of parallel work)

Inputs are streamed (a 100 GB corpus is never held in memory); the only state that grows with
the corpus is the set of 16-byte hashes used for exact deduplication.

    config.py   CorpusConfig
    readers.py  source expansion (files, folders, globs, hf:) and one streaming reader per format
    clean.py    paragraph cleaning (NFC, control characters, whitespace, short lines) and deduplication
    ingest.py   Parquet shard writer, manifest, atomic output directory, ingest()
    read.py     reading a finished corpus back: shards, row groups, documents

The `electra corpus` command is `electra_cli/corpus.py`.
"""

from electra_pipeline.data.corpus.clean import clean_paragraph
from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.data.corpus.ingest import MANIFEST_FILE, MANIFEST_FORMAT, Manifest, ingest
from electra_pipeline.data.corpus.read import corpus_row_groups, corpus_shards, iter_documents, read_row_group
from electra_pipeline.data.corpus.readers import expand_sources

# `electra_pipeline.data.corpus.ingest` is the function (as before the split); the module is reached with
# `from electra_pipeline.data.corpus.ingest import ...`, not `import electra_pipeline.data.corpus.ingest as m`.
__all__ = ["MANIFEST_FILE", "MANIFEST_FORMAT", "CorpusConfig", "Manifest", "clean_paragraph",
           "corpus_row_groups", "corpus_shards", "expand_sources", "ingest", "iter_documents", "read_row_group"]
