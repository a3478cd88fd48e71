"""Prefect flows that orchestrate the `electra_pipeline` library (which never imports Prefect).

    ingest.py     ingest-corpus      corpus files -> cleaned Parquet corpus (cached)
    tokenizer.py  train-tokenizer    corpus -> WordPiece tokenizer.json (cached)
    examples.py   build-examples     corpus + tokenizer -> packed example shards (cached)
    pretrain.py   pretrain           examples -> ELECTRA / MLM encoder (cached, resumes)
    evaluate.py   evaluate           encoder -> GLUE/SQuAD fine-tuning, tasks concurrent
    export.py     export-onnx        fine-tuned model -> ONNX + MLflow Model Registry alias
    pipeline.py   electra-pipeline   all of the above, one parent MLflow run
    compare.py    electra-vs-mlm     ELECTRA and the BERT MLM baseline on the same data and budget
    study.py      efficiency-study   every objective at equal FLOPs: table, curves, "x times cheaper"

`electra pipeline` (`electra_cli/pipeline.py`) runs the pipeline flow from a shell. Nothing runs at
import time beyond the decorators.
"""
