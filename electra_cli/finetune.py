"""`electra finetune` (one task) and `electra evaluate` (several tasks, GLUE score): the command
line of `electra_pipeline.evaluation.finetune`.

Config precedence: FinetuneConfig defaults, then --config FILE (YAML/JSON with FinetuneConfig
keys; unknown keys are errors), then flags. Handlers return exit codes; user mistakes raise
PipelineError, which the CLI prints on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import electra_pipeline
from electra_cli.flags import unset
from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import config as config_mod
from electra_pipeline.modeling import presets
from electra_pipeline.modeling.settings import field_docs

SAMPLE_DIR = Path(electra_pipeline.__file__).resolve().parent / "sample"  # the GLUE/SQuAD slices shipped in the package
_SPECIAL = {"seeds", "model_preset", "lr_grid"}  # flags with their own definitions below


def _add_common(p: argparse.ArgumentParser) -> None:
    from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig

    p.add_argument("--checkpoint", metavar="DIR", default=None,
                   help="pre-trained encoder in Hugging Face ELECTRA format (config.json + model.safetensors), "
                        "e.g. a pre-training run's discriminator/ or Google's converted checkpoint; "
                        "omit to fine-tune a randomly initialised --model-preset model (the baseline)")
    p.add_argument("--model-preset", choices=sorted(presets.PRESETS), default=None,
                   help="model size for random init when no --checkpoint is given (default: small)")
    p.add_argument("--tokenizer", metavar="FILE", required=True,
                   help="tokenizer.json (or its directory) the checkpoint was pre-trained with")
    p.add_argument("--data-dir", metavar="DIR", default=str(SAMPLE_DIR),
                   help="GLUE TSV root (<dir>/<TaskDir>/{train,dev,test}.tsv, or <dir>/glue/...) and SQuAD "
                        "JSON (<dir> or <dir>/squad); hf:glue reads the Hugging Face Hub copies "
                        "(default: the small real slices shipped in the package)")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file of FinetuneConfig fields")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", default=None,
                   help="fine-tuning seeds; the median over them is reported (default: 1 2 3)")
    p.add_argument("--lr-grid", type=float, nargs="+", metavar="LR", default=None,
                   help="peak learning rates to choose from: one run of the first seed per rate on 80%% of the "
                        "training data, scored on the other 20%% (never dev); the best rate trains every seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                                        "sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="electra-finetune", help="MLflow experiment name")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    group = p.add_argument_group("recipe (FinetuneConfig fields; defaults follow the reference settings)")
    helps = field_docs(FinetuneConfig)
    hints = typing.get_type_hints(FinetuneConfig)
    for f in dataclasses.fields(FinetuneConfig):
        if f.name in _SPECIAL:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kinds = {hints[f.name], *typing.get_args(hints[f.name])}  # `int | None` -> {int, None}
        metavar = next((m for t, m in ((bool, "BOOL"), (int, "INT"), (float, "FLOAT")) if t in kinds), "STR")
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg:{f.name}", default=None, metavar=metavar,
                           help=helps.get(f.name, "") + ("" if unset(default) else f" (default: {default})"))


def build_config(args: argparse.Namespace) -> Any:
    """FinetuneConfig from defaults, --config FILE and flags, validated (ConfigError names the field)."""
    from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig

    data: dict[str, Any] = config_mod.load_file(args.config) if args.config else {}
    for key, value in vars(args).items():
        if key.startswith("cfg:") and value is not None:
            data[key[4:]] = None if str(value).lower() == "none" else value
    if args.seeds is not None:
        data["seeds"] = args.seeds
    if args.model_preset is not None:
        data["model_preset"] = args.model_preset
    if args.lr_grid is not None:
        data["lr_grid"] = args.lr_grid
    if "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"seeds: expected a list of integers, got {seeds!r}")
    return config_mod.from_dict(FinetuneConfig, data)


@contextlib.contextmanager
def _tracker(args: argparse.Namespace, run_name: str) -> Iterator[Any]:
    from electra_pipeline.tracking import MLflowTracker, NullTracker, finished

    if args.no_tracking:
        yield NullTracker()
        return
    tracker = MLflowTracker.start(tracking_uri=args.tracking_uri, experiment=args.experiment, run_name=run_name,
                                  tags={"stage": run_name.split("-")[0]})
    with finished(tracker):
        yield tracker
    print(f"MLflow run {tracker.run_id} in {tracker.tracking_uri} (experiment {args.experiment!r})")


def _note_random_init(args: argparse.Namespace, cfg: Any) -> None:
    if args.checkpoint is None:
        print(f"note: no --checkpoint; fine-tuning a randomly initialised {cfg.model_preset} model (baseline)")


def _run_finetune(args: argparse.Namespace) -> int:
    from electra_pipeline.evaluation.finetune.runner import check_inputs, finetune

    cfg = build_config(args)
    check_inputs([args.task], args.checkpoint, args.tokenizer, args.data_dir, cfg)  # before an MLflow run exists
    _note_random_init(args, cfg)
    out = Path(args.out or f"runs/finetune/{args.task}")
    with _tracker(args, f"finetune-{args.task}") as tracker:
        r = finetune(args.task, args.checkpoint, args.tokenizer, args.data_dir, out, cfg, tracker=tracker,
                     progress=not args.no_progress)
    shown = "  ".join(f"{k}={v:.2f}" for k, v in r.metrics.items() if not k.endswith(("thresh", "threshold", "total")))
    print(f"{r.task}: median over {len(r.seed_metrics)} seed(s): {shown}")
    print(f"model (seed {r.best_seed}) -> {r.model_dir}")
    for stem, path in r.submission.items():
        print(f"test predictions ({stem}) -> {path}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from electra_pipeline.evaluation.finetune.runner import check_inputs, default_tasks, evaluate

    cfg = build_config(args)
    check_inputs(args.tasks or default_tasks(args.data_dir), args.checkpoint, args.tokenizer, args.data_dir, cfg)
    _note_random_init(args, cfg)
    with _tracker(args, "evaluate") as tracker:
        r = evaluate(args.tasks or None, args.checkpoint, args.tokenizer, args.data_dir, Path(args.out), cfg,
                     tracker=tracker, progress=not args.no_progress)
    print(r.table_md.read_text(), end="")
    print(f"results -> {r.table_md}, {r.table_json}")
    if r.submission_dir is not None:
        print(f"GLUE test submission -> {r.submission_dir}")
    if args.print_json:
        print(json.dumps(json.loads(r.table_json.read_text()), indent=2))
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `finetune` and `evaluate` with the `electra` command."""
    from electra_pipeline.evaluation.tasks import TASK_NAMES

    p = subparsers.add_parser(
        "finetune", help="fine-tune a checkpoint on one GLUE/SQuAD task (several seeds, median)",
        description="Fine-tune a pre-trained ELECTRA encoder on one task with the reference recipe (lr 1e-4 "
                    "small/base, 5e-5 large; layer-wise decay 0.8/0.9; 10% warmup; batch 32; seq 128 GLUE, 512 "
                    "SQuAD; 3 epochs, RTE/STS-B 10, SQuAD 2), once per seed. Prints the median dev metrics and "
                    "writes to --out: config.json, metrics.json, model/ (for export and serving), "
                    "predictions/, submission/<Task>.tsv (GLUE test set).")
    p.add_argument("task", help=f"one of: {', '.join(TASK_NAMES)}")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: runs/finetune/TASK)")
    _add_common(p)
    p.set_defaults(func=_run_finetune)

    e = subparsers.add_parser(
        "evaluate", help="fine-tune one checkpoint on several tasks; results table and GLUE score",
        description="Fine-tune the same checkpoint on each task (as `finetune`), then write results.md and "
                    "results.json (median dev metrics per task and the GLUE score: mean task score, tasks with "
                    "two metrics averaging them, WNLI excluded as in the paper) and the GLUE leaderboard "
                    "submission folder.")
    e.add_argument("tasks", nargs="*", help="tasks to run (default: every GLUE task with train and dev files "
                                            f"in --data-dir); known: {', '.join(TASK_NAMES)}")
    e.add_argument("--out", metavar="DIR", default="runs/evaluate", help="output directory")
    e.add_argument("--print-json", action="store_true", help="also print results.json")
    _add_common(e)
    e.set_defaults(func=_run_evaluate)
