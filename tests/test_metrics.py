"""Metrics agree with scikit-learn / scipy and with the official SQuAD evaluation rules."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from electra_pipeline.evaluation import metrics

LABELS = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
PREDS = [1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1]
GOLD_SCORES = [0.0, 1.2, 2.5, 3.1, 4.8, 5.0, 2.2, 3.9]
PRED_SCORES = [0.4, 1.0, 2.9, 2.7, 4.1, 4.6, 3.5, 3.0]


def test_classification_metrics_match_sklearn_in_percent():
    assert metrics.accuracy(LABELS, PREDS) == pytest.approx(100 * skm.accuracy_score(LABELS, PREDS))
    assert metrics.f1(LABELS, PREDS) == pytest.approx(100 * skm.f1_score(LABELS, PREDS))
    assert metrics.matthews_corr(LABELS, PREDS) == pytest.approx(100 * skm.matthews_corrcoef(LABELS, PREDS))
    assert metrics.accuracy(LABELS, PREDS) == pytest.approx(100 * 8 / 12)


def test_correlations_match_scipy_in_percent():
    assert metrics.pearson(GOLD_SCORES, PRED_SCORES) == pytest.approx(100 * stats.pearsonr(GOLD_SCORES, PRED_SCORES)[0])
    expected = 100 * stats.spearmanr(GOLD_SCORES, PRED_SCORES)[0]
    assert metrics.spearman(GOLD_SCORES, PRED_SCORES) == pytest.approx(expected)


def test_correlation_of_constant_predictions_is_zero_not_nan():
    assert metrics.pearson(GOLD_SCORES, [2.0] * len(GOLD_SCORES)) == 0.0
    assert metrics.spearman(GOLD_SCORES, [2.0] * len(GOLD_SCORES)) == 0.0


def test_f1_without_positive_predictions_is_zero():
    assert metrics.f1([1, 0, 1], [0, 0, 0]) == 0.0


def test_glue_score_averages_two_metric_tasks_and_skips_wnli():
    results = {"cola": {"mcc": 50.0}, "mrpc": {"f1": 90.0, "accuracy": 86.0},
               "stsb": {"pearson": 88.0, "spearman": 86.0}, "mnli": {"accuracy": 80.0, "accuracy_mm": 81.0},
               "wnli": {"accuracy": 10.0}, "squad_v1": {"exact_match": 80.0, "f1": 88.0}}
    expected = (50.0 + 88.0 + 87.0 + 80.5) / 4
    assert metrics.glue_score(results) == pytest.approx(expected)
    assert metrics.glue_score(results, include_wnli=True) == pytest.approx((expected * 4 + 10.0) / 5)
    assert math.isnan(metrics.glue_score({"squad_v1": {"f1": 1.0}}))


@pytest.mark.parametrize("text, normalised", [
    ("The Denver Broncos", "denver broncos"),
    ("  an   apple,  a pear  ", "apple pear"),
    ("Theatre of the Absurd!", "theatre of absurd"),  # "the" inside a word stays
    ("A.B.C. (1990)", "abc 1990"),
    ("the", ""),
    ("Saint-Étienne", "saintétienne"),
])
def test_official_normalisation(text, normalised):
    assert metrics.normalize_answer(text) == normalised


def test_exact_match_and_token_f1():
    assert metrics.exact_match("the Broncos.", "Broncos") == 1.0
    assert metrics.exact_match("Denver", "Broncos") == 0.0
    # pred tokens {cat, sat}, gold {cat, sat, on, mat}: precision 1, recall 1/2
    assert metrics.token_f1("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert metrics.token_f1("", "") == 1.0  # v2: both empty
    assert metrics.token_f1("Denver", "") == 0.0
    assert metrics.token_f1("", "Denver") == 0.0


def test_v1_scores_take_the_max_over_gold_answers():
    gold = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["1990", "in 1990"], "q3": ["Paris"]}
    preds = {"q1": "Broncos", "q2": "in 1990", "q3": "London"}
    out = metrics.squad_v1(gold, preds)
    # q1: EM 1 against "the Broncos"; q2: EM 1; q3: 0
    assert out["exact_match"] == pytest.approx(100 * 2 / 3)
    assert out["f1"] == pytest.approx(100 * 2 / 3)
    assert metrics.squad_v1(gold, {})["exact_match"] == 0.0  # a missing prediction scores 0


def _brute_force_best(na, answered, has):
    """Try every threshold: answer when na <= t."""
    best = -1.0
    for t in [-math.inf, *sorted(na.values())]:
        total = sum((answered[q] if na[q] <= t else float(not has[q])) for q in na)
        best = max(best, total)
    return 100 * best / len(na)


def test_v2_threshold_search_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        qids = [f"q{i}" for i in range(9)]
        has = {q: bool(rng.integers(2)) for q in qids}
        answered = {q: (float(rng.random()) if has[q] else float(rng.integers(2) == 0)) for q in qids}
        na = {q: float(rng.normal()) for q in qids}
        best, thresh = metrics.best_threshold(na, answered, has)
        assert best == pytest.approx(_brute_force_best(na, answered, has))
        total = sum((answered[q] if na[q] <= thresh else float(not has[q])) for q in qids)
        assert 100 * total / len(qids) == pytest.approx(best)


def test_v2_breakdown_with_empty_gold_answers():
    gold = {"a1": ["Paris"], "a2": ["the Seine", "Seine river"], "n1": [], "n2": []}
    answers = {"a1": "Paris", "a2": "Loire", "n1": "Lyon", "n2": ""}
    na = {"a1": -3.0, "a2": -1.0, "n1": 2.0, "n2": 0.5}  # higher = more likely unanswerable
    out = metrics.squad_v2(gold, answers, na)
    # Best F1: answer a1 and a2, abstain on n1 and n2 -> EM 3/4 (a2 wrong)
    assert out["exact_match"] == pytest.approx(75.0)
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    assert out["HasAns_exact"] == pytest.approx(50.0)
    assert out["NoAns_exact"] == pytest.approx(100.0)
    assert out["best_f1"] == pytest.approx(75.0)
    # A fixed threshold that answers everything: n1's "Lyon" is wrong; n2's empty span counts as abstaining
    fixed = metrics.squad_v2(gold, answers, na, threshold=10.0)
    assert fixed["NoAns_exact"] == pytest.approx(50.0)
    assert fixed["exact_match"] == pytest.approx(50.0)


def test_v2_all_combinations_of_a_tiny_case_are_consistent():
    gold = {"h": ["yes"], "n": []}
    for pred_h, pred_n in itertools.product(["yes", "no"], ["", "maybe"]):
        out = metrics.squad_v2(gold, {"h": pred_h, "n": pred_n}, {"h": 0.0, "n": 1.0})
        assert out["exact_match"] == pytest.approx(100 * ((pred_h == "yes") + 1) / 2)
