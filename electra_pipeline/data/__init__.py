"""Data: raw text to training batches. `corpus/` reads and cleans text into Parquet shards,
`tokenizer` trains the WordPiece vocabulary, `examples` and `packing` pack token rows into example
shards with a held-out slice, and `batches` streams them to the training loop. Imports only the
shared root modules.
"""
