"""ELECTRA pre-training, evaluation and serving: the pure library.

Never imports Prefect or BentoML; `flows/` and `serving/` orchestrate it.

Layers, lowest first; each imports only the ones before it (tests/test_layers.py): the root
modules every stage shares (errors, atomic, integrity, tracking, inference), then `data`,
`modeling`, `training`, `evaluation` and `export`.
"""

__version__ = "0.1.0"
