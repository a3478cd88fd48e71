"""Score-against-FLOPs curves from probe predictions, and the "x times cheaper" interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from electra_pipeline.evaluation import curves
from electra_pipeline.evaluation.probe import save_predictions

N = 600


def probed(tmp_path, arm: str, flops: float, accuracy: float, seed: int) -> curves.CurvePoint:
    """A probe directory whose SST-2 dev predictions are right on exactly `accuracy` percent."""
    rng = np.random.default_rng(seed)
    gold = np.random.default_rng(0).integers(0, 2, N).astype(float)
    pred = gold.copy()
    wrong = rng.choice(N, size=round(N * (1 - accuracy / 100)), replace=False)
    pred[wrong] = 1 - pred[wrong]
    d = tmp_path / f"{arm}-{flops:g}"
    d.mkdir()
    save_predictions({"_predictions": {"sst2": {"gold": gold, "encoder": pred}}}, d)
    return curves.CurvePoint(arm, flops, d)


def study(tmp_path, electra: list[float], mlm: list[float]) -> dict:
    arms = {"electra": [probed(tmp_path, "electra", 2.0 ** i, s, i) for i, s in enumerate(electra)],
            "mlm": [probed(tmp_path, "mlm", 2.0 ** i, s, 10 + i) for i, s in enumerate(mlm)]}
    return curves.compare(arms, ["sst2"], resamples=300)


def test_a_curve_that_needs_twice_the_flops_reads_twice_cheaper(tmp_path):
    r = study(tmp_path, [65, 70, 80, 85], [55, 60, 70, 80])
    assert [round(p["score"]) for p in r["curves"]["electra"]] == [65, 70, 80, 85]
    at4 = r["x_cheaper"][2]
    assert at4["times"] == pytest.approx(2.0) and at4["low"] > 1 and at4["claim"] == "cheaper"
    last = r["x_cheaper"][3]  # mlm never reaches 85 within 8 FLOPs: a lower bound only
    assert last["censored"] == "above" and math.isinf(last["high"]) and "does not reach" in curves.ratio_text(last)
    first = r["x_cheaper"][0]  # 65 lies halfway between mlm's 60 at 2 FLOPs and 70 at 4: log-linear
    assert first["times"] == pytest.approx(2 ** 1.5)


def test_equal_curves_are_not_resolved(tmp_path):
    r = study(tmp_path, [60, 65, 70, 75], [60, 65, 70, 75])
    mid = r["x_cheaper"][1]
    assert mid["times"] == pytest.approx(1.0, abs=0.05)
    assert mid["low"] < 1 < mid["high"] and mid["claim"] == "not resolved"
    assert "not resolved" in curves.format_table(r)


def test_plot_and_files(tmp_path):
    r = study(tmp_path, [60, 70], [55, 65])
    out = tmp_path / "study"
    curves.write(r, out, {"random init": 52.0, "bag-of-words": 80.0})
    assert (out / "study_curves.png").stat().st_size > 10_000 and (out / "curves.md").is_file()
