"""Evaluation metrics for GLUE and SQuAD, reported as percentages like the paper.

Classification/regression metrics delegate to scikit-learn / scipy so our numbers are the
ones every other paper computes. SQuAD follows the official v1.1 / v2.0 evaluation scripts:
the same answer normalisation, EM and token F1 maxed over the gold answers, the HasAns/NoAns
breakdown and the best no-answer threshold search.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence
from statistics import mean

import numpy as np
from scipy import stats
from sklearn import metrics as skm

# --- classification / regression -----------------------------------------------------------


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    return 100.0 * float(skm.accuracy_score(labels, preds))


def f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    return 100.0 * float(skm.f1_score(labels, preds, pos_label=1, average="binary", zero_division=0))


def matthews_corr(labels: Sequence[int], preds: Sequence[int]) -> float:
    return 100.0 * float(skm.matthews_corrcoef(labels, preds))


def _correlation(fn, labels: Sequence[float], preds: Sequence[float]) -> float:
    x, y = np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0  # undefined for constant input (e.g. an untrained regressor); 0 = no signal
    return 100.0 * float(fn(x, y)[0])


def pearson(labels: Sequence[float], preds: Sequence[float]) -> float:
    return _correlation(stats.pearsonr, labels, preds)


def spearman(labels: Sequence[float], preds: Sequence[float]) -> float:
    return _correlation(stats.spearmanr, labels, preds)


# --- GLUE score -------------------------------------------------------------------------------

# The metrics that make up each task's score; a task with two metrics scores their mean
# (GLUE's rule, also used for MNLI matched/mismatched).
GLUE_SCORE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "qqp": ("f1", "accuracy"),
    "mnli": ("accuracy", "accuracy_mm"),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def task_score(task: str, task_metrics: Mapping[str, float]) -> float:
    """One number per task: the mean of the metrics GLUE averages for it."""
    keys = GLUE_SCORE_METRICS.get(task)
    if keys is None:
        raise KeyError(f"{task} is not a GLUE task")
    present = [task_metrics[k] for k in keys if k in task_metrics]
    if not present:
        raise KeyError(f"{task}: none of {keys} in {sorted(task_metrics)}")
    return float(mean(present))


def glue_score(results: Mapping[str, Mapping[str, float]], include_wnli: bool = False) -> float:
    """Macro-average of the task scores over the GLUE tasks in `results` (others ignored).

    WNLI is left out by default, as in the BERT and ELECTRA papers' dev results: its dev set
    is adversarial to train-set memorisation and every model scores at or below majority."""
    scores = [task_score(t, m) for t, m in results.items()
              if t in GLUE_SCORE_METRICS and (include_wnli or t != "wnli")]
    return float(mean(scores)) if scores else float("nan")


# --- SQuAD ------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Official SQuAD normalisation: lowercase, drop punctuation and articles, collapse spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 after normalisation; an empty side scores 1 only if both are empty (v2)."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _gold_list(answers: Sequence[str]) -> list[str]:
    """Gold texts that normalise to something; none left means unanswerable (v2: gold = "")."""
    golds = [a for a in answers if normalize_answer(a)]
    return golds or [""]


def squad_scores(gold: Mapping[str, Sequence[str]],
                 predictions: Mapping[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question (EM, F1) in [0, 1], max over the gold answers; a missing prediction scores 0."""
    em, f1_ = {}, {}
    for qid, answers in gold.items():
        golds = _gold_list(answers)
        pred = predictions.get(qid)
        if pred is None:
            em[qid] = f1_[qid] = 0.0
            continue
        em[qid] = max(exact_match(pred, g) for g in golds)
        f1_[qid] = max(token_f1(pred, g) for g in golds)
    return em, f1_


def squad_v1(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """Official v1.1 numbers: {"exact_match", "f1"} in percent."""
    em, f1_ = squad_scores(gold, predictions)
    n = max(len(gold), 1)
    return {"exact_match": 100.0 * sum(em.values()) / n, "f1": 100.0 * sum(f1_.values()) / n}


def best_threshold(na_scores: Mapping[str, float], answered_scores: Mapping[str, float],
                   has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """The no-answer threshold that maximises the total score (official v2 search).

    A question is answered when its `na_scores` (higher = more likely unanswerable) is <= the
    threshold, else abstains. `answered_scores` is what answering earns (EM or F1 of the best
    span); abstaining earns 1 exactly when there is no gold answer. Returns (percent, thresh)."""
    qids = sorted(na_scores, key=lambda q: na_scores[q])
    cur = best = float(sum(not has_answer[q] for q in qids))  # everything abstains
    thresh = float("-inf")
    for q in qids:
        cur += answered_scores[q] - (0.0 if has_answer[q] else 1.0)
        if cur > best:
            best, thresh = cur, na_scores[q]
    return 100.0 * best / max(len(qids), 1), thresh


def squad_v2(gold: Mapping[str, Sequence[str]], answers: Mapping[str, str],
             na_scores: Mapping[str, float], threshold: float | None = None) -> dict[str, float]:
    """Official v2.0 numbers with a no-answer threshold.

    `answers` is the best non-null span per question, `na_scores` its no-answer score (higher =
    abstain). With `threshold=None` it is tuned here on F1 (the dev set is the tuning set, as
    in the paper); `best_exact`/`best_f1` are the official script's separately tuned optima."""
    has = {q: bool(a) for q, a in gold.items()}  # official: any gold answer at all
    em_ans, f1_ans = squad_scores(gold, answers)
    best_f1, f1_thresh = best_threshold(na_scores, f1_ans, has)
    best_em, em_thresh = best_threshold(na_scores, em_ans, has)
    if threshold is None:
        threshold = f1_thresh
    final = {q: (answers.get(q, "") if na_scores.get(q, float("inf")) <= threshold else "") for q in gold}
    em, f1_ = squad_scores(gold, final)
    n = max(len(gold), 1)
    out = {"exact_match": 100.0 * sum(em.values()) / n, "f1": 100.0 * sum(f1_.values()) / n,
           "best_exact": best_em, "best_exact_thresh": em_thresh,
           "best_f1": best_f1, "best_f1_thresh": f1_thresh, "threshold": threshold}
    for name, keep in (("HasAns", True), ("NoAns", False)):
        qs = [q for q in gold if has[q] == keep]
        out[f"{name}_total"] = float(len(qs))
        if qs:
            out[f"{name}_exact"] = 100.0 * sum(em[q] for q in qs) / len(qs)
            out[f"{name}_f1"] = 100.0 * sum(f1_[q] for q in qs) / len(qs)
    return out
