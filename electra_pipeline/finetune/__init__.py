"""Fine-tuning and evaluation on GLUE and SQuAD with the ELECTRA reference settings.

    recipe.py   FinetuneConfig, layer-wise LR decay, warmup/decay schedule, device/precision
    loop.py     one seed's training loop and batched prediction
    runner.py   finetune() (one task, seeds, median, saved model) and evaluate() (results table)
    cli.py      `electra finetune` and `electra evaluate`
"""

from electra_pipeline.finetune.cli import add_cli
from electra_pipeline.finetune.recipe import FinetuneConfig, layer_depth, lr_lambda, param_groups
from electra_pipeline.finetune.runner import EvaluationResult, FinetuneResult, evaluate, finetune, format_table

__all__ = ["EvaluationResult", "FinetuneConfig", "FinetuneResult", "add_cli", "evaluate", "finetune",
           "format_table", "layer_depth", "lr_lambda", "param_groups"]
