"""Intrinsic evaluation: did pre-training learn context? Seconds on held-out text, no fine-tuning.

A discriminator's training loss against the replaced-token prior flatters: while the generator is
worse than unigram, replaced tokens are rare words, and a detector that only looks at the token id
beats the prior without reading the sentence. So the figures here are measured where that cannot
help, and next to the detectors it must beat:

- **unigram replacements**: a fixed `mask_prob` share of held-out positions (fixed by the seed) is
  filled with draws from the training text's token frequencies. Originals and replacements then
  follow the same distribution, token identity carries no signal, and only context separates them.
  Comparable across runs, objectives and checkpoints of one vocabulary.
- **generator replacements**: the same positions masked and filled by the run's own generator,
  as in training.
- each scored by the pre-trained discriminator, by the **same config at random initialisation**,
  and by a **context-free detector** (the per-token replaced rate fitted on corrupted training
  rows: what a discriminator collapsed onto token identity reaches);
- generator (or MLM model) masked-token accuracy and perplexity on the same positions, pre-trained
  and at random initialisation.

Detection is scored with ROC-AUC (0.5: no better than chance; never accuracy, which rewards
answering "original" everywhere) and average precision, over every real, non-special token.
An MLM model has no discriminator: it detects by surprise, -log p(token | corrupted text), read
in one pass at every position.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from electra_pipeline import atomic
from electra_pipeline.data.tokenizer import SPECIAL_IDS
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.modeling.config import RTD_OBJECTIVES
from electra_pipeline.modeling.model import Discriminator, Generator, init_weights
from electra_pipeline.training import heldout
from electra_pipeline.training.heldout import Models
from electra_pipeline.training.intrinsic_config import IntrinsicConfig

INTRINSIC_FILE = "intrinsic.json"
MIN_SCORED_TOKENS = 500  # fewer held-out tokens than this give AUCs too noisy to report


# --------------------------------------------------------------------------- corruption

def real_tokens(rows: torch.Tensor) -> torch.Tensor:
    """(N, T) bool: tokens that can be corrupted and are scored (not [PAD]/[CLS]/[SEP]/[MASK]/[UNK])."""
    return rows > max(SPECIAL_IDS.values())


def choose_positions(rows: torch.Tensor, mask_prob: float, seed: int) -> torch.Tensor:
    """(N, T) bool: round(mask_prob x n) positions of each row's n real tokens (at least one),
    uniformly, fixed by the seed."""
    g = torch.Generator().manual_seed(seed)
    real = real_tokens(rows)
    scores = torch.rand(rows.shape, generator=g).masked_fill(~real, -1.0)
    k = torch.clamp(torch.round(real.sum(-1).float() * mask_prob).long(), min=1)
    rank = scores.argsort(-1, descending=True).argsort(-1)  # 0 = highest score
    return (rank < k[:, None]) & real


def unigram_probs(rows: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(V,) token frequencies of the real tokens of `rows`. Not smoothed: a smoothed table would
    draw unseen (rare) ids, which a detector could spot by identity alone."""
    ids = rows[real_tokens(rows)]
    counts = torch.bincount(ids, minlength=vocab_size).double()
    return counts / counts.sum()


def unigram_corrupt(rows: torch.Tensor, chosen: torch.Tensor, probs: torch.Tensor,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill the chosen positions with draws from `probs`. -> (fake (N, T), labels (N, T) float:
    1 where the token differs from the original)."""
    g = torch.Generator().manual_seed(seed + 1)
    draws = torch.multinomial(probs.float(), int(chosen.sum()), replacement=True, generator=g)
    fake = rows.clone()
    fake[chosen] = draws
    return fake, (fake != rows).float()


@torch.no_grad()
def generator_corrupt(generator: Generator, rows: torch.Tensor, chosen: torch.Tensor, seed: int,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask the chosen positions and fill them with samples from the generator, as in training."""
    g = torch.Generator().manual_seed(seed + 2)
    fake = rows.clone()
    for b in range(0, len(rows), batch_size):
        r, c = rows[b:b + batch_size], chosen[b:b + batch_size]
        masked = r.masked_fill(c, SPECIAL_IDS["mask"])
        h = generator.electra(masked, segments(r), (r != SPECIAL_IDS["pad"]).long())  # (B, T, Hg)
        logits = generator.head(h[c], generator.electra.embeddings.word_embeddings.weight).float()  # (n, V)
        sampled = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(-1)
        fake[b:b + batch_size][c] = sampled
    return fake, (fake != rows).float()


def segments(rows: torch.Tensor) -> torch.Tensor:
    """Token type ids of [CLS] A [SEP] B [SEP] rows: 1 after the first [SEP], 0 on padding."""
    is_sep = rows == SPECIAL_IDS["sep"]
    after_first = (is_sep.long().cumsum(-1) - is_sep.long()) >= 1
    return (after_first & (rows != SPECIAL_IDS["pad"])).long()


# --------------------------------------------------------------------------- scoring

@torch.no_grad()
def discriminator_scores(discriminator: Discriminator, fake: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, T) replaced logits."""
    out = [discriminator(f, segments(f), (f != SPECIAL_IDS["pad"]).long()).float()
           for f in fake.split(batch_size)]
    return torch.cat(out)


@torch.no_grad()
def surprise_scores(generator: Generator, fake: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, T) -log p(token | the corrupted row), every position in one pass (an MLM model's detector)."""
    out = []
    emb = generator.electra.embeddings.word_embeddings.weight
    for f in fake.split(batch_size):
        h = generator.electra(f, segments(f), (f != SPECIAL_IDS["pad"]).long())
        logp = generator.head(h, emb).float().log_softmax(-1)  # (B, T, V)
        out.append(-logp.gather(-1, f[..., None]).squeeze(-1))
    return torch.cat(out)


@torch.no_grad()
def masked_lm_metrics(generator: Generator, rows: torch.Tensor, chosen: torch.Tensor,
                      batch_size: int) -> dict[str, float]:
    """Accuracy and perplexity of predicting the chosen tokens with all of them masked."""
    correct, nll, n = 0.0, 0.0, 0
    emb = generator.electra.embeddings.word_embeddings.weight
    for r, c in zip(rows.split(batch_size), chosen.split(batch_size)):
        masked = r.masked_fill(c, SPECIAL_IDS["mask"])
        h = generator.electra(masked, segments(r), (r != SPECIAL_IDS["pad"]).long())
        logp = generator.head(h[c], emb).float().log_softmax(-1)  # (n, V)
        target = r[c]
        correct += float((logp.argmax(-1) == target).sum())
        nll += float(-logp.gather(-1, target[:, None]).sum())
        n += int(c.sum())
    return {"accuracy": correct / n, "perplexity": float(np.exp(nll / n))}


def detection_metrics(scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """ROC-AUC and average precision of `scores` (higher = replaced) over the `valid` tokens."""
    y = labels[valid].numpy()
    s = scores[valid].double().numpy()
    if y.min() == y.max():
        raise DataError("intrinsic: the corrupted held-out text has no replaced (or no original) tokens to score")
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}


def context_free_rates(fake: torch.Tensor, labels: torch.Tensor, vocab_size: int,
                       prior_weight: float = 10.0) -> torch.Tensor:
    """(V,) P(replaced | token id), fitted on corrupted training rows, shrunk towards the overall
    rate by `prior_weight` pseudo-counts: the best detector that never reads the context."""
    valid = real_tokens(fake)
    ids, y = fake[valid], labels[valid].double()
    seen = torch.bincount(ids, minlength=vocab_size).double()
    replaced = torch.bincount(ids, weights=y, minlength=vocab_size)
    rate = float(y.mean())
    return (replaced + prior_weight * rate) / (seen + prior_weight)


# --------------------------------------------------------------------------- whole evaluation

def random_like(models: Models, seed: int) -> Models:
    """The same configs at initialisation (BERT init, embeddings shared as in training)."""
    torch.manual_seed(seed)
    disc = Discriminator(models.discriminator.electra.config) if models.discriminator is not None else None
    gen = Generator(models.generator.electra.config, disc.electra.embeddings if disc is not None else None)
    for m in (disc, gen):
        if m is not None:
            init_weights(m, m.electra.config.initializer_range)
            m.eval()
    return Models(disc, gen)


def _detector_scores(models: Models, fake: torch.Tensor, batch_size: int) -> torch.Tensor:
    if models.discriminator is not None:
        return discriminator_scores(models.discriminator, fake, batch_size)
    return surprise_scores(models.generator, fake, batch_size)


def evaluate(models: Models, heldout: np.ndarray | torch.Tensor, train_rows: np.ndarray | torch.Tensor,
             cfg: IntrinsicConfig | None = None, *, init_seed: int = 1234,
             source: str = "", start: Models | None = None) -> dict[str, Any]:
    """Every figure of the module docstring for `models` and their random-init twins, and for
    `start` (the weights a continued run started from) when given.

    heldout: (N, T) packed rows never trained on; train_rows: (M, T) rows of the training text
    (the unigram table and the context-free detector are fitted there, never on held-out text;
    the unigram table on up to `unigram_tokens` of them)."""
    cfg = cfg or IntrinsicConfig()
    rows = torch.as_tensor(np.array(heldout[:cfg.max_rows]), dtype=torch.long)
    fit = torch.as_tensor(np.array(train_rows[:cfg.fit_rows]), dtype=torch.long)
    n_unigram = max(cfg.fit_rows, cfg.unigram_tokens // max(1, train_rows.shape[1]))
    counted = torch.as_tensor(np.array(train_rows[:n_unigram]), dtype=torch.long)
    n_tokens = int(real_tokens(rows).sum()) if len(rows) else 0
    if n_tokens < MIN_SCORED_TOKENS:
        raise DataError(f"{source or 'held-out text'}: {n_tokens} scorable tokens, need at least {MIN_SCORED_TOKENS} "
                        "(pass more held-out text or raise examples.holdout_fraction)")
    vocab = models.generator.electra.config.vocab_size
    if int(rows.max()) >= vocab or int(fit.max()) >= vocab:
        raise DataError(f"{source or 'held-out text'}: token ids beyond the model's {vocab}-token vocabulary "
                        "(text tokenised with another tokenizer?)")
    for m in (models.discriminator, models.generator, *((start.discriminator, start.generator) if start else ())):
        if m is not None:
            m.eval()
    random_models = random_like(models, init_seed)
    valid = real_tokens(rows)
    fit_valid_seed = cfg.seed + 1000  # training rows get their own positions

    probs = unigram_probs(counted, vocab)
    chosen = choose_positions(rows, cfg.mask_prob, cfg.seed)
    fit_chosen = choose_positions(fit, cfg.mask_prob, fit_valid_seed)
    kinds: dict[str, dict[str, Any]] = {}
    for kind in ("unigram", "generator"):
        if kind == "unigram":
            fake, labels = unigram_corrupt(rows, chosen, probs, cfg.seed)
            fit_fake, fit_labels = unigram_corrupt(fit, fit_chosen, probs, fit_valid_seed)
        else:
            fake, labels = generator_corrupt(models.generator, rows, chosen, cfg.seed, cfg.batch_size)
            fit_fake, fit_labels = generator_corrupt(models.generator, fit, fit_chosen, fit_valid_seed, cfg.batch_size)
        rates = context_free_rates(fit_fake, fit_labels, vocab)
        kinds[kind] = {
            "pretrained": detection_metrics(_detector_scores(models, fake, cfg.batch_size), labels, valid),
            "random_init": detection_metrics(_detector_scores(random_models, fake, cfg.batch_size), labels, valid),
            "context_free": detection_metrics(rates[fake], labels, valid),
            "replaced_fraction": float(labels[valid].mean()),
        }
        if start is not None:
            kinds[kind]["start"] = detection_metrics(_detector_scores(start, fake, cfg.batch_size), labels, valid)
    mlm = {"pretrained": masked_lm_metrics(models.generator, rows, chosen, cfg.batch_size),
           "random_init": masked_lm_metrics(random_models.generator, rows, chosen, cfg.batch_size)}
    if start is not None:
        mlm["start"] = masked_lm_metrics(start.generator, rows, chosen, cfg.batch_size)
    return {"heldout": {"source": source, "rows": int(len(rows)), "tokens": n_tokens},
            "detector": "discriminator" if models.discriminator is not None else "mlm_surprise",
            "config": asdict(cfg), **kinds, "mlm": mlm}


class Probe:
    """The unigram-replacement test of `evaluate`, prepared once and scored during pre-training:
    held-out masked-token accuracy of the generator (or MLM model) and, for ELECTRA, the
    discriminator's ROC-AUC. The same rows, positions and replacements every time, so the curve
    shows whether the run learns context while it trains (its training loss cannot tell: against
    a good generator it stays near the prior while held-out detection improves)."""

    def __init__(self, heldout: np.ndarray, train_rows: np.ndarray, vocab_size: int,
                 cfg: IntrinsicConfig | None = None) -> None:
        cfg = cfg or IntrinsicConfig()
        self.batch_size = cfg.batch_size
        self.rows = torch.as_tensor(np.array(heldout[:cfg.max_rows]), dtype=torch.long)
        n_unigram = max(cfg.fit_rows, cfg.unigram_tokens // max(1, train_rows.shape[1]))
        probs = unigram_probs(torch.as_tensor(np.array(train_rows[:n_unigram]), dtype=torch.long), vocab_size)
        self.chosen = choose_positions(self.rows, cfg.mask_prob, cfg.seed)
        self.fake, self.labels = unigram_corrupt(self.rows, self.chosen, probs, cfg.seed)
        self.valid = real_tokens(self.rows)

    @classmethod
    def of_examples(cls, examples_dir: str | Path, vocab_size: int, max_rows: int = 256) -> Probe | None:
        """The probe on an examples directory's held-out slice; None when it has none (or too
        little of it to score)."""
        try:
            held, train_rows = heldout.examples_rows(examples_dir)
        except DataError:
            return None
        if int(real_tokens(torch.as_tensor(np.array(held[:max_rows]), dtype=torch.long)).sum()) < MIN_SCORED_TOKENS:
            return None
        probe = cls(held, train_rows, vocab_size, IntrinsicConfig(max_rows=max_rows))
        y = probe.labels[probe.valid]
        return probe if y.min() != y.max() else None

    @torch.no_grad()
    def score(self, discriminator: Discriminator | None, generator: Generator) -> dict[str, float]:
        """{"heldout/masked_accuracy", "heldout/unigram_auc" (with a discriminator)}; the models are
        left in the mode they came in."""
        device = next(generator.parameters()).device
        modes = [(m, m.training) for m in (discriminator, generator) if m is not None]
        for m, _ in modes:
            m.eval()
        try:
            out = {"heldout/masked_accuracy": masked_lm_metrics(generator, self.rows.to(device),
                                                                self.chosen.to(device), self.batch_size)["accuracy"]}
            if discriminator is not None:
                scores = discriminator_scores(discriminator, self.fake.to(device), self.batch_size).cpu()
                out["heldout/unigram_auc"] = detection_metrics(scores, self.labels, self.valid)["auc"]
        finally:
            for m, mode in modes:
                m.train(mode)
        return out


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """MLflow keys: intrinsic/<replacements>/auc[_random|_context_free], .../ap..., intrinsic/mlm/..."""
    out: dict[str, float] = {}
    suffix = {"pretrained": "", "random_init": "_random", "context_free": "_context_free", "start": "_start"}
    for kind in ("unigram", "generator"):
        for who, tail in suffix.items():
            for metric in ("auc", "ap"):
                if who in result[kind]:
                    out[f"intrinsic/{kind}/{metric}{tail}"] = result[kind][who][metric]
    for who, tail in (("pretrained", ""), ("random_init", "_random"), ("start", "_start")):
        for metric in ("accuracy", "perplexity"):
            if who in result["mlm"]:
                out[f"intrinsic/mlm/{metric}{tail}"] = result["mlm"][who][metric]
    return out


def verdict(result: dict[str, Any], margin: float = 0.02) -> str:
    """One plain sentence: did the discriminator learn context beyond random init and token identity?"""
    u = result["unigram"]
    auc, rnd, cf = u["pretrained"]["auc"], u["random_init"]["auc"], u["context_free"]["auc"]
    best_other = max(rnd, cf)
    who = "discriminator" if result["detector"] == "discriminator" else "MLM model"
    start = (f" It started from ROC-AUC {u['start']['auc']:.3f} (the checkpoint it continued)."
             if "start" in u else "")
    if auc >= best_other + margin:
        return (f"The {who} learned context: it detects unigram replacements on held-out text at ROC-AUC {auc:.3f}, "
                f"against {rnd:.3f} at random initialisation and {cf:.3f} for a context-free detector.{start}")
    return (f"No measurable context learned: the {who} detects unigram replacements on held-out text at ROC-AUC "
            f"{auc:.3f}, against {rnd:.3f} at random initialisation and {cf:.3f} for a context-free detector.{start}")


def save(result: dict[str, Any], out_dir: str | Path) -> Path:
    return atomic.write_text(Path(out_dir) / INTRINSIC_FILE, json.dumps(result, indent=2) + "\n")


# --------------------------------------------------------------------------- a run, as a user names it

def run(checkpoint: str | Path, *, generator: str | Path | None = None, examples: str | Path | None = None,
        text: list[str | Path] | None = None, tokenizer: str | Path | None = None,
        cfg: IntrinsicConfig | None = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """`evaluate` with its inputs found the way a user names them: a run directory knows its
    examples (held-out slice and training rows), tokenizer and initial seed from its config.json.
    `run_dir` names the run whose config applies when `checkpoint` is one of its snapshots."""
    path = Path(checkpoint)
    cfg_dir = Path(run_dir) if run_dir is not None else path
    run_cfg: dict[str, Any] = {}
    if (cfg_dir / "config.json").is_file() and (cfg_dir / "generator").is_dir():
        try:
            run_cfg = json.loads((cfg_dir / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{cfg_dir / 'config.json'}: not valid JSON ({e})") from None
    objective = (run_cfg.get("train") or {}).get("objective", "electra")
    if objective not in RTD_OBJECTIVES and objective != "mlm":
        raise ConfigError(f"{path}: objective {objective} trains no replaced-token head, so held-out detection "
                          "does not apply to it; fine-tune it (`electra evaluate`) to compare")
    models = heldout.load_models(path, generator)
    examples = examples or run_cfg.get("data") or None
    tokenizer = tokenizer or run_cfg.get("tokenizer") or None
    seq_len = int(run_cfg.get("train", {}).get("seq_len", 128))
    if text:
        if tokenizer is None:
            raise ConfigError("tokenizer: --text needs --tokenizer (the checkpoint's tokenizer.json or its directory)")
        held = heldout.text_rows(list(text), tokenizer, seq_len)
        # without training rows, the unigram table and context-free detector are fitted on the same text
        train = heldout.examples_rows(examples)[1] if examples else held
        source = ", ".join(map(str, text))
    elif examples:
        held, train = heldout.examples_rows(examples)
        source = str(Path(examples) / "holdout.npy")
    else:
        raise ConfigError("examples: no held-out text; pass --examples DIR (built with a held-out slice) or --text FILE")
    seed = int(run_cfg.get("train", {}).get("seed", 1234))
    start = heldout.start_models(run_cfg, seed) if run_cfg.get("init_from") else None
    return evaluate(models, held, train, cfg, init_seed=seed, source=source, start=start)


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small Markdown table: pre-trained next to its baselines."""
    started = "start" in result["mlm"]
    head = "| held-out figure | pre-trained | random init | context-free |" + (" start (init_from) |" if started else "")
    lines = [head, "|---|---|---|---|" + ("---|" if started else "")]

    def row(label: str, r: dict[str, Any], metric: str, fmt: str, context_free: bool) -> str:
        cells = [format(r["pretrained"][metric], fmt), format(r["random_init"][metric], fmt),
                 format(r["context_free"][metric], fmt) if context_free else "-"]
        if started:
            cells.append(format(r["start"][metric], fmt))
        return f"| {label} | " + " | ".join(cells) + " |"

    for kind, label in (("unigram", "ROC-AUC, unigram replacements"), ("generator", "ROC-AUC, generator replacements")):
        r = result[kind]
        lines.append(row(label, r, "auc", ".3f", True))
        lines.append(row(f"avg. precision, {kind} ({100 * r['replaced_fraction']:.1f}% replaced)", r, "ap", ".3f", True))
    m = {who: {"accuracy": 100 * v["accuracy"], "perplexity": v["perplexity"]} for who, v in result["mlm"].items()}
    lines.append(row("masked-token accuracy (%)", m, "accuracy", ".1f", False))
    lines.append(row("masked-token perplexity", m, "perplexity", ".0f", False))
    return "\n".join(lines)
