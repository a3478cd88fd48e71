"""GLUE (+ SQuAD v1.1) dev scores of a pre-trained ELECTRA checkpoint against a randomly
initialised ELECTRA-Small fine-tuned with the same recipe: what pre-training buys.

Runs `finetune.evaluate` on every GLUE task with train and dev files under `--data`
(default ../shared/data: CoLA, SST-2, MRPC, STS-B, RTE, WNLI there) plus SQuAD v1.1 when its
files are present, once from (a) a random-init `small` discriminator and (b) `--checkpoint`
(an HF ELECTRA dir, ours or Google's) if given. Both use the same tokenizer: `--tokenizer`, else
a WordPiece trained here on the GLUE train text and SQuAD train paragraphs (fine for (a) only;
a checkpoint needs the tokenizer it was pre-trained with).

    python bench/glue.py --quick                       # CPU smoke run, < 15 min on 2 cores
    python bench/glue.py --checkpoint runs/pretrain/discriminator --tokenizer runs/tokenizer/tokenizer.json
    python bench/glue.py --device cuda --checkpoint DIR --tokenizer FILE --seeds 1 2 3 4 5
    python bench/glue.py --smoke --out /tmp/glue       # the shipped GLUE/SQuAD sample, tiny: seconds

`--quick`: 384 train / 200 dev examples per task, one epoch, one seed, seq 64 (SQuAD: 192
train / 100 dev questions, seq 192, stride 64). Numbers from it are a smoke signal, not a
reproduction; full runs (default on CUDA) use the full sets and the reference recipe.
`--smoke` checks the script: the GLUE and SQuAD samples shipped in electra_pipeline/sample, a
random-init `tiny` model, 16 train / 16 dev examples per task, seq 32, a 1,000-token WordPiece.
The last line is machine-readable:

    glue tasks=<n> score_pretrained=<x> score_random=<y>
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from electra_pipeline.evaluation.finetune import EvaluationResult, FinetuneConfig, FinetuneResult

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

# REFERENCE.md, "Official dev results": ELECTRA-Small (OpenWebText), median of many seeds
PAPER_SMALL = {"cola": 56.8, "sst2": 88.3, "mrpc": 87.4, "stsb": 86.8, "qqp": 88.3, "mnli": 78.9, "qnli": 87.9,
               "rte": 68.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="pre-trained HF ELECTRA dir for (b); omitted: only (a) runs")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json of the checkpoint (default: train a WordPiece here)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data root with glue/<Task>/ and squad/")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_glue", help="output directory")
    p.add_argument("--quick", action="store_true", help="small slices, one epoch, one seed, short sequences")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: the shipped samples, tiny model, 16 examples per task (implies --quick's one seed)")
    p.add_argument("--no-squad", action="store_true", help="GLUE only")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 1 (quick) or 1 2 3")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (on a busy shared CPU, 1 can be several times faster than 2)")
    p.add_argument("--vocab-size", type=int, default=None, help="fallback WordPiece size (default 8192 quick, 30522)")
    args = p.parse_args(argv)
    if args.smoke:
        args.quick, args.data = True, REPO / "electra_pipeline" / "sample"
        args.vocab_size = args.vocab_size or 1000
    return args


def train_fallback_tokenizer(data: Path, tasks: list[str], out: Path, vocab_size: int) -> Path:
    """BERT-style uncased WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4, on task text."""

    from electra_pipeline.evaluation.tasks import get_task

    texts: list[str] = []
    for name in tasks:
        for e in get_task(name).read(data, "train"):
            texts += [e.context, e.question] if name.startswith("squad") else [e.text_a, e.text_b or ""]
    texts = list(dict.fromkeys(t for t in texts if t))
    from electra_pipeline.data.tokenizer import TokenizerConfig, fit_wordpiece

    tok = fit_wordpiece(texts, TokenizerConfig(vocab_size=vocab_size, min_frequency=0))
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def run(name: str, tasks: list[str], checkpoint: Path | None, tokenizer: Path, args: argparse.Namespace,
        cfg: FinetuneConfig, squad_cfg: FinetuneConfig) -> tuple[EvaluationResult, FinetuneResult | None]:
    """evaluate() for the GLUE tasks, finetune() for SQuAD (its own window settings)."""
    from electra_pipeline.evaluation.finetune import evaluate, finetune

    glue = [t for t in tasks if not t.startswith("squad")]
    t0 = time.perf_counter()
    res = evaluate(glue, checkpoint, tokenizer, args.data, args.out / name, cfg)
    squad = None
    if "squad_v1" in tasks:
        squad = finetune("squad_v1", checkpoint, tokenizer, args.data, args.out / name / "squad_v1",
                         fit_windows(squad_cfg, checkpoint))
    print(f"[{name}] done in {time.perf_counter() - t0:.0f}s -> {args.out / name}", flush=True)
    return res, squad


def fit_windows(cfg: FinetuneConfig, checkpoint: Path | None) -> FinetuneConfig:
    """SQuAD windows no longer than the checkpoint's position table (the tiny preset has 128)."""
    if checkpoint is None or cfg.max_seq_length is None:
        return cfg
    n = json.loads((checkpoint / "config.json").read_text()).get("max_position_embeddings", cfg.max_seq_length)
    if cfg.max_seq_length <= n:
        return cfg
    return dataclasses.replace(cfg, max_seq_length=n, max_query_length=min(cfg.max_query_length, n // 4),
                               doc_stride=min(cfg.doc_stride, n // 4))


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import torch

    from electra_pipeline.errors import DataError
    from electra_pipeline.evaluation import metrics
    from electra_pipeline.evaluation.finetune import FinetuneConfig
    from electra_pipeline.evaluation.finetune.recipe import resolve_device
    from electra_pipeline.evaluation.tasks import GLUE_TASKS, glue_tasks_present
    from electra_pipeline.evaluation.tasks.squad import find_file

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    quick = args.quick
    if not quick and device.type != "cuda":
        print("note: full sets without CUDA take days on a CPU; --quick is the CPU smoke run")
    tasks = glue_tasks_present(args.data)
    skipped = [t for t in GLUE_TASKS if t not in tasks]
    if not args.no_squad:
        try:
            find_file(args.data, "v1", "train"), find_file(args.data, "v1", "dev")
            tasks.append("squad_v1")
        except DataError:
            skipped.append("squad_v1")
    if not tasks:
        print(f"no GLUE task with train and dev files under {args.data}", file=sys.stderr)
        return 2
    print(f"tasks: {', '.join(tasks)}; skipped (no train/dev files): {', '.join(skipped) or 'none'}")

    seeds = args.seeds or ([1] if quick else [1, 2, 3])
    cfg = FinetuneConfig(seeds=seeds, device=args.device, model_preset="small")
    squad_cfg = cfg
    if quick:
        cfg = dataclasses.replace(cfg, epochs=1, max_seq_length=64, max_train_examples=384, max_eval_examples=200,
                                  predict_test=False)
        squad_cfg = dataclasses.replace(cfg, max_seq_length=192, doc_stride=64, max_train_examples=192,
                                        max_eval_examples=100)
    if args.smoke:
        cfg = dataclasses.replace(cfg, max_seq_length=32, max_train_examples=16, max_eval_examples=16,
                                  batch_size=8, model_preset="tiny")
        squad_cfg = dataclasses.replace(cfg, max_seq_length=64, doc_stride=32, max_query_length=16)
    print(f"mode: {'smoke' if args.smoke else 'quick' if quick else 'full'} on {device} ({torch.get_num_threads()} threads); seeds {seeds}")

    if args.tokenizer is None:
        if args.checkpoint is not None:
            print("--checkpoint needs the --tokenizer it was pre-trained with", file=sys.stderr)
            return 2
        vocab = args.vocab_size or (8192 if quick else 30522)
        t0 = time.perf_counter()
        tokenizer = train_fallback_tokenizer(args.data, tasks, args.out / "tokenizer", vocab)
        print(f"no --tokenizer: trained a {vocab}-token WordPiece on the task train text in "
              f"{time.perf_counter() - t0:.0f}s -> {tokenizer}")
    else:
        tokenizer = args.tokenizer
    if args.checkpoint is None:
        print(f"no --checkpoint given: running only (a), the randomly initialised {cfg.model_preset} baseline")

    random_res, random_squad = run("random", tasks, None, tokenizer, args, cfg, squad_cfg)
    pre_res = pre_squad = None
    if args.checkpoint is not None:
        pre_res, pre_squad = run("pretrained", tasks, args.checkpoint, tokenizer, args, cfg, squad_cfg)

    from electra_pipeline.evaluation.finetune.loop import task_score
    from electra_pipeline.evaluation.tasks import get_task

    print()
    print(f"| task | metrics | random-init {cfg.model_preset} | pretrained | paper ELECTRA-Small (OWT) |")
    print("|---|---|---|---|---|")
    for t in [x for x in tasks if not x.startswith("squad")]:
        r = random_res.results[t]
        p = pre_res.results[t] if pre_res else None
        names = "/".join(get_task(t).metric_names)
        print(f"| {t} | {names} | {fmt(task_score(get_task(t), r.metrics))} | "
              f"{fmt(task_score(get_task(t), p.metrics) if p else None)} | {fmt(PAPER_SMALL.get(t))} |")
    if random_squad is not None:
        em = lambda r: None if r is None else r.metrics["exact_match"]  # noqa: E731
        f1 = lambda r: None if r is None else r.metrics["f1"]  # noqa: E731
        print(f"| squad_v1 | EM | {fmt(em(random_squad))} | {fmt(em(pre_squad))} | - |")
        print(f"| squad_v1 | F1 | {fmt(f1(random_squad))} | {fmt(f1(pre_squad))} | - |")
    n = sum(1 for t in tasks if t in metrics.GLUE_SCORE_METRICS and t != "wnli")
    score_pre = pre_res.glue_score if pre_res else float("nan")
    print(f"| **GLUE score** ({n} tasks, WNLI excluded) | | {fmt(random_res.glue_score)} | {fmt(score_pre)} | |")
    print()
    print(f"glue tasks={n} score_pretrained={score_pre:.2f} score_random={random_res.glue_score:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
