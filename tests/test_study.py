"""The study's arithmetic: compute matching, reading the MLM curve, the table and the last line."""

import dataclasses

import pytest

from electra_pipeline.errors import ConfigError
from electra_pipeline.evaluation import study
from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import presets
from electra_pipeline.training import flops


def P(frac, f, score, **tasks):
    return study.Point(fraction=frac, step=int(f), train_flops=f, glue_score=score, tasks=tasks)


def test_each_arm_gets_the_steps_its_budget_buys():
    configs = {o: c.merge(presets.cpu(), {"train": {"objective": o, "budget_flops": 1e13}}) for o in ("electra", "mlm",
                                                                                                 "all_tokens_mlm")}
    steps = study.check_arms(configs)
    for o, n in steps.items():
        per = flops.train_step_flops(configs[o].model, configs[o].train).total
        assert n == int(1e13 // per) and n * per <= 1e13 < (n + 1) * per
    assert steps["mlm"] > steps["electra"] > steps["all_tokens_mlm"]  # cheaper steps, more of them
    with pytest.raises(ConfigError, match="train.budget_flops: .* less than one electra step"):
        study.check_arms({"electra": c.merge(presets.cpu(), {"train": {"budget_flops": 1e9}})})


def test_flops_to_reach_interpolates_on_the_curve():
    mlm = [P(0.5, 100.0, 50.0), P(1.0, 200.0, 60.0)]
    assert study.flops_to_reach(mlm, 55.0) == pytest.approx(150.0)
    assert study.flops_to_reach(mlm, 60.0) == pytest.approx(200.0)
    assert study.flops_to_reach(mlm, 61.0) is None
    assert study.flops_to_reach(mlm, 40.0) == 100.0  # the first point already reaches it
    curves = {"electra": [P(0.5, 50.0, 52.0), P(1.0, 100.0, 55.0)], "mlm": mlm}
    cheaper = study.cheaper(curves)
    assert cheaper["times"] == pytest.approx(1.5) and not cheaper["at_most"]
    assert "1.50x cheaper" in study.cheaper_sentence(cheaper)
    never = study.cheaper({"electra": [P(1.0, 100.0, 70.0)], "mlm": mlm})
    assert never["baseline_flops"] is None and "does not reach" in study.cheaper_sentence(never)
    line = study.summary_line(curves, 100.0)
    assert line == "study objectives=2 best=mlm electra_score=55.0 mlm_score=60.0 mlm_flops_to_match=150 budget_flops=100"
    assert "compares fine-tuning noise" in study.cheaper_sentence(cheaper, reference_learned=False)
    assert "noise" not in study.cheaper_sentence(cheaper, reference_learned=True)


def test_table_orders_by_score_and_shows_baselines_and_the_paper():
    curves = {"electra": [P(1.0, 100.0, 55.0, sst2=70.0, stsb=40.0)], "mlm": [P(1.0, 100.0, 50.0, sst2=68.0, stsb=32.0)]}
    versus = {"electra": {"gain": 17.0, "seed_gains": {"1": 16.0, "2": 18.0}, "measurable": True},
              "mlm": {"gain": 12.0, "seed_gains": {"1": 13.0, "2": -0.5}, "measurable": False}}
    md = study.table(curves, ["sst2", "stsb"], random_init={"sst2": 66.0, "stsb": 10.0}, auc={"electra": 0.8},
                     versus=versus)
    rows = md.splitlines()
    assert rows[0] == "| objective | sst2 | stsb | GLUE | vs random init | held-out AUC | steps | paper (base) |"
    assert rows[2].startswith("| electra | 70.0 | 40.0 | **55.0** | +17.0 ✓ | 0.800 |") and rows[2].endswith("| 85.0 |")
    assert rows[3].startswith("| mlm | 68.0 | 32.0 | **50.0** | +12.0 |")
    assert rows[4].startswith("| random init | 66.0 | 10.0 | 38.0 | - |")
    assert "matches the paper" in study.ordering_note(curves)
    assert "differs" in study.ordering_note({"electra": curves["mlm"], "mlm": curves["electra"]})


def test_the_study_says_which_arms_beat_random_init():
    one_seed = {"electra": {"gain": 1.5, "seed_gains": {"1": 1.5}, "measurable": False},
                "mlm": {"gain": -0.3, "seed_gains": {"1": -0.3}, "measurable": False}}
    text = study.learned_sentence(one_seed)
    assert text.startswith("No arm is measurably above random init") and "electra +1.5, mlm -0.3" in text
    assert "give 3 or more paired seeds" in text
    three = {"electra": {"gain": 3.0, "seed_gains": {"1": 2.0, "2": 3.0, "3": 4.0}, "measurable": True},
             "mlm": {"gain": 2.0, "seed_gains": {"1": 3.0, "2": -1.0, "3": 4.0}, "measurable": False}}
    text = study.learned_sentence(three)
    assert text.startswith("Measurably above random init") and ": electra." in text and "paired seeds" not in text
    assert "not measured" in study.learned_sentence({})


def test_plot_adds_the_auc_panel_when_checkpoints_were_scored(tmp_path):
    from PIL import Image

    glue_only = {"electra": [P(0.5, 50.0, 52.0), P(1.0, 100.0, 55.0)], "mlm": [P(1.0, 100.0, 50.0)]}
    with_auc = {"electra": [dataclasses.replace(p, auc=a) for p, a in zip(glue_only["electra"], (0.6, 0.7))],
                "mlm": glue_only["mlm"]}
    narrow = Image.open(study.plot(glue_only, tmp_path / "a.png", random_init=51.0)).size
    wide = Image.open(study.plot(with_auc, tmp_path / "b.png", random_init=51.0)).size
    assert wide[0] > 1.5 * narrow[0] and wide[1] == narrow[1]


def test_plot_draws_the_floors_that_need_no_pre_training(tmp_path):
    """Majority-class and bag-of-words lines are drawn where their scores are known (and only then)."""
    import numpy as np
    from PIL import Image

    curves = {"electra": [P(0.5, 50.0, 52.0), P(1.0, 100.0, 55.0)]}

    def pixels(name, floors):
        return np.asarray(Image.open(study.plot(curves, tmp_path / name, random_init=51.0, floors=floors)))

    bare = pixels("a.png", None)
    assert np.array_equal(bare, pixels("b.png", {"majority class": None, "bag-of-words": None}))
    gold = np.array([212, 160, 23])  # the bag-of-words line's colour
    drawn = pixels("c.png", {"majority class": 45.0, "bag-of-words": 53.5})[..., :3]
    assert not np.array_equal(bare[..., :3], drawn)
    assert (np.abs(drawn.astype(int) - gold).sum(axis=-1) < 30).sum() > 200  # a line across the panel
