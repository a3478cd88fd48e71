"""`electra intrinsic`: the command line of the held-out evaluation in `electra_pipeline.training.intrinsic`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from electra_pipeline.errors import ConfigError
from electra_pipeline.training.intrinsic_config import IntrinsicConfig


def add_cli(subparsers: Any) -> None:
    """Register `electra intrinsic`."""
    d = IntrinsicConfig()
    p = subparsers.add_parser(
        "intrinsic", help="did pre-training learn context? held-out replaced-token detection vs baselines",
        description="Score a pre-trained model on held-out text in seconds: replaced-token-detection ROC-AUC and "
                    "average precision with unigram replacements (token identity worthless: only context helps) "
                    "and with the run's own generator, next to the same config at random initialisation and a "
                    "context-free detector; masked-token accuracy and perplexity. Writes intrinsic.json. Exit 2 "
                    "with one line naming the file on bad input (missing, empty or too little held-out text).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a pre-training run directory, or a Hugging Face ELECTRA discriminator directory (with --generator)")
    p.add_argument("--generator", metavar="DIR", default=None,
                   help="Hugging Face ElectraForMaskedLM directory (default: CHECKPOINT/generator)")
    p.add_argument("--examples", metavar="DIR", default=None,
                   help="examples directory with a held-out slice (default: the run's config.json `data`)")
    p.add_argument("--text", metavar="FILE", nargs="+", default=None,
                   help="score these text files instead (one paragraph a line, blank line between documents)")
    p.add_argument("--tokenizer", metavar="FILE", default=None,
                   help="tokenizer for --text (default: the run's config.json `tokenizer`)")
    p.add_argument("--out", metavar="DIR", default=None, help="where intrinsic.json goes (default: CHECKPOINT)")
    p.add_argument("--max-rows", type=int, default=d.max_rows, help=f"held-out rows scored (default: {d.max_rows})")
    p.add_argument("--mask-prob", type=float, default=d.mask_prob,
                   help=f"share of held-out tokens replaced (default: {d.mask_prob})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"fixes the corrupted positions and replacements (default: {d.seed})")
    p.set_defaults(func=_run)


def _run(args: Any) -> int:
    from electra_pipeline.training.intrinsic import format_table, run, save, verdict

    cfg = IntrinsicConfig(max_rows=args.max_rows, mask_prob=args.mask_prob, seed=args.seed)
    out = Path(args.out or args.checkpoint)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} is not a directory")
    result = run(args.checkpoint, generator=args.generator, examples=args.examples, text=args.text,
                 tokenizer=args.tokenizer, cfg=cfg)
    out.mkdir(parents=True, exist_ok=True)
    path = save(result, out)
    print(f"intrinsic evaluation on {result['heldout']['rows']} held-out rows ({result['heldout']['tokens']:,} tokens) "
          f"from {result['heldout']['source']}")
    print(format_table(result))
    print(verdict(result))
    print(f"-> {path}")
    return 0
