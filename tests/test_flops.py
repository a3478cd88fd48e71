"""Analytic FLOPs: one layer by hand, the joint step's parts, the published compute, MFU."""

import dataclasses

import pytest
import torch

from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import presets
from electra_pipeline.training import flops


def test_one_layer_matches_a_hand_count():
    # ELECTRA-Small discriminator layer over one 128-token sequence, matrix by matrix:
    T, H, F = 128, 256, 1024
    q_k_v = 3 * (2 * T * H * H)  # three (T, H) x (H, H) projections
    scores = 2 * T * T * H  # 4 heads x (T, 64) x (64, T)
    context = 2 * T * T * H  # 4 heads x (T, T) x (T, 64)
    out_proj = 2 * T * H * H
    ffn = 2 * T * H * F + 2 * T * F * H
    assert flops.layer_flops(T, H, F) == q_k_v + scores + context + out_proj + ffn == 218_103_808


def test_layer_count_equals_traced_matmuls():
    """The formula agrees with torch's own FLOP counter on a real Layer (forward, no dropout)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from electra_pipeline.modeling.model import Layer

    cfg = dataclasses.replace(presets.small().model, dropout=0.0, attention_dropout=0.0)
    layer = Layer(cfg).eval()
    x = torch.randn(2, 128, cfg.hidden_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        layer(x, None)  # the math kernel: its matmuls are visible to the counter
    assert counter.get_total_flops() == 2 * flops.layer_flops(128, cfg.hidden_size, cfg.intermediate_size)


def test_joint_step_parts():
    cfg = presets.small()
    t = dataclasses.replace(cfg.train, batch_size=1)
    g, m = cfg.model.generator(), cfg.model
    T, P, V, E = t.seq_len, t.max_predictions, m.vocab_size, m.embedding_size
    gen = 2 * T * E * g.hidden_size + g.num_layers * flops.layer_flops(T, g.hidden_size, g.intermediate_size)
    gen += 2 * P * g.hidden_size * E + 2 * P * E * V  # head and tied vocabulary projection at P positions
    disc = 2 * T * E * m.hidden_size + m.num_layers * flops.layer_flops(T, m.hidden_size, m.intermediate_size)
    disc += 2 * T * m.hidden_size * m.hidden_size + 2 * T * m.hidden_size
    step = flops.train_step_flops(m, t)
    assert (step.generator, step.discriminator) == (3 * gen, 3 * disc)
    # batch scales linearly; a naive generator projecting all T positions costs more
    assert flops.train_step_flops(m, t, batch_size=16).total == 16 * step.total
    naive = flops.train_step_flops(m, t, generator_positions=T)
    assert naive.generator - step.generator == 3 * (T - P) * (2 * g.hidden_size * E + 2 * E * V)


def test_mlm_objective_has_no_discriminator():
    cfg = presets.small()
    step = flops.train_step_flops(cfg.model, dataclasses.replace(cfg.train, objective="mlm"))
    assert step.discriminator == 0 and step.generator > 0


@pytest.mark.parametrize("name,published", [("small", 1.4e18), ("base", 6.4e19)])
def test_run_compute_is_near_the_papers(name, published):
    """Paper Table 1 (ELECTRA-Small 1.4e18, Base 6.4e19 train FLOPs): the same order, within 20%."""
    cfg = presets.preset(name)
    total = flops.train_step_flops(cfg.model, cfg.train).total * cfg.train.max_steps
    assert abs(total - published) / published < 0.2, f"{total:.3g}"


def test_peak_table_and_mfu():
    assert flops.peak_tflops("NVIDIA H200") == 989.0
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flops.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert flops.peak_tflops("NVIDIA A10") == 125.0
    assert flops.peak_tflops("Tesla V100-SXM2-16GB") == 125.0
    assert flops.peak_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert flops.peak_tflops("some CPU") is None
    assert flops.mfu(989e12 * 0.5 * 2, 1.0, 989.0, devices=2) == pytest.approx(0.5)


@pytest.mark.parametrize("objective", c.OBJECTIVES)
def test_each_objective_counts_what_its_step_multiplies(objective):
    """flops.py's count of one training step equals torch's FLOP counter over the real forward and
    backward of that objective (math attention kernel, no padding, dropout off)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from electra_pipeline.training.pretrainer import ElectraPretrainer

    cfg = presets.tiny()
    model_cfg = dataclasses.replace(cfg.model, vocab_size=1000, dropout=0.0, attention_dropout=0.0)
    train_cfg = dataclasses.replace(cfg.train, objective=objective, seq_len=64)
    model = ElectraPretrainer(model_cfg, train_cfg)
    ids = torch.randint(5, 1000, (4, 64), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    masked = model.mask(batch, torch.tensor([0, 1, 2, 3, 4]), 4, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(batch, masked, torch.Generator().manual_seed(0), pad_free=True).loss.backward()
    want = flops.train_step_flops(model_cfg, train_cfg, batch_size=4, generator_positions=masked.positions.shape[1])
    assert counter.get_total_flops() == want.total


@pytest.mark.parametrize("fraction,width,heads", [(1 / 8, 32, 1), (1 / 4, 64, 1), (1 / 2, 128, 2), (3 / 4, 192, 3),
                                                  (1.0, 256, 4)])
def test_figure_b_generators_are_valid_and_counted(fraction, width, heads):
    """The generator-size arms of figure (b) on the cpu preset: a separate generator (own encoder,
    the discriminator's depth, tied embeddings) at each width fraction. Heads are width / 64, at
    least one, so every width divides; the generator's FLOPs are its own encoder's and head's,
    traced through a real forward pass."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from electra_pipeline.modeling.model import Generator

    cfg = c.merge(presets.cpu(), {"model": {"generator_fraction": fraction, "share_encoder": False,
                                            "generator_layers": 0}})
    g = cfg.model.generator()
    assert (g.hidden_size, g.num_heads, g.num_layers, g.intermediate_size) == (width, heads, 2, int(1024 * fraction))
    t = cfg.train
    step = flops.train_step_flops(cfg.model, t)
    assert step.discriminator == flops.train_step_flops(presets.cpu().model, t).discriminator
    gen = Generator(dataclasses.replace(g, relative_attention=0)).eval()  # the bias adds no matmul
    ids = torch.randint(5, g.vocab_size, (1, t.seq_len))
    positions = torch.arange(t.max_predictions)[None]
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        gen(ids, None, None, positions)  # the math kernel: its matmuls are visible to the counter
    assert 3 * t.batch_size * counter.get_total_flops() == pytest.approx(step.generator, rel=1e-3)
