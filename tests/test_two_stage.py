"""Two-stage training (train.schedule two_stage, the paper's Section 3.2): the generator trains
alone, then the discriminator, started from the generator's weights, trains against it frozen;
the FLOPs budget is split between phases, and a resume across the switch is exact."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_train import _Interrupt, _losses, tiny_cfg

from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import hf, presets
from electra_pipeline.training import flops, optim, runlog, train
from electra_pipeline.training.pretrainer import ElectraPretrainer


def two_stage(tiny_data, out: Path, sharing: str = "tied", **train_overrides) -> c.PretrainConfig:
    kw = dict(max_steps=8, log_every=1, save_every=100, warmup_steps=2, precision="fp32", schedule="two_stage",
              two_stage_fraction=0.5) | train_overrides
    cfg = tiny_cfg(tiny_data, out, **kw)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, embedding_sharing=sharing))


def _initial(cfg: c.PretrainConfig) -> ElectraPretrainer:
    torch.manual_seed(cfg.train.seed)  # as train._setup builds it
    return ElectraPretrainer(cfg.model, cfg.train)


def _shared_names(model: ElectraPretrainer) -> set[str]:
    gen = {id(p) for p in model.generator.parameters()}
    return {n for n, p in model.discriminator.named_parameters() if id(p) in gen}


@pytest.mark.parametrize("sharing", ["tied", "gdes"])
def test_each_phase_trains_only_its_model(tiny_data, tmp_path, sharing):
    """Snapshot 1/2 is the end of the generator phase: the discriminator's own weights are still
    the initial ones there; from then on the generator does not change."""
    cfg = two_stage(tiny_data, tmp_path / "run", sharing, snapshots=1)
    result = train.pretrain(cfg, progress=False)
    index = runlog.snapshots(tmp_path / "run")
    assert [(r["fraction"], r["step"]) for r in index] == [(0.5, 4), (1.0, 8)]
    init = _initial(cfg)
    shared = _shared_names(init)
    disc_at_switch = hf.load_discriminator(index[0]["discriminator"]).state_dict()
    for name, p in init.discriminator.state_dict().items():
        if name in disc_at_switch and name not in shared and "word_embeddings" not in name:
            assert torch.equal(disc_at_switch[name], p), name  # phase 1 leaves the discriminator alone
    gen_at_switch = hf.load_generator(index[0]["generator"]).state_dict()
    assert not torch.equal(gen_at_switch["head.dense.weight"], init.generator.state_dict()["head.dense.weight"])
    gen_final = hf.load_generator(index[1]["generator"]).state_dict()
    for name, p in gen_at_switch.items():
        assert torch.equal(gen_final[name], p), name  # phase 2 leaves the generator alone
    disc_final = hf.load_discriminator(index[1]["discriminator"]).state_dict()
    assert not torch.equal(disc_final["head.dense.weight"], disc_at_switch["head.dense.weight"])
    rows = result.history
    assert "loss/disc" not in rows[3] and rows[3]["step"] == 4  # the generator phase: its MLM loss only
    assert "loss/disc" in rows[4] and rows[4]["loss/total"] == pytest.approx(cfg.train.disc_weight * rows[4]["loss/disc"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["two_stage"]["boundary_step"] == 4
    if sharing == "tied":
        assert "embeddings.word_embeddings.weight" in summary["two_stage"]["shared_with_generator"]


def test_discriminator_starts_from_the_generators_weights_where_shapes_match():
    """Equal sizes, nothing shared: every encoder weight is copied; the generator is then frozen
    and independent of the discriminator. A smaller generator copies only what fits."""
    cfg = presets.tiny()
    model_cfg = dataclasses.replace(cfg.model, generator_fraction=1.0, embedding_sharing="none")
    model = ElectraPretrainer(model_cfg, dataclasses.replace(cfg.train, schedule="two_stage"))
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))  # a generator unlike the discriminator's initialisation
    copied = model.start_discriminator_phase()
    gen, disc = dict(model.generator.electra.named_parameters()), dict(model.discriminator.electra.named_parameters())
    assert sorted(copied) == sorted(gen) == sorted(disc)
    for name in gen:
        assert torch.equal(gen[name], disc[name]) and gen[name] is not disc[name], name
    assert not any(p.requires_grad for p in model.generator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())

    quarter = ElectraPretrainer(dataclasses.replace(cfg.model, generator_fraction=0.25), cfg.train)
    before = quarter.discriminator.electra.layers[0].ffn.output.weight.clone()
    started = quarter.start_discriminator_phase()
    assert "embeddings.word_embeddings.weight (shared)" in started
    assert not any(n.startswith("layers.") for n in started)  # a narrower generator's layers do not fit
    assert torch.equal(quarter.discriminator.electra.layers[0].ffn.output.weight, before)
    assert quarter.generator.electra.embeddings is not quarter.discriminator.electra.embeddings  # frozen copy


def test_the_budget_is_split_by_flops_between_the_phases():
    cfg = presets.cpu()
    t = dataclasses.replace(cfg.train, schedule="two_stage", two_stage_fraction=0.25, budget_flops=1e13)
    first, second = flops.phase_step_flops(cfg.model, t)
    joint = flops.train_step_flops(cfg.model, t)
    assert first == joint.generator and second == joint.generator / 3 + joint.discriminator
    s = optim.Schedule.of(t, first, second)
    assert s.boundary == int(0.25e13 // first) and s.total_steps - s.boundary == int(0.75e13 // second)
    assert s.flops_at(s.boundary) == pytest.approx(0.25e13, rel=first / 0.25e13)
    assert s.flops_at(s.total_steps) <= 1e13 and s.flops_at(s.total_steps) > 1e13 - first - second
    # each phase warms up and decays to zero on its own
    assert s.factor(s.boundary - 1) < 0.01 and s.factor(s.boundary) < s.factor(s.boundary + s.phase2_warmup_steps)
    steps = optim.Schedule.of(dataclasses.replace(t, budget_flops=None, max_steps=100), first, second)
    assert (steps.boundary, steps.total_steps) == (25, 100)


def test_resume_across_the_switch_reproduces_the_uninterrupted_run(tiny_data, tmp_path):
    """Cut in the generator phase and in the discriminator phase; both resumes end where the
    uninterrupted run ends, the second with the generator frozen."""
    kw = dict(max_steps=10)
    full = train.pretrain(two_stage(tiny_data, tmp_path / "full", **kw), progress=False)
    for at in (3, 7):
        cut = two_stage(tiny_data, tmp_path / f"cut{at}", **kw)
        with pytest.raises(KeyboardInterrupt):
            train.pretrain(cut, tracker=_Interrupt(at=at), progress=False)
        resumed = train.pretrain(cut, resume=tmp_path / f"cut{at}", progress=False)
        assert resumed.steps == 10
        a, b = _losses(tmp_path / "full"), _losses(tmp_path / f"cut{at}")
        for step in range(at + 1, 11):
            assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), (at, step)
        for k, v in full.history[-1].items():
            if not k.startswith("throughput"):
                assert resumed.history[-1][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (at, k)
    summary = json.loads((tmp_path / "cut7" / "summary.json").read_text())
    assert summary["two_stage"]["boundary_step"] == 5
    assert summary["compute"]["train_flops"] == pytest.approx(
        json.loads((tmp_path / "full" / "summary.json").read_text())["compute"]["train_flops"])


@pytest.mark.parametrize("change,match", [
    ({"schedule": "adversarial"}, "train.schedule: must be one of"),
    ({"two_stage_fraction": 1.0}, r"train.two_stage_fraction: must be in \(0, 1\)"),
    ({"schedule": "two_stage", "objective": "mlm"}, "train.schedule: two_stage .* needs train.objective electra"),
    ({"schedule": "two_stage", "budget_flops": None, "budget_minutes": 5.0}, "train.schedule: .*budget_minutes"),
])
def test_bad_schedules_are_named(change, match):
    with pytest.raises(ConfigError, match=match):
        c.merge(presets.cpu(), {"train": change})
