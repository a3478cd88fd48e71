"""Domain adaptation on a CPU budget: continue a model pre-trained on one domain against training
from scratch on the new one, at the same training FLOPs, scored on the new domain's held-out text.

    python bench/adaptation.py                      # Wikipedia -> Gutenberg, the cpu preset
    python bench/adaptation.py --source-flops 6e13 --flops 2e13
    python bench/adaptation.py --smoke --work /tmp/adapt   # two halves of the shipped sample, tiny: a script check

Steps (each cached in --work):
1. Two corpora from ../shared/data/corpus: Wikipedia (the source domain) and Gutenberg (the
   target); a WordPiece on Wikipedia only; examples of both with it, 2% of documents held out.
2. The source model: `--preset` on Wikipedia for `--source-flops`.
3. Side by side, one core each, `--flops` each on Gutenberg: the source model continued
   (`electra pretrain --init-from SOURCE`) and the same config from random initialisation.
4. `electra intrinsic` of both on Gutenberg's held-out slice; the continued run's report carries
   the source model's figures on the same text (its starting point).

Last line: `adaptation flops=<F> auc_start=<s> auc_adapted=<a> auc_scratch=<c> auc_random=<r>
acc_start=<%> acc_adapted=<%> acc_scratch=<%>` (unigram-replacement ROC-AUC; masked-token accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import DEFAULT_DATA, REPO, electra_cmd, log_of, sh, wait  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", help="pre-training preset of every run")
    p.add_argument("--source-flops", type=float, default=6e13, help="training FLOPs of the source (Wikipedia) model")
    p.add_argument("--flops", type=float, default=2e13, help="training FLOPs of each run on the target domain")
    p.add_argument("--vocab-size", type=int, default=8192, help="WordPiece size, trained on the source domain")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data root with corpus/")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench_adaptation", help="work and cache directory")
    p.add_argument("--smoke", action="store_true",
                   help="check the script, not the result: the shipped sample's documents dealt into a source and "
                        "a target half (written into --work), tiny preset, a 1,000-token WordPiece, a few steps")
    args = p.parse_args(argv)
    if args.smoke:
        args.preset, args.vocab_size, args.source_flops, args.flops = "tiny", 1000, 4e9, 2e9
    for name in ("source_flops", "flops"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')}: must be > 0")
    return args


def steps(work: Path, *todo: tuple[Path, list[str]], threads: int = 1) -> None:
    """Run the `electra` commands whose output (`done`) is missing, side by side; each logs to
    `<work>/<output dir>.log`."""
    procs = []
    for done, cmd in todo:
        if not done.is_file():
            log = work / f"{done.parent.name}.log"
            procs.append((sh(electra_cmd(*cmd), log, threads=threads), log))
    wait(procs)


def pretrain_cmd(args: argparse.Namespace, examples: Path, tok: Path, out: Path, flops: float, *extra: str) -> list[str]:
    if args.smoke:  # the sample's vocabulary and rows: the tiny preset's own 8,192 x 128 do not fit them
        extra = ("--model.vocab_size", str(args.vocab_size), "--train.batch_size", "4", "--train.seq_len", "64", *extra)
    return electra_cmd("pretrain", "--preset", args.preset, "--data", str(examples), "--tokenizer", str(tok),
                       "--output-dir", str(out), "--train.budget_flops", str(flops), "--tracking.enabled", "false",
                       "--no-progress", "--resume", "auto", *extra)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    w = args.work
    corpus = args.data / "corpus"
    source_text, target_text = corpus / "wikipedia_en_2015_sample.txt.gz", corpus / "gutenberg_en.txt.gz"
    if args.smoke:
        from smoke import corpus_slice

        source_text, target_text = corpus_slice(w / "smoke-input", parts=2)
    wiki, gut, tok = w / "wikipedia", w / "gutenberg", w / f"tokenizer-wikipedia-{args.vocab_size}"
    steps(w, (wiki / "manifest.json", ["corpus", str(source_text), "-o", str(wiki), "--no-progress"]),
          (gut / "manifest.json", ["corpus", str(target_text), "-o", str(gut), "--no-progress"]))
    steps(w, (tok / "tokenizer.json", ["tokenizer", str(wiki), "-o", str(tok), "--vocab-size", str(args.vocab_size),
                                       "--no-progress"]), threads=2)
    ex_wiki, ex_gut = w / "examples-wikipedia", w / "examples-gutenberg"
    shape = ["--seq-len", "64", "--holdout-fraction", "0.1"] if args.smoke else []
    steps(w, *[(ex / "meta.json", ["examples", "--corpus", str(c), "--tokenizer", str(tok), "-o", str(ex),
                                   "--no-progress", *shape]) for c, ex in ((wiki, ex_wiki), (gut, ex_gut))])

    source = w / "runs" / f"source-wikipedia-{args.source_flops:.3g}"
    if not (source / "summary.json").is_file():
        wait([(sh(pretrain_cmd(args, ex_wiki, tok, source, args.source_flops), log_of(source)), log_of(source))])
    adapted = w / "runs" / f"adapted-gutenberg-{args.flops:.3g}-from-{args.source_flops:.3g}"
    scratch = w / "runs" / f"scratch-gutenberg-{args.flops:.3g}"
    procs = []
    for out, extra in ((adapted, ("--init-from", str(source))), (scratch, ())):
        if not (out / "summary.json").is_file():
            procs.append((sh(pretrain_cmd(args, ex_gut, tok, out, args.flops, *extra), log_of(out)), log_of(out)))
    wait(procs)
    runs = {"adapted": adapted, "scratch": scratch}
    wait([(sh(electra_cmd("intrinsic", str(out)), out / "intrinsic.log"), out / "intrinsic.log")
          for out in runs.values() if not (out / "intrinsic.json").is_file()])
    scores = {name: json.loads((out / "intrinsic.json").read_text()) for name, out in runs.items()}

    u, m = scores["adapted"]["unigram"], scores["adapted"]["mlm"]
    line = {"flops": f"{args.flops:.3g}", "auc_start": f"{u['start']['auc']:.3f}", "auc_adapted": f"{u['pretrained']['auc']:.3f}",
            "auc_scratch": f"{scores['scratch']['unigram']['pretrained']['auc']:.3f}",
            "auc_random": f"{u['random_init']['auc']:.3f}",
            "acc_start": f"{100 * m['start']['accuracy']:.1f}", "acc_adapted": f"{100 * m['pretrained']['accuracy']:.1f}",
            "acc_scratch": f"{100 * scores['scratch']['mlm']['pretrained']['accuracy']:.1f}"}
    print(f"\nGutenberg held-out ({scores['adapted']['heldout']['rows']} rows): source model trained on Wikipedia "
          f"for {args.source_flops:.3g} FLOPs; each run below {args.flops:.3g} FLOPs on Gutenberg")
    print("| model | unigram-replacement ROC-AUC | masked-token accuracy |\n|---|---|---|")
    print(f"| source, before adaptation | {line['auc_start']} | {line['acc_start']}% |")
    print(f"| source continued on Gutenberg | {line['auc_adapted']} | {line['acc_adapted']}% |")
    print(f"| from scratch on Gutenberg | {line['auc_scratch']} | {line['acc_scratch']}% |")
    print(f"| random init | {line['auc_random']} | {100 * m['random_init']['accuracy']:.1f}% |")
    (w / "results.json").write_text(json.dumps({"line": line, "intrinsic": scores}, indent=2) + "\n")
    print("\nadaptation " + " ".join(f"{k}={v}" for k, v in line.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
