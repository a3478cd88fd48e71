"""`electra pretrain`: pre-training (`electra_pipeline.training.train.pretrain`) from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from electra_cli.flags import HelpFormatter, add_config_flags, overrides_from_args
from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import config as config_mod
from electra_pipeline.modeling import presets


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra pretrain`."""
    p = subparsers.add_parser(
        "pretrain", help="joint generator + discriminator pre-training",
        description="Pre-train an ELECTRA generator and discriminator (or the BERT MLM baseline with "
                    "--train.objective mlm) on packed examples. Config precedence: --preset, then --config "
                    "FILE (YAML/JSON, nested like config.json), then --section.field flags. Outputs in "
                    "--output-dir: config.json, checkpoints/, metrics.jsonl, loss_curves.png, and the "
                    "discriminator/ and generator/ in Hugging Face ELECTRA format.",
        formatter_class=HelpFormatter)
    p.add_argument("--preset", choices=sorted(presets.PRESETS), default=None,
                   help=f"model size and recipe (default: the --config file's preset, else {presets.DEFAULT})")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON config file; unknown keys are errors")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="DIR|auto",
                   help="continue from the latest checkpoint of DIR (default: --output-dir) exactly where it "
                        "stopped; `auto`: resume when --output-dir has a checkpoint, else start (for restarts)")
    p.add_argument("--resume-with-changes", action="store_true",
                   help="with --resume: accept a config that differs from the checkpoint's on a field that matters "
                        "(model, objective, seed, lr, batch, masking, loss weights, warm-up, the schedule's length: "
                        "max_steps or the budget); the change is recorded "
                        "in summary.json")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    add_config_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from electra_pipeline.tracking import MLflowTracker, NullTracker, finished
    from electra_pipeline.training.checkpoint import list_checkpoints
    from electra_pipeline.training.preflight import check_inputs
    from electra_pipeline.training.train import TWO_STAGE, pretrain

    cfg = presets.resolve(args.preset, args.config, overrides_from_args(args))
    if args.print_config:
        print(json.dumps(config_mod.to_dict(cfg), indent=2))
        return 0
    if cfg.init_from and args.resume not in (None, "auto"):
        raise ConfigError("init_from: a resumed run continues its own checkpoint; drop --init-from or --resume")
    resume = None if args.resume is None else (args.resume or cfg.output_dir)
    if resume == "auto":
        resume = cfg.output_dir if list_checkpoints(Path(cfg.output_dir)) else None
    check_inputs(cfg)  # fail before an MLflow run exists
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 tracks and prints
    progress = not args.no_progress and sys.stderr.isatty()
    if not cfg.tracking.enabled or not main_rank:
        result = pretrain(cfg, resume=resume, tracker=NullTracker(), progress=progress,
                          allow_changes=args.resume_with_changes)
    else:
        tracker = MLflowTracker.start(tracking_uri=cfg.tracking.tracking_uri, experiment=cfg.tracking.experiment,
                                      run_name=cfg.tracking.run_name or f"pretrain-{cfg.preset}",
                                      tags={"stage": "pretrain"})
        with finished(tracker):
            result = pretrain(cfg, resume=resume, tracker=tracker, progress=progress,
                              allow_changes=args.resume_with_changes)
        print(f"MLflow run {tracker.run_id} in {cfg.tracking.tracking_uri} (experiment {cfg.tracking.experiment!r})")
    if not main_rank:
        return 0
    m = result.metrics
    print(f"pretrained {result.steps} steps -> {result.output_dir}")
    switch = Path(result.output_dir) / TWO_STAGE
    if switch.is_file():
        record = json.loads(switch.read_text())
        copied, shared = record["copied_from_generator"], record["shared_with_generator"]
        print(f"two-stage: the generator alone for steps 1-{record['boundary_step']}, then the discriminator against it "
              f"frozen, starting from its weights: {len(copied)} tensors copied ({', '.join(copied) or 'none'}), "
              f"{len(shared)} shared ({', '.join(shared) or 'none'})")
    if m:
        print("  " + "  ".join(f"{k}={m[k]:.4g}" for k in ("loss/gen", "loss/disc", "gen/accuracy", "disc/accuracy",
                                                             "throughput/tokens_per_s") if k in m))
    return 0
