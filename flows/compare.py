"""ELECTRA against the BERT MLM baseline: same corpus, tokenizer and examples (built once,
cached), the same training FLOPs, both fine-tuned the same way - the paper's efficiency claim
(Table 5) checked on your data, side by side in one MLflow experiment.

The baseline trains one discriminator-sized MLM model (`train.objective = "mlm"`); it is
fine-tuned from that MLM encoder. This flow is `electra_pipeline` with both objectives; its
report has one column per model, a two-colour GLUE chart and shared loss curves.
"""


from prefect import flow

from flows.base import SAMPLE, stage, user_errors
from flows.params import (
    DEFAULT_PRESET,
    DEMO_FINETUNE,
    SAMPLE_GLUE_TASKS,
    Concurrency,
    Device,
    FinetuneOverrides,
    Name,
    NonEmpty,
    Preset,
    PretrainOverrides,
    Steps,
)
from flows.pipeline import PipelineResult, electra_pipeline
from flows.tracking import sweep_hook


@flow(name="electra-vs-mlm", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def electra_vs_mlm(
    preset: Preset = DEFAULT_PRESET,
    corpus: NonEmpty = [SAMPLE],  # noqa: B006 (Prefect copies parameter defaults)
    eval_tasks: NonEmpty = SAMPLE_GLUE_TASKS,
    probe_tasks: list[str] = SAMPLE_GLUE_TASKS,
    glue_dir: str = SAMPLE,
    max_steps: Steps = None,
    match_compute: bool = True,
    device: Device = "auto",
    output_dir: Name = "outputs",
    tracking_uri: str | None = None,
    experiment: Name = "electra-vs-mlm",
    eval_concurrency: Concurrency = 2,
    pretrain_config: PretrainOverrides = PretrainOverrides(),
    finetune_config: FinetuneOverrides = FinetuneOverrides(**DEMO_FINETUNE, max_train_examples=2000),
    refresh_cache: bool = False,
) -> PipelineResult:
    """Pre-train ELECTRA and the MLM baseline on the same data and compute; fine-tune and compare both.

    Args:
        preset: Model size and recipe shared by both models.
        corpus: Corpus files, folders, globs or hf: datasets; `sample` is the shipped corpus.
        eval_tasks: GLUE / SQuAD tasks both models are fine-tuned on.
        probe_tasks: GLUE tasks of the frozen-encoder probes, each model next to the other and the baselines;
            empty: no probes.
        glue_dir: GLUE root; `sample` is the shipped slices.
        max_steps: ELECTRA's pre-training steps; empty: the preset's.
        match_compute: Give the baseline ELECTRA's training FLOPs (more steps, as it has no generator);
            off: the same number of steps.
        device: auto, cpu or cuda.
        output_dir: Root of all outputs.
        tracking_uri: MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db.
        experiment: MLflow experiment holding the comparison.
        eval_concurrency: Evaluation tasks fine-tuned at once.
        pretrain_config: PretrainConfig fields to change for both models (empty ones keep the preset's).
        finetune_config: FinetuneConfig fields to change for both models (empty ones keep the default).
        refresh_cache: Re-run cached stages.
    """
    return stage(electra_pipeline, "pipeline")(preset=preset, corpus=corpus, eval_tasks=eval_tasks, probe_tasks=probe_tasks, glue_dir=glue_dir,
                            objectives=["electra", "mlm"], max_steps=max_steps, match_compute=match_compute,
                            device=device, output_dir=output_dir, tracking_uri=tracking_uri, experiment=experiment,
                            export=False, eval_concurrency=eval_concurrency, pretrain_config=pretrain_config,
                            finetune_config=finetune_config, refresh_cache=refresh_cache)
