"""ELECTRA pre-training, evaluation and serving: the pure library.

Never imports Prefect or BentoML; `flows/` and `serving/` orchestrate it.
"""

__version__ = "0.1.0"
