"""`electra probe`: frozen-encoder probes of `electra_pipeline.evaluation.probe` from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from electra_pipeline.errors import ConfigError


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra probe`."""
    from electra_pipeline.evaluation.probe_config import ProbeConfig

    d = ProbeConfig()
    p = subparsers.add_parser(
        "probe", help="frozen-encoder probes on GLUE next to random init, bag-of-words and the majority class",
        description="Fit a linear probe (logistic regression; ridge for STS-B) on the frozen encoder's mean-pooled "
                    "and [CLS] states of every layer, with the layer, pooling and regularisation chosen on a split of "
                    "the training data only, and score it on dev next to the same config at random initialisation, "
                    "a bag-of-words model on the same examples, the majority class and, with --compare, a second "
                    "encoder. Every gain carries a paired bootstrap 95%% interval over dev examples. Writes "
                    "probe.json, probe.md and probe.png. Exit 2 with one line naming the path on bad input.")
    p.add_argument("source", metavar="RUN_OR_MODEL_DIR",
                   help="a pre-training run directory (its discriminator/, or generator/ for an MLM run) or a "
                        "Hugging Face ELECTRA directory")
    p.add_argument("--glue-dir", default="sample", metavar="DIR",
                   help="GLUE root (DIR/SST-2/train.tsv ...); `sample`: the slices shipped in the package")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="tasks to probe (default: sst2 cola mrpc stsb rte, and qnli mnli where their train files "
                        "exist); a named task without its train or dev file is an error")
    p.add_argument("--tokenizer", metavar="FILE", default=None,
                   help="tokenizer.json (default: beside the encoder, or the run's config.json `tokenizer`)")
    p.add_argument("--compare", metavar="DIR", default=None,
                   help="a second encoder probed the same way, e.g. the MLM arm's run directory")
    p.add_argument("--compare-label", default="mlm", help="its name in the table")
    p.add_argument("--max-train-examples", type=int, default=d.max_train_examples,
                   help="a fixed random subset of each training set; 0: all of it")
    p.add_argument("--select-examples", type=int, default=d.select_examples,
                   help="training examples the layer, pooling and regularisation are chosen on")
    p.add_argument("--seed", type=int, default=d.seed, help="fixes subsets, the selection split and the resamples")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where probe.json and probe.md go (default: RUN_OR_MODEL_DIR/probe)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from electra_cli.finetune import SAMPLE_DIR
    from electra_pipeline.evaluation import probe

    cfg = probe.ProbeConfig(tasks=args.tasks, max_train_examples=args.max_train_examples or None,
                            select_examples=args.select_examples, seed=args.seed)
    out = Path(args.out) if args.out else Path(args.source) / "probe"
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"out: {blocker} is a file, not a directory")
    data = SAMPLE_DIR / "glue" if args.glue_dir == "sample" else args.glue_dir
    result = probe.run(args.source, data, cfg, tokenizer=args.tokenizer, compare=args.compare,
                       compare_label=args.compare_label, random_init_dir=out / "random-init",
                       progress=lambda m: print(m, flush=True))
    path = probe.save(result, out)
    from flows.report import probe_chart

    probe_chart(result, out / "probe.png")
    if result["skipped"]:
        print(f"skipped (no train/dev files in {data}): {', '.join(result['skipped'])}")
    print(probe.format_table(result))
    print("\n".join(probe.verdict(result)))
    print(f"-> {path}")
    return 0
