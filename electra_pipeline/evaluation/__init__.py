"""Evaluation: what a pre-trained encoder is worth. `tasks/` (GLUE, SQuAD) and `finetune/`
fine-tune it, `finetuned` is the fine-tuned model directory, `probe` scores frozen features,
`baselines` gives the floors it has to beat, `metrics` and `stats` the scores and their intervals,
`results`, `study` and `curves` the reports. Imports training, modeling, data and the shared root
modules.
"""
