"""Model structure: shared embeddings, published sizes, masked-only generator logits."""

import dataclasses

import pytest
import torch

from electra_pipeline.modeling import presets
from electra_pipeline.modeling.model import (
    Discriminator,
    ElectraForQuestionAnswering,
    ElectraForSequenceClassification,
    count_parameters,
)
from electra_pipeline.training import cpu_paths
from electra_pipeline.training.cpu_paths import attention_with_dropout, dropout
from electra_pipeline.training.pretrainer import ElectraPretrainer


def test_generator_and_discriminator_share_one_embedding_storage():
    m = ElectraPretrainer(presets.tiny().model)
    ge, de = m.generator.electra.embeddings, m.discriminator.electra.embeddings
    assert ge is de
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        assert getattr(ge, name).weight.data_ptr() == getattr(de, name).weight.data_ptr()
    # nothing else is shared: encoder weights are distinct tensors
    assert m.generator.electra.layers[0].attention.qkv.weight.shape != m.discriminator.electra.layers[0].attention.qkv.weight.shape
    # counted once
    assert count_parameters(m) < count_parameters(m.generator) + count_parameters(m.discriminator)


@pytest.mark.parametrize("name,expected_m", [("small", 13.5), ("base", 110.0)])
def test_discriminator_parameter_counts_match_published(name, expected_m):
    n = count_parameters(Discriminator(presets.preset(name).model)) / 1e6
    assert abs(n - expected_m) / expected_m < 0.02, n


@pytest.mark.parametrize("name", ["small", "base", "large"])
def test_generator_built_with_preset_fraction(name):
    cfg = presets.preset(name).model
    m = ElectraPretrainer(dataclasses.replace(cfg, num_layers=1))  # depth does not matter here
    g = m.generator.electra.config
    assert g.hidden_size == cfg.generator().hidden_size
    assert m.generator.electra.layers[0].ffn.intermediate.out_features == cfg.generator().intermediate_size
    assert m.generator.electra.layers[0].attention.num_heads == max(1, g.hidden_size // 64)


def test_generator_logits_only_at_requested_positions():
    cfg = presets.tiny().model
    m = ElectraPretrainer(cfg).eval()
    ids = torch.randint(5, cfg.vocab_size, (2, 32))
    pos = torch.tensor([[1, 5, 7], [2, 3, 30]])
    with torch.no_grad():
        logits = m.generator(ids, None, None, pos)
        full = m.generator(ids, None, None, torch.arange(32).expand(2, -1))
    assert logits.shape == (2, 3, cfg.vocab_size)
    assert torch.allclose(logits, torch.gather(full, 1, pos[..., None].expand(-1, -1, cfg.vocab_size)), atol=1e-5)


def test_padding_does_not_change_real_tokens():
    cfg = presets.tiny().model
    d = Discriminator(cfg).eval()
    ids = torch.randint(5, cfg.vocab_size, (1, 10))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], 1)
    am = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], 1).long()
    with torch.no_grad():
        assert torch.allclose(d(ids), d(padded, None, am)[:, :10], atol=1e-5)


def test_task_heads_shapes():
    cfg = presets.tiny().model
    ids = torch.randint(5, cfg.vocab_size, (3, 12))
    assert ElectraForSequenceClassification(cfg, 3)(ids).shape == (3, 3)
    out = ElectraForQuestionAnswering(cfg, answerability=True)(ids)
    assert out["start_logits"].shape == (3, 12) and out["answerable_logits"].shape == (3,)


def test_mean_pooling_averages_real_tokens_only():
    """Mean pooling: padding changes nothing, and the head reads the mean of the token states."""
    torch.manual_seed(0)
    cfg = presets.tiny().model
    m = ElectraForSequenceClassification(cfg, 2, pooling="mean").eval()
    ids = torch.randint(5, cfg.vocab_size, (1, 10))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], 1)
    am = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], 1).long()
    with torch.no_grad():
        assert torch.allclose(m(ids), m(padded, None, am), atol=1e-5)
        h = m.electra(ids)
        assert torch.allclose(m(ids), m.classifier.out_proj(h.mean(1)), atol=1e-5)
        assert not torch.allclose(m(ids), m.classifier.out_proj(h[:, 0]), atol=1e-3)
    with pytest.raises(ValueError, match="pooling"):
        ElectraForSequenceClassification(cfg, 2, pooling="max")


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_rate_scale_and_gradient(p):
    torch.manual_seed(0)
    x = torch.randn(301, 257, requires_grad=True)  # odd element count: the last 15-bit lane is unpaired
    y = dropout(x, p, training=True)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.005
    scale = 1 / (1 - round(p * 32768) / 32768)
    assert torch.allclose(y[kept], x[kept] * scale)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() * scale)  # gradient flows only through kept elements
    assert dropout(x, p, training=False) is x and dropout(x, 0.0, training=True) is x


def test_cpu_dropout_scale_is_unbiased_in_bf16():
    torch.manual_seed(0)
    x = torch.randn(1 << 20).bfloat16()
    y = dropout(x, 0.1, training=True)
    assert y.dtype == torch.bfloat16
    kept = y != 0
    ratio = (y[kept].float() / x[kept].float()).mean().item()
    assert ratio == pytest.approx(32768 / (32768 - round(0.1 * 32768)), abs=2e-4)  # not bf16's 1.109


def test_cpu_dropout_follows_the_torch_seed():
    x = torch.ones(64, 64)
    torch.manual_seed(5)
    a = dropout(x, 0.1, True)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.1, True)) and not torch.equal(a, dropout(x, 0.1, True))


def test_attention_with_dropout_off_equals_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention_with_dropout(q, k, v, mask, 0.0), want, atol=1e-6)


def test_cpu_paths_swap_in_from_outside_with_the_same_weights_and_outputs():
    """model.py is plain nn.Dropout + SDPA; cpu_paths.apply swaps the fast CPU modules in place:
    same state dict, same eval outputs, and the training step takes the fast path."""
    from torch import nn

    torch.manual_seed(0)
    plain = ElectraPretrainer(presets.tiny().model)
    assert not any(isinstance(m, (cpu_paths.FastDropout, cpu_paths.FastSelfAttention)) for m in plain.modules())
    ids = torch.randint(5, 100, (2, 16))
    plain.eval()
    want = plain.discriminator(ids)
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    fast = cpu_paths.apply(plain)
    assert fast is plain and cpu_paths.apply(fast) is fast  # in place, idempotent
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert sum(isinstance(m, cpu_paths.FastSelfAttention) for m in fast.modules()) == 2 * presets.tiny().model.num_layers
    assert state.keys() == fast.state_dict().keys()
    assert torch.equal(fast.discriminator(ids), want)  # eval: dropout off, SDPA as before
    fast.train()
    torch.manual_seed(1)
    a = fast.discriminator(ids)
    torch.manual_seed(1)
    assert torch.equal(a, fast.discriminator(ids)) and not torch.equal(a, want)  # the fast masks follow the seed
