"""Frozen-encoder probes: what an encoder's features hold, measured without fine-tuning it.

For each task the encoder runs once over the training and dev sentences; the mean-pooled and
[CLS] states of every layer (embeddings included) are the candidate features. A linear model
fits them: logistic regression for classification, ridge for STS-B, both from scikit-learn on
standardised features. Which layer, which pooling and how much regularisation are chosen on a
split of the training data only (fit on 80%, scored on the held-back 20%); the chosen probe is
then refitted on all training examples and scored once on dev. Few-step fine-tuning on a few
hundred examples hides what pre-training learned; a probe on the same data does not.

Every score stands beside its baselines, fitted by the same protocol on the same examples:

    random init   the same config at initialisation (what the encoder's shape alone gives)
    bag-of-words  the same linear model on binary unigram + bigram counts of the same text
                  (the floor an encoder has to beat to be worth its compute)
    majority      the constant prediction from the training labels
    compare       a second encoder, e.g. the MLM arm (optional)

and every gain has a paired bootstrap 95% interval over dev examples (`stats`). Deterministic:
the same inputs give the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra_pipeline import atomic
from electra_pipeline.errors import DataError
from electra_pipeline.evaluation import stats
from electra_pipeline.evaluation.probe_config import DEFAULT_TASKS, ProbeConfig

POOLINGS = ("mean", "cls")
C_GRID = (0.01, 0.1, 1.0, 10.0)  # logistic regression's inverse regularisation
ALPHA_GRID = (1.0, 10.0, 100.0, 1000.0)  # ridge's regularisation
BASELINES = ("random_init", "bow", "majority", "compare")

PREDICTIONS_FILE = "predictions.npz"


# --- what is probed ---------------------------------------------------------------------------


@dataclass
class Encoder:
    """A Hugging Face ELECTRA directory whose encoder is probed, and the tokenizer it reads."""

    label: str
    path: Path
    tokenizer: Path


def find_encoder(source: str | Path, tokenizer: str | Path | None = None, label: str = "encoder") -> Encoder:
    """The encoder of a pre-training run directory (its discriminator, or the MLM model of an MLM
    run) or of a Hugging Face ELECTRA directory, with the tokenizer found beside it or given.
    A missing directory, weights or tokenizer, or a tokenizer of another vocabulary size, is one
    DataError naming the path."""
    from electra_pipeline.evaluation.finetune.runner import load_tokenizer_file

    path = Path(source)
    if not path.is_dir():
        raise DataError(f"{path}: no such directory (give a pre-training run or a Hugging Face ELECTRA directory)")
    model = next((path / d for d in ("discriminator", "generator") if (path / d / "config.json").is_file()), path)
    if not (model / "config.json").is_file() or not (model / "model.safetensors").is_file():
        raise DataError(f"{path}: holds no encoder (no discriminator/ or generator/, nor config.json + "
                        "model.safetensors)")
    if tokenizer is None:
        candidates = [model / "tokenizer.json", path / "tokenizer.json"]
        run_cfg = path / "config.json"
        if model != path and run_cfg.is_file():
            try:
                named = json.loads(run_cfg.read_text()).get("tokenizer")
            except (ValueError, OSError, AttributeError):
                named = None
            if named:
                candidates.append(Path(named))
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{model}: no tokenizer.json beside the encoder; pass --tokenizer FILE")
        tokenizer = found
    tok, tok_file = load_tokenizer_file(tokenizer)
    cfg = json.loads((model / "config.json").read_text())
    if cfg.get("vocab_size") != tok.get_vocab_size():
        raise DataError(f"{tok_file}: a vocabulary of {tok.get_vocab_size()} tokens, but {model / 'config.json'} "
                        f"has vocab_size {cfg.get('vocab_size')}; probe with the tokenizer the encoder was trained with")
    return Encoder(label=label, path=model, tokenizer=tok_file)


def load_encoder_module(path: Path) -> torch.nn.Module:
    """Our `ElectraModel` with the weights of an HF ELECTRA directory, in eval mode."""
    from electra_pipeline import integrity
    from electra_pipeline.modeling import hf
    from electra_pipeline.modeling.model import ElectraModel

    integrity.verify_dir(path)
    cfg, state = hf.load_encoder(path)
    model = ElectraModel(cfg)
    model.load_state_dict(state)
    return model.eval()


@torch.inference_mode()
def layer_features(model: torch.nn.Module, rows: Sequence[tuple[np.ndarray, np.ndarray]],
                   batch_size: int) -> np.ndarray:
    """(layers + 1, 2, N, H) float32: the mean-pooled and [CLS] states after the embeddings and
    after every layer, for N unpadded (input_ids, token_type_ids) rows. Rows are batched by
    length, so padding costs little; the output keeps the input order."""
    from electra_pipeline.inference import pad_rows

    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    cfg = model.config
    out = np.zeros((cfg.num_layers + 1, 2, len(rows), cfg.hidden_size), np.float32)
    for start in range(0, len(order), batch_size):
        take = order[start:start + batch_size]
        batch = pad_rows([rows[i][0] for i in take], [rows[i][1] for i in take], 0)
        mask = torch.from_numpy(batch.attention_mask).float()
        states = model.hidden_states(torch.from_numpy(batch.input_ids).long(),
                                     torch.from_numpy(batch.token_type_ids).long(),
                                     torch.from_numpy(batch.attention_mask))
        weights = (mask / mask.sum(1, keepdim=True))[..., None]  # (B, T, 1)
        for layer, h in enumerate(states):  # h: (B, T, H)
            h = h.float()
            out[layer, 0, take] = (h * weights).sum(1).numpy()
            out[layer, 1, take] = h[:, 0].numpy()
    return out


# --- linear probes ----------------------------------------------------------------------------


@dataclass
class Fit:
    """The chosen probe: its features, regularisation, selection score, dev predictions and score."""

    score: float
    predictions: np.ndarray
    layer: int | None = None
    pooling: str | None = None
    reg: float | None = None
    select_score: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"score": self.score, "layer": self.layer, "pooling": self.pooling, "reg": self.reg,
                "select_score": self.select_score}


def _linear(kind: str, reg: float, dense: bool) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = Ridge(alpha=reg) if kind == "regression" else LogisticRegression(C=reg, max_iter=2000)
    return make_pipeline(StandardScaler(), model) if dense else model


def _grid(kind: str) -> tuple[float, ...]:
    return ALPHA_GRID if kind == "regression" else C_GRID


def selection_split(n: int, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held-back) indices into the training set: at most `limit` examples, 80 / 20."""
    perm = np.random.default_rng(seed).permutation(n)[:limit]
    cut = max(1, int(round(0.8 * len(perm))))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def choose_and_fit(task: str, kind: str, y: np.ndarray, gold: np.ndarray, candidates: dict[tuple[int | None, str | None], Any], dense: bool,
                   split: tuple[np.ndarray, np.ndarray]) -> Fit:
    """Pick (features, regularisation) on the held-back part of the training set, refit it on all
    training examples, score it on dev. `candidates` maps (layer, pooling) to a function taking a
    split name (`train`/`dev`) to a feature matrix."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # small solves: BLAS threads cost more than they give
        return _choose_and_fit(task, kind, y, gold, candidates, dense, split)


def _choose_and_fit(task: str, kind: str, y: np.ndarray, gold: np.ndarray,
                    candidates: dict[tuple[int | None, str | None], Any], dense: bool,
                    split: tuple[np.ndarray, np.ndarray]) -> Fit:
    fit_idx, val_idx = split
    grid = _grid(kind)
    best: tuple[float, tuple[int | None, str | None], float] | None = None

    def consider(key: tuple[int | None, str | None], reg: float) -> None:
        nonlocal best
        xt = candidates[key]("train")
        m = _linear(kind, reg, dense).fit(xt[fit_idx], y[fit_idx])
        s = stats.task_score(task, y[val_idx], m.predict(xt[val_idx]))
        if best is None or s > best[0] + 1e-9:
            best = (s, key, reg)

    if len(val_idx) and len(np.unique(y[fit_idx])) > 1:
        # coordinate search: the features at the middle regularisation, then the regularisation
        for key in candidates:
            consider(key, grid[len(grid) // 2])
        chosen = best[1]
        for reg in grid:
            if reg != grid[len(grid) // 2]:
                consider(chosen, reg)
    if best is None:  # too few examples to choose: the last layer's mean, middle regularisation
        best = (float("nan"), next(reversed(candidates)), _grid(kind)[len(_grid(kind)) // 2])
    select_score, key, reg = best
    feats = candidates[key]
    m = _linear(kind, reg, dense).fit(feats("train"), y)
    pred = m.predict(feats("dev"))
    return Fit(score=stats.task_score(task, gold, pred), predictions=np.asarray(pred, np.float64),
               layer=key[0], pooling=key[1], reg=reg, select_score=select_score)


def encoder_fit(task: str, kind: str, ftrain: np.ndarray, y: np.ndarray, fdev: np.ndarray, gold: np.ndarray,
                split: tuple[np.ndarray, np.ndarray]) -> Fit:
    """The linear probe on one encoder's layer features (from `layer_features`)."""
    cands = {(layer, pooling): (lambda s, L=layer, p=pi: (ftrain if s == "train" else fdev)[L, p])
             for layer in range(ftrain.shape[0]) for pi, pooling in enumerate(POOLINGS)}
    return choose_and_fit(task, kind, y, gold, cands, dense=True, split=split)


def bow_fit(task: str, kind: str, train: Sequence[Any], y: np.ndarray, dev: Sequence[Any], gold: np.ndarray,
            split: tuple[np.ndarray, np.ndarray]) -> Fit:
    """The same linear model on binary unigram + bigram counts; a pair's two texts get their own
    vocabularies, side by side. The counts are fitted on the training texts only."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import CountVectorizer

    parts = [("text_a", CountVectorizer(binary=True, ngram_range=(1, 2)))]
    if any(getattr(e, "text_b", None) for e in train):
        parts.append(("text_b", CountVectorizer(binary=True, ngram_range=(1, 2))))
    xtrain = hstack([v.fit_transform([getattr(e, f) or "" for e in train]) for f, v in parts]).tocsr()
    xdev = hstack([v.transform([getattr(e, f) or "" for e in dev]) for f, v in parts]).tocsr()
    cands = {(None, None): (lambda s: xtrain if s == "train" else xdev)}
    return choose_and_fit(task, kind, y, gold, cands, dense=False, split=split)


# --- one task, several encoders ----------------------------------------------------------------


def _rows(task: Any, examples: Sequence[Any], tokenizer: Any, max_seq_length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    feats = task.featurize(examples, tokenizer, max_seq_length, training=False)
    return [(f.input_ids, f.token_type_ids) for f in feats]


def probe_task(name: str, data_dir: str | Path, encoders: dict[str, tuple[torch.nn.Module, Any]],
               cfg: ProbeConfig) -> dict[str, Any]:
    """Probe every encoder ({label: (module, tokenizer)}; the first is the one under test) on one
    task, next to the bag-of-words and majority baselines, with paired bootstrap intervals of the
    first encoder's gain over each. The dev split is the task's first (MNLI: matched)."""
    from electra_pipeline.evaluation.baselines import majority_metrics
    from electra_pipeline.evaluation.metrics import task_score as glue_task_score
    from electra_pipeline.evaluation.tasks import get_task
    from electra_pipeline.evaluation.tasks.base import subset

    task = get_task(name)
    split = next(iter(task.eval_splits))
    train = subset(task.read(data_dir, "train"), cfg.max_train_examples, cfg.seed)
    dev = task.read(data_dir, split)
    if len(train) < 2 or not dev:
        raise DataError(f"{task.split_file(data_dir, 'train' if len(train) < 2 else split)}: too few examples to probe")
    dtype = np.float64
    y, gold = np.asarray([e.label for e in train], dtype), np.asarray([e.label for e in dev], dtype)
    sel = selection_split(len(train), cfg.select_examples, cfg.seed)
    fits: dict[str, Fit] = {}
    for label, (module, tokenizer) in encoders.items():
        ftrain = layer_features(module, _rows(task, train, tokenizer, cfg.max_seq_length), cfg.batch_size)
        fdev = layer_features(module, _rows(task, dev, tokenizer, cfg.max_seq_length), cfg.batch_size)
        fits[label] = encoder_fit(name, task.kind, ftrain, y, fdev, gold, sel)
    fits["bow"] = bow_fit(name, task.kind, train, y, dev, gold, sel)
    majority = majority_metrics(task, train, dev)
    constant = statistics.fmean(y) if task.kind == "regression" else float(np.bincount(y.astype(int)).argmax())
    fits["majority"] = Fit(score=glue_task_score(name, majority), predictions=np.full(len(dev), constant))
    first = next(iter(encoders))
    vs = {label: stats.paired_bootstrap(name, gold, fits[first].predictions, f.predictions, cfg.resamples, cfg.seed)
          for label, f in fits.items() if label != first}
    return {"task": name, "split": split, "train_examples": len(train), "dev_examples": len(dev),
            "scores": {label: f.summary() for label, f in fits.items()},
            "vs": {label: iv.to_dict() for label, iv in vs.items()},
            "_predictions": {label: f.predictions for label, f in fits.items()}, "_gold": gold}


def tasks_to_probe(data_dir: str | Path, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(tasks to run, default tasks skipped for want of files). An explicitly requested task
    without its train or dev file is a DataError naming the file."""
    from electra_pipeline.evaluation.tasks import get_task, glue_tasks_present

    if str(data_dir).startswith("hf:"):
        return list(requested or DEFAULT_TASKS[:5]), []
    present = set(glue_tasks_present(data_dir))
    if requested is None:
        run = [t for t in DEFAULT_TASKS if t in present]
        if not run:
            raise DataError(f"{data_dir}: no GLUE task with train and dev files (expected e.g. "
                            f"{Path(data_dir) / 'SST-2' / 'train.tsv'})")
        return run, [t for t in DEFAULT_TASKS if t not in present]
    for t in requested:
        if t not in present:
            task = get_task(t)
            missing = next(f for s in ("train", *task.eval_splits) if not (f := task.split_file(data_dir, s)).is_file())
            raise DataError(f"{missing}: not found; the {t} probe needs its train and dev files")
    return list(requested), []


def run(source: str | Path, data_dir: str | Path, cfg: ProbeConfig | None = None, *,
        tokenizer: str | Path | None = None, compare: str | Path | None = None, compare_label: str = "compare",
        random_init_dir: str | Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Probe the encoder of `source` on every task, next to its random-init twin, bag-of-words, the
    majority class and, with `compare`, a second encoder. Returns the result `save` writes:
    per-task scores and intervals, and their means with the interval of each mean gain."""
    import tempfile

    from tokenizers import Tokenizer

    from electra_pipeline.evaluation import baselines

    cfg = cfg or ProbeConfig()
    enc = find_encoder(source, tokenizer, label="encoder")
    names, skipped = tasks_to_probe(data_dir, cfg.tasks)
    others = [find_encoder(compare, None, label=compare_label)] if compare else []
    with tempfile.TemporaryDirectory() as tmp:
        rand = baselines.random_init_checkpoint(enc.path, random_init_dir or tmp)
        modules = {"encoder": (load_encoder_module(enc.path), Tokenizer.from_file(str(enc.tokenizer))),
                   "random_init": (load_encoder_module(rand), Tokenizer.from_file(str(enc.tokenizer)))}
    for o in others:
        modules["compare"] = (load_encoder_module(o.path), Tokenizer.from_file(str(o.tokenizer)))
    tasks: dict[str, Any] = {}
    for i, name in enumerate(names):
        if progress:
            progress(f"probing {name} ({i + 1}/{len(names)})")
        tasks[name] = probe_task(name, data_dir, modules, cfg)
    result = {"encoder": str(enc.path), "tokenizer": str(enc.tokenizer), "data_dir": str(data_dir),
              "compare": str(others[0].path) if others else None, "compare_label": compare_label if others else None,
              "config": dataclasses.asdict(cfg), "skipped": skipped,
              "tasks": {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in tasks.items()},
              "mean": mean_scores(tasks, cfg),
              # every dev prediction, for save() (predictions.npz) and resampling: not part of probe.json
              "_predictions": {n: {"gold": r["_gold"], **r["_predictions"]} for n, r in tasks.items()}}
    return result


def mean_scores(tasks: dict[str, Any], cfg: ProbeConfig) -> dict[str, Any]:
    """The mean score of each model over the tasks, and the interval of the encoder's mean gain
    over each baseline: the tasks' bootstrap differences, drawn with one seed per task, averaged
    resample by resample."""
    labels = list(next(iter(tasks.values()))["scores"])
    out: dict[str, Any] = {"scores": {lb: statistics.fmean(t["scores"][lb]["score"] for t in tasks.values())
                                      for lb in labels}, "vs": {}}
    for lb in labels[1:]:
        diffs = np.mean([stats.bootstrap_diffs(n, t["_gold"], t["_predictions"]["encoder"], t["_predictions"][lb],
                                               cfg.resamples, cfg.seed) for n, t in tasks.items()], axis=0)
        iv = stats.percentile_interval(out["scores"]["encoder"] - out["scores"][lb], diffs,
                                       sum(t["dev_examples"] for t in tasks.values()))
        out["vs"][lb] = iv.to_dict()
    return out


def interval(d: dict[str, Any]) -> stats.Interval:
    return stats.Interval(**d)


# --- report -----------------------------------------------------------------------------------

_NAMES = {"encoder": "pre-trained", "random_init": "random init", "bow": "bag-of-words", "majority": "majority"}


def model_name(result: dict[str, Any], label: str) -> str:
    """How a model of the result is called in tables and plots."""
    return (result.get("compare_label") or label) if label == "compare" else _NAMES.get(label, label)


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per task (and the mean), the encoder's probe score, each baseline's and
    the gain over random init and over bag-of-words with their 95% intervals."""
    labels = list(result["mean"]["scores"])
    head = ["task", "train / dev", "layer, pooling"] + [model_name(result, lb) for lb in labels] + \
        ["vs random init (95% CI)", "vs bag-of-words (95% CI)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, sizes: str, where: str, scores: dict[str, float], vs: dict[str, Any]) -> str:
        cells = [name, sizes, where] + [f"{scores[lb]:.1f}" for lb in labels] + \
            [interval(vs[k]).text() for k in ("random_init", "bow")]
        return "| " + " | ".join(cells) + " |"

    for n, t in result["tasks"].items():
        e = t["scores"]["encoder"]
        lines.append(row(n, f"{t['train_examples']:,} / {t['dev_examples']:,}", f"{e['layer']}, {e['pooling']}",
                         {lb: t["scores"][lb]["score"] for lb in labels}, t["vs"]))
    if len(result["tasks"]) > 1:
        lines.append(row("**mean**", "", "", result["mean"]["scores"], result["mean"]["vs"]))
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> list[str]:
    """One sentence per baseline about the mean probe gain: better, worse or not resolved."""
    n = len(result["tasks"])
    what = f"frozen-feature probe, mean of {n} task{'s' * (n > 1)}"
    return [f"{stats.claim(interval(iv), 'pre-trained', model_name(result, lb))} ({what})."
            for lb, iv in result["mean"]["vs"].items()]


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """MLflow keys: probe/<task>/<model>, probe/mean/<model>, probe/mean/gain_<baseline>[_low|_high]."""
    out: dict[str, float] = {}
    for n, t in result["tasks"].items():
        for lb, s in t["scores"].items():
            out[f"probe/{n}/{lb}"] = float(s["score"])
    for lb, s in result["mean"]["scores"].items():
        out[f"probe/mean/{lb}"] = float(s)
    for lb, iv in result["mean"]["vs"].items():
        out |= {f"probe/mean/gain_{lb}": iv["diff"], f"probe/mean/gain_{lb}_low": iv["low"],
                f"probe/mean/gain_{lb}_high": iv["high"]}
    return out


def save(result: dict[str, Any], out_dir: str | Path) -> Path:
    """probe.json, probe.md and every dev prediction (predictions.npz: what curves and later
    comparisons resample) in `out_dir`, written atomically."""
    out = Path(out_dir)
    save_predictions(result, out)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic.write_text(out / "probe.json", json.dumps(public, indent=2) + "\n")
    atomic.write_text(out / "probe.md", format_table(result) + "\n\n" + "\n".join(verdict(result)) + "\n")
    return out / "probe.json"


def save_predictions(result: dict[str, Any], out_dir: str | Path) -> Path:
    """Every task's dev gold labels and each model's dev predictions (`<task>/gold`,
    `<task>/<model>`), beside probe.json."""
    arrays = {f"{task}/{label}": np.asarray(values, np.float64)
              for task, preds in result["_predictions"].items() for label, values in preds.items()}
    path = Path(out_dir) / PREDICTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def bow_baseline(task: Any, train: Sequence[Any], dev: Sequence[Any], seed: int = 0,
                 select_examples: int = 4000) -> Fit:
    """The bag-of-words floor of a fine-tuned model: the probe's linear model on the counts of
    the same training examples, scored on the same dev examples."""
    y = np.asarray([e.label for e in train], np.float64)
    gold = np.asarray([e.label for e in dev], np.float64)
    return bow_fit(task.name, task.kind, train, y, dev, gold, selection_split(len(train), select_examples, seed))
