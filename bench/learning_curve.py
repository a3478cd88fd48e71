"""When does a recipe leave the unigram plateau? Pre-trains in-process and scores held-out text
every `--every` steps: the generator's (or MLM model's) masked-token accuracy with every chosen
position masked, and the discriminator's replaced-token-detection ROC-AUC with unigram
replacements (electra_pipeline.training.intrinsic). Minutes on one core: the fast signal for a sweep.

    python bench/learning_curve.py --examples runs/examples --preset cpu --steps 1000
    python bench/learning_curve.py --examples runs/examples --preset tiny --steps 1000 \\
        --set model.relative_attention=0 --set train.objective=mlm
    python bench/learning_curve.py --smoke --work /tmp/lc    # examples from the shipped sample, tiny: seconds

On the held-out rows of `--examples`, the most-frequent-token guess scores ~4% masked-token
accuracy: a model at that level has learned unigram frequencies and no context. Last line:

    learning_curve steps=<n> masked_accuracy=<a> unigram_auc=<u>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=Path, help="examples directory with a held-out slice (required without --smoke)")
    p.add_argument("--preset", default="cpu", help="pre-training preset")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (warm-up and decay over them)")
    p.add_argument("--every", type=int, default=None, help="steps between held-out scores (default steps/5)")
    p.add_argument("--rows", type=int, default=256, help="held-out rows scored")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="config override, e.g. train.lr=5e-4 (repeatable)")
    p.add_argument("--smoke", action="store_true",
                   help="check the script in seconds: examples built from the shipped sample into --work, tiny "
                        "preset, 4 steps of 4 x 64, scored every 2 steps on 16 rows")
    p.add_argument("--work", type=Path, default=None, help="where --smoke builds its examples (required with it)")
    args = p.parse_args(argv)
    if args.smoke:
        if args.work is None:
            p.error("--smoke: give --work DIR for the examples it builds")
        args.preset, args.steps, args.every, args.rows = "tiny", 4, 2, 16
        args.overrides = [*args.overrides, "train.batch_size=4"]
    elif args.examples is None:
        p.error("--examples is required (or --smoke)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    from electra_pipeline.data.batches import Batch, ExampleShards, micro_batches
    from electra_pipeline.modeling import presets
    from electra_pipeline.training import cpu_paths, heldout, intrinsic, optim, runlog, runtime, train
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    if args.smoke:
        from smoke import examples

        args.examples = examples(args.work)

    overrides: dict = {}
    for item in args.overrides:
        key, value = item.split("=", 1)
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    data = ExampleShards(args.examples)
    overrides.setdefault("model", {})["vocab_size"] = data.vocab_size
    overrides.setdefault("train", {}).update(max_steps=args.steps, budget_flops="none", budget_minutes="none",
                                             seq_len=data.seq_len)
    cfg = presets.resolve(args.preset, None, overrides)
    t = cfg.train
    torch.manual_seed(t.seed)
    model = cpu_paths.apply(ElectraPretrainer(cfg.model, t))
    device = torch.device("cpu")
    optimizer = optim.build_optimizer(model, t, device)
    schedule = optim.Schedule.of(t, 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
    amp = runtime.autocast_dtype(t.precision, device)
    special = torch.tensor(sorted(set(data.special_ids.values())))
    rng = torch.Generator().manual_seed(t.seed * 1000)
    held_rows, train_rows = heldout.examples_rows(args.examples)
    probe = intrinsic.Probe(held_rows, train_rows, data.vocab_size, intrinsic.IntrinsicConfig(max_rows=args.rows))
    stream = micro_batches(data, batch_size=t.batch_size, grad_accum=t.grad_accum, seed=t.seed, start_example=0)
    every = args.every or max(1, args.steps // 5)
    print(f"# {args.preset} {' '.join(args.overrides)}: {args.steps} steps of {t.batch_size} x {t.seq_len}, "
          f"{args.rows} held-out rows of {args.examples}", flush=True)

    def mask(mb: Batch):
        return model.mask(mb.as_dict(), special, data.special_ids["mask"], rng)

    started = time.perf_counter()
    acc = auc = float("nan")
    window: dict[str, float] = {}  # training metrics summed since the last held-out score
    for step in range(1, args.steps + 1):
        metrics = train.train_step(model, model, optimizer, scheduler, next(stream), mask, device=device, amp=amp,
                                   grad_clip=t.grad_clip, rng=rng)
        for k, v in metrics.items():
            window[k] = window.get(k, 0.0) + float(v)
        if step % every == 0 or step == args.steps:
            scores = probe.score(model.discriminator, model.generator)
            acc = scores["heldout/masked_accuracy"]
            line = f"step {step:>6}  {time.perf_counter() - started:6.0f} s  masked-token accuracy {100 * acc:5.1f}%"
            if model.discriminator is not None:
                auc = scores["heldout/unigram_auc"]
                n = step - (step - 1) // every * every  # steps in this window
                mean = {k: v / n for k, v in window.items()}
                line += (f"  unigram ROC-AUC {auc:.3f}  |  training: RTD loss/prior {runlog.rtd_over_prior(mean):.3f}"
                         f"  recall {100 * mean['disc/recall']:4.1f}%  replaced {100 * mean['disc/replaced_fraction']:4.1f}%")
            print(line, flush=True)
            window.clear()
    print(f"learning_curve steps={args.steps} masked_accuracy={acc:.4f} unigram_auc={auc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
