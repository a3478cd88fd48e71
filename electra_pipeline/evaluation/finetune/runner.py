"""`finetune` (one task, several seeds) and `evaluate` (many tasks, one checkpoint).

Inputs are checked before any training starts (tokenizer vs checkpoint vocabulary, split
files, sequence length vs position embeddings). Outputs of one task in `out_dir`:

    config.json             the resolved recipe, model config and data paths
    metrics.json            median over seeds, every seed's metrics, the best seed, the majority baseline
    model/                  the best seed's fine-tuned model (finetuned.save_finetuned) and its
                            model card README.md (write_model_card)
    predictions/<split>.*   the best seed's dev predictions
    seeds/<seed>/<split>.*  every seed's dev predictions
    submission/<Task>.tsv   test-set predictions in the GLUE leaderboard format
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from electra_pipeline import atomic, integrity
from electra_pipeline.atomic import ensure_dir
from electra_pipeline.errors import DataError, read_json_object
from electra_pipeline.evaluation import metrics
from electra_pipeline.evaluation import results as results_file
from electra_pipeline.evaluation.baselines import majority_metrics
from electra_pipeline.evaluation.finetune.loop import run_model, task_score, train_seed
from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig, resolve_device, resolved
from electra_pipeline.evaluation.finetuned import TaskMeta, build_model, read_meta, save_finetuned
from electra_pipeline.evaluation.finetuned import model_card as finetuned_card
from electra_pipeline.evaluation.tasks import GLUE_TASKS, SquadTask, Task, canonical_name, get_task, glue_tasks_present
from electra_pipeline.evaluation.tasks.base import special_ids, subset
from electra_pipeline.modeling import hf, presets
from electra_pipeline.modeling.config import ModelConfig
from electra_pipeline.modeling.model import init_weights
from electra_pipeline.tracking import NullTracker, Tracker
from electra_pipeline.training import cpu_paths


@dataclass
class FinetuneResult:
    task: str
    metrics: dict[str, float]  # median over seeds, percent
    seed_metrics: dict[int, dict[str, float]]  # per seed (final weights of each)
    best_seed: int
    model_dir: Path  # save_finetuned directory of the best seed
    predictions: dict[str, Path]  # split -> dev predictions file of the best seed
    submission: dict[str, Path] = field(default_factory=dict)  # leaderboard file stem -> path
    out_dir: Path = Path(".")


@dataclass
class EvaluationResult:
    results: dict[str, FinetuneResult]
    glue_score: float  # mean task score over the GLUE tasks run (WNLI excluded, as the paper)
    table_md: Path
    table_json: Path
    submission_dir: Path | None


# --- inputs ---------------------------------------------------------------------------------


def load_tokenizer_file(path: str | Path) -> tuple[Tokenizer, Path]:
    """(tokenizer, its tokenizer.json) from the file or a directory holding it."""
    p = Path(path)
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"{f}: tokenizer file not found")
    try:
        return Tokenizer.from_file(str(f)), f
    except Exception as e:  # tokenizers raises a plain Exception on malformed JSON
        raise DataError(f"{f}: not a tokenizers JSON file ({e})") from None


def load_encoder_config(checkpoint: str | Path | None, cfg: FinetuneConfig,
                        vocab_size: int) -> tuple[ModelConfig, dict[str, torch.Tensor] | None]:
    """The checkpoint's config and encoder weights, or a preset config for random init."""
    if checkpoint is None:
        model_cfg = presets.preset(cfg.model_preset).model
        return dataclasses.replace(model_cfg, vocab_size=vocab_size, max_position_embeddings=512), None
    integrity.verify_dir(checkpoint)
    model_cfg, state = hf.load_encoder(checkpoint)
    if model_cfg.vocab_size != vocab_size:
        raise DataError(f"{Path(checkpoint) / 'config.json'}: vocab_size {model_cfg.vocab_size} does not match the "
                        f"tokenizer's {vocab_size}; fine-tune with the tokenizer the checkpoint was pre-trained with")
    return model_cfg, state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], checkpoint: str | Path) -> None:
    """Strict load of the pre-trained encoder; a mismatch names the checkpoint, not a traceback."""
    own = model.electra.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise DataError(f"{checkpoint}: encoder lacks {len(missing)} tensors (first: {missing[0]})")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise DataError(f"{checkpoint}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    model.electra.load_state_dict({k: state[k] for k in own})


def build_task(name: str, cfg: FinetuneConfig) -> Task:
    task = get_task(name)
    if isinstance(task, SquadTask):
        task = task.with_options(doc_stride=cfg.doc_stride, max_query_length=cfg.max_query_length,
                                 max_answer_length=cfg.max_answer_length, n_best_size=cfg.n_best_size)
    return task


def _has_split(task: Task, data_dir: str | Path, split: str) -> bool:
    if str(data_dir).startswith("hf:"):
        return True
    try:
        path = task.split_file(data_dir, split)
    except DataError:
        return False
    return path is not None and path.is_file()


def check_inputs(tasks: list[str], checkpoint: str | Path | None, tokenizer: str | Path, data_dir: str | Path,
                 cfg: FinetuneConfig) -> None:
    """Every user mistake we can see up front (task names, tokenizer, checkpoint and its
    vocabulary, missing train/dev files, sequence length), before any training or MLflow run."""
    names = [canonical_name(n) for n in tasks]
    if not names:
        raise DataError(f"{data_dir}: no GLUE task with train and dev files found "
                        "(expected <data_dir>/<TaskDir>/train.tsv and dev.tsv, e.g. SST-2/)")
    tok, _ = load_tokenizer_file(tokenizer)
    special_ids(tok)
    model_cfg, _ = load_encoder_config(checkpoint, cfg, tok.get_vocab_size())
    for name in names:
        t = build_task(name, cfg)
        resolved(cfg, t, model_cfg)
        if str(data_dir).startswith("hf:"):
            continue
        for split in ("train", *t.eval_splits):
            path = t.split_file(data_dir, split)
            if path is not None and not path.is_file():
                raise DataError(f"{path}: missing {split} split for {t.name}")


# --- one task ---------------------------------------------------------------------------------


def task_meta(t: Task, cfg: FinetuneConfig, scores: dict[str, float]) -> TaskMeta:
    """The task's meta with this recipe's head pooling (sequence tasks; QA reads every token)."""
    meta = t.meta(cfg.max_seq_length, scores)
    return meta if meta.kind == "qa" else dataclasses.replace(meta, pooling=cfg.pooling)


def finetune(task: str, checkpoint: str | Path | None, tokenizer: str | Path, data_dir: str | Path,
             out_dir: str | Path, cfg: FinetuneConfig, tracker: Tracker | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune `checkpoint` (HF ELECTRA dir; None = random init of `cfg.model_preset`) on one
    task once per seed and report the median, as the paper does: single runs vary by points."""
    tracker = tracker or NullTracker()
    progress = progress and sys.stderr.isatty()
    t = build_task(task, cfg)
    tok, tok_file = load_tokenizer_file(tokenizer)
    model_cfg, encoder_state = load_encoder_config(checkpoint, cfg, tok.get_vocab_size())
    cfg = resolved(cfg, t, model_cfg)
    device = resolve_device(cfg.device)
    _, _, pad_id = special_ids(tok)

    train_ex = subset(t.read(data_dir, "train"), cfg.max_train_examples, cfg.data_seed)
    evals = {}
    for split in t.eval_splits:
        ex = subset(t.read(data_dir, split), cfg.max_eval_examples, cfg.data_seed)
        evals[split] = (ex, t.featurize(ex, tok, cfg.max_seq_length, training=False))
    tests = {s: t.read(data_dir, s) for s in t.test_splits if cfg.predict_test and _has_split(t, data_dir, s)}
    train_feats = t.featurize(train_ex, tok, cfg.max_seq_length, training=True)
    lr_scores: dict[str, float] = {}
    if cfg.lr_grid:
        def new_model() -> torch.nn.Module:
            return _initialised(t, cfg, model_cfg, encoder_state, checkpoint).to(device)

        cfg, lr_scores = select_lr(t, train_ex, tok, cfg, new_model, pad_id, device, tracker)

    out = ensure_dir(Path(out_dir))
    run_info = {"task": t.name, "checkpoint": str(checkpoint) if checkpoint else None, "tokenizer": str(tok_file),
                "data_dir": str(data_dir), "train_examples": len(train_ex), "train_features": len(train_feats),
                "eval_examples": {s: len(e) for s, (e, _) in evals.items()},
                "finetune": dataclasses.asdict(cfg), "model": dataclasses.asdict(model_cfg)}
    atomic.write_text(out / "config.json", json.dumps(run_info, indent=2) + "\n")
    tracker.log_params({k: v for k, v in run_info.items() if k != "eval_examples"})

    seed_metrics: dict[int, dict[str, float]] = {}
    best: tuple[float, int, torch.nn.Module, dict] | None = None
    for seed in cfg.seeds:
        with tracker.child(f"{t.name}-seed{seed}") as st:
            st.log_params({"task": t.name, "seed": seed})
            torch.manual_seed(seed)
            model = _initialised(t, cfg, model_cfg, encoder_state, checkpoint).to(device)
            scores, preds = train_seed(t, model, train_feats, evals, cfg, seed, pad_id, device, st, progress)
            st.log_metrics({f"final/{k}": v for k, v in scores.items()} | {"final/score": task_score(t, scores)},
                           step=cfg.epochs)
            for split, (ex, _) in evals.items():
                st.log_artifact(t.write_predictions(ex, preds[split], out / "seeds" / str(seed) / f"{split}.jsonl"))
            seed_metrics[seed] = scores
            score = task_score(t, scores)
            if best is None or score > best[0]:
                best = (score, seed, model, preds)
            del model

    _, best_seed, best_model, best_preds = best
    keys = seed_metrics[best_seed].keys()
    median = {k: float(statistics.median(m[k] for m in seed_metrics.values())) for k in keys}
    meta = task_meta(t, cfg, seed_metrics[best_seed])
    model_dir = save_finetuned(best_model, meta, tok_file, out / "model")
    predictions = {split: t.write_predictions(ex, best_preds[split], out / "predictions" / f"{split}.jsonl")
                   for split, (ex, _) in evals.items()}
    submission = {}
    for split, ex in tests.items():
        feats = t.featurize(ex, tok, cfg.max_seq_length, training=False)
        outputs = run_model(best_model, t, feats, cfg.eval_batch_size, pad_id, device, cfg.precision)
        stem = t.test_splits[split]
        path = t.write_submission(ex, t.predict(ex, feats, outputs), out / "submission" / f"{stem}.tsv")
        if path is not None:
            submission[stem] = path
    summary = {"task": t.name, "metrics": median, "score": task_score(t, median), "best_seed": best_seed,
               "seeds": {str(s): m for s, m in seed_metrics.items()}}
    if lr_scores:
        summary["lr_selection"] = {"lr": cfg.lr, "heldout_scores": lr_scores,
                                   "heldout_fraction": cfg.lr_select_fraction, "seed": cfg.seeds[0]}
    if t.kind != "qa":  # what a constant prediction scores on the same dev examples: beside the results
        summary["baselines"] = {"majority": majority_baseline(t, train_ex, {s: ex for s, (ex, _) in evals.items()})}
    atomic.write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_model_card(out)
    tracker.log_metrics({f"dev/{k}": v for k, v in median.items()} | {"dev/score": summary["score"]}, step=0)
    for p in (out / "config.json", out / "metrics.json", *predictions.values(), *submission.values()):
        tracker.log_artifact(p)
    tracker.log_artifact(model_dir, "model")  # what export and serving load
    return FinetuneResult(task=t.name, metrics=median, seed_metrics=seed_metrics, best_seed=best_seed,
                          model_dir=model_dir, predictions=predictions, submission=submission, out_dir=out)


def _initialised(t: Task, cfg: FinetuneConfig, model_cfg: ModelConfig, encoder_state: dict | None,
                 checkpoint: str | Path | None) -> torch.nn.Module:
    """A task model with the pre-trained encoder loaded (or initialised at random: the baseline)."""
    model = cpu_paths.apply(build_model(model_cfg, task_meta(t, cfg, {})))
    if encoder_state is None:
        init_weights(model, model_cfg.initializer_range)
    else:
        load_into(model, encoder_state, checkpoint)
    return model


def select_lr(t: Task, train_ex: list, tok: Tokenizer, cfg: FinetuneConfig, new_model: Callable[[], torch.nn.Module],
              pad_id: int, device: torch.device, tracker: Tracker) -> tuple[FinetuneConfig, dict[str, float]]:
    """Choose the peak lr from `cfg.lr_grid` as the paper's per-task grid does, but on a held-out
    share of the training examples, so dev stays unseen: one run of the first seed per rate.
    Returns the config with the chosen `lr` and each rate's held-out score."""
    rng = random.Random(cfg.data_seed)
    order = list(range(len(train_ex)))
    rng.shuffle(order)
    n_held = max(1, round(cfg.lr_select_fraction * len(train_ex)))
    if len(train_ex) - n_held < 1:
        raise DataError(f"{t.name}: {len(train_ex)} training examples are too few to hold out a share for lr_grid")
    held = [train_ex[i] for i in sorted(order[:n_held])]
    fit = [train_ex[i] for i in sorted(order[n_held:])]
    fit_feats = t.featurize(fit, tok, cfg.max_seq_length, training=True)
    # scored under the first eval split's metric names; the examples are the held-out training share
    evals = {next(iter(t.eval_splits)): (held, t.featurize(held, tok, cfg.max_seq_length, training=False))}
    seed, scores = cfg.seeds[0], {}
    for lr in cfg.lr_grid:
        trial = dataclasses.replace(cfg, lr=float(lr), select="last")
        with tracker.child(f"{t.name}-lr{lr:g}-heldout") as st:
            st.log_params({"task": t.name, "seed": seed, "lr": lr, "heldout_examples": len(held)})
            torch.manual_seed(seed)
            split_scores, _ = train_seed(t, new_model(), fit_feats, evals, trial, seed, pad_id, device, st, False)
            scores[f"{lr:g}"] = task_score(t, split_scores)
            st.log_metrics({"heldout/score": scores[f"{lr:g}"]}, step=0)
    best = max(cfg.lr_grid, key=lambda lr: scores[f"{lr:g}"])  # ties: the first (smallest when sorted)
    tracker.log_params({"lr_selected": best})
    return dataclasses.replace(cfg, lr=float(best)), scores


def majority_baseline(t: Task, train: list, evals: dict[str, list]) -> dict[str, float]:
    """The majority-class (regression: mean-label) metrics on every dev split, keyed as the model's."""
    out: dict[str, float] = {}
    for split, examples in evals.items():
        suffix = t.eval_splits[split]
        out |= {f"{k}{suffix}": v for k, v in majority_metrics(t, train, examples).items()}
    return out


def write_model_card(task_dir: str | Path, baselines: dict[str, dict[str, float]] | None = None) -> Path:
    """(Re)write `<task_dir>/model/README.md` from what `finetune` saved in `task_dir` (config.json,
    metrics.json, model/task.json). `baselines` (name -> metrics, `finetuned.BASELINES`) join the
    recorded ones: the evaluate flow knows the random-init baseline only after every task has run."""
    d = Path(task_dir)
    run_info = read_json_object(d / "config.json")
    summary = read_json_object(d / "metrics.json")
    meta = read_meta(d / "model")
    card_summary = {"metrics": summary.get("metrics", {}), "seeds": summary.get("seeds", {}),
                    "best_seed": summary.get("best_seed"), "splits": get_task(meta.task).eval_splits,
                    "baselines": (summary.get("baselines") or {}) | (baselines or {})}
    return atomic.write_text(d / "model" / "README.md", finetuned_card(meta, run_info, card_summary))


# --- many tasks -------------------------------------------------------------------------------


def default_tasks(data_dir: str | Path) -> list[str]:
    """The GLUE tasks with train and dev files in `data_dir` (all nine for `hf:glue`)."""
    return list(GLUE_TASKS) if str(data_dir).startswith("hf:") else glue_tasks_present(data_dir)


_NOT_SHOWN = ("thresh", "threshold", "total")  # SQuAD v2 bookkeeping keys, not scores


def format_table(results: dict[str, FinetuneResult], score: float) -> str:
    """Markdown: one row per task (median metrics) and the GLUE score row."""
    lines = ["| task | score | dev metrics (median over seeds) | seeds |", "|---|---|---|---|"]
    for name, r in results.items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in r.metrics.items() if not k.endswith(_NOT_SHOWN))
        lines.append(f"| {name} | {task_score(get_task(name), r.metrics):.1f} | {shown} | {len(r.seed_metrics)} |")
    n_glue = sum(1 for n in results if n in metrics.GLUE_SCORE_METRICS and n != "wnli")
    if n_glue:
        lines.append(f"| **GLUE** | **{score:.1f}** | mean task score of {n_glue} tasks (WNLI excluded) | |")
    return "\n".join(lines) + "\n"


def evaluate(tasks: list[str] | None, checkpoint: str | Path | None, tokenizer: str | Path, data_dir: str | Path,
             out_dir: str | Path, cfg: FinetuneConfig, tracker: Tracker | None = None,
             progress: bool = True) -> EvaluationResult:
    """Fine-tune every task from the same checkpoint; write results.md/.json and the GLUE
    test-set submission (one `<Task>.tsv` per task, zip the folder to submit)."""
    tracker = tracker or NullTracker()
    names = [canonical_name(n) for n in tasks] if tasks else default_tasks(data_dir)
    if not names:
        raise DataError(f"{data_dir}: no GLUE task with train and dev files found "
                        "(expected <data_dir>/<TaskDir>/train.tsv and dev.tsv, e.g. SST-2/)")
    out = Path(out_dir)
    results: dict[str, FinetuneResult] = {}
    for name in names:
        with tracker.child(name) as tt:
            results[name] = finetune(name, checkpoint, tokenizer, data_dir, out / name, cfg, tracker=tt,
                                     progress=progress)
    score = metrics.glue_score({n: r.metrics for n, r in results.items()})
    table_md, table_json = out / results_file.RESULTS_MD, out / results_file.RESULTS_JSON
    results_file.write(out, {n: {"metrics": r.metrics, "score": task_score(get_task(n), r.metrics),
                                 "best_seed": r.best_seed, "seeds": {str(s): m for s, m in r.seed_metrics.items()},
                                 "model_dir": str(r.model_dir)} for n, r in results.items()},
                       format_table(results, score), label=str(checkpoint) if checkpoint else "random init",
                       checkpoint=checkpoint)
    submission_dir = None
    if any(r.submission for r in results.values()):
        submission_dir = out / "submission"
        submission_dir.mkdir(parents=True, exist_ok=True)
        for r in results.values():
            for path in r.submission.values():
                atomic.copy_file(path, submission_dir / path.name)
    tracker.log_metrics({"glue/score": score} | {f"{n}/score": task_score(get_task(n), r.metrics)
                                                 for n, r in results.items()}, step=0)
    for p in (table_md, table_json):
        tracker.log_artifact(p)
    if submission_dir is not None:
        tracker.log_artifact(submission_dir, "submission")
    return EvaluationResult(results=results, glue_score=score, table_md=table_md, table_json=table_json,
                            submission_dir=submission_dir)
