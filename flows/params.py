"""The pipeline's parameters as a pydantic model: what `electra pipeline --help` lists and
what the CLI validates before it starts anything.

It mirrors the signature of `flows.pipeline.electra_pipeline` (the Prefect UI form), and a
test keeps the two identical. It lives apart because importing Prefect costs a second, and
`electra --help` builds every subcommand's parser.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.base import DEFAULT_EXPERIMENT, SAMPLE

Preset = Literal["tiny", "cpu", "small", "base", "large"]
Objective = Literal["electra", "electra_15", "mlm", "replace_mlm", "all_tokens_mlm", "mc_bert", "teams"]
Device = Literal["auto", "cpu", "cuda"]
# Constrained types shared with the flow signature, so the Prefect UI form and the server
# reject the same values the CLI does, before a run starts.
NonEmpty = Annotated[list[str], Field(min_length=1)]
Objectives = Annotated[list[Objective], Field(min_length=1)]
Steps = Annotated[int | None, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
Concurrency = Annotated[int, Field(ge=1, le=16)]

# The GLUE tasks whose slices ship in the package; SST-2 first: its model is the one exported.
SAMPLE_GLUE_TASKS: list[str] = ["sst2", "cola", "mrpc", "stsb", "rte"]
# The CPU demo's fine-tuning recipe: one seed (on at most 2,000 training examples, should
# glue_dir point at full GLUE) keeps the demo within minutes on two cores; set
# `finetune_config` to {} for the reference recipe (3 seeds, their median, all data).
# The CPU demo's fine-tuning: one seed, up to 2,000 examples, and the recipe measured for 2-layer
# models (docs/experiments.md): lr 5e-4 without layer decay (the reference 1e-4 / 0.8 under-fits
# them) and the head on the mean of the token states (+1.5 to +5.2 SST-2 points over [CLS]).
DEMO_FINETUNE: dict[str, Any] = {"seeds": [1], "max_train_examples": 2000, "lr": 5e-4, "layer_decay": 1.0,
                                 "pooling": "mean"}


class PipelineParams(BaseModel):
    """Every parameter of the `electra-pipeline` flow, with its default and help."""

    model_config = ConfigDict(extra="forbid")

    preset: Preset = Field("cpu", description="model size and recipe: cpu (learns on a CPU budget, minutes), "
                                              "tiny (tests), small, base, large")
    corpus: NonEmpty = Field([SAMPLE], description="corpus files, folders, globs or hf: datasets; "
                                                                   "`sample` = the corpus shipped in the package")
    eval_tasks: NonEmpty = Field(SAMPLE_GLUE_TASKS, description="GLUE tasks (sst2, mrpc, ...) and/or squad_v1/"
                                                                 "squad_v2 to fine-tune on")
    glue_dir: str = Field(SAMPLE, description="GLUE root (<dir>/SST-2/train.tsv ...); `sample` = shipped slices")
    squad_dir: str = Field(SAMPLE, description="SQuAD directory; `sample` = shipped slices")
    objectives: Objectives = Field(["electra"],
                                   description="pre-training objectives; electra mlm compares ELECTRA with "
                                                    "the BERT MLM baseline on the same data and steps")
    init_from: str = Field("", description="continue pre-training from this checkpoint (a run directory or a Hugging "
                                           "Face ELECTRA directory) with its own vocabulary; empty: random init")
    max_steps: Steps = Field(None, description="pre-training steps (empty: the preset's)")
    match_compute: bool = Field(True, description="with several objectives, give each the first one's training "
                                                  "FLOPs (the MLM baseline gets more, cheaper steps); off: the "
                                                  "same number of steps")
    device: Device = Field("auto", description="auto (CUDA when available), cpu or cuda")
    output_dir: Name = Field("outputs", description="root of all outputs, relative to the working directory")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (empty: $MLFLOW_TRACKING_URI, else "
                                                       "sqlite:///<workdir>/mlflow.db)")
    experiment: Name = Field(DEFAULT_EXPERIMENT, description="MLflow experiment")
    export: bool = Field(True, description="export the fine-tuned model to ONNX and register it")
    register_as: str = Field("electra-{task}", description="registered model name; {task}, {preset}, {objective} "
                                                           "are filled in; empty: do not register")
    alias: Name = Field("champion", description="registry alias moved to the new version when its dev score beats "
                                                "the holder's (every version also gets `challenger`)")
    force_alias: bool = Field(False, description="move the alias to the new version whatever its score")
    quantize: bool = Field(False, description="also export a dynamic int8 ONNX model")
    eval_concurrency: Concurrency = Field(2, description="evaluation tasks fine-tuned at once")
    corpus_config: dict[str, Any] = Field({}, description="CorpusConfig overrides, e.g. {\"min_line_chars\": 20}")
    tokenizer_config: dict[str, Any] = Field({}, description="TokenizerConfig overrides (vocab_size defaults to "
                                                             "the model's)")
    examples_config: dict[str, Any] = Field({}, description="ExamplesConfig overrides (seq_len defaults to the "
                                                            "model's)")
    pretrain_config: dict[str, Any] = Field({}, description="PretrainConfig overrides, nested like config.json, "
                                                            "e.g. {\"train\": {\"lr\": 0.0005}}")
    finetune_config: dict[str, Any] = Field(DEMO_FINETUNE, description="FinetuneConfig overrides; {} = the "
                                                                       "reference recipe")
    refresh_cache: bool = Field(False, description="re-run cached stages (pre-training still resumes a "
                                                   "half-finished run)")


def validated(values: dict[str, Any]) -> PipelineParams:
    """The parameters, or a ConfigError naming the first bad one (the CLI prints it on one line)."""
    from electra_pipeline.errors import ConfigError

    try:
        return PipelineParams(**values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}") from None
