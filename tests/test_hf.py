"""Hugging Face ELECTRA format: our weights in transformers give our logits; files round-trip."""

import json

import pytest
import torch

from electra_pipeline import hf, presets
from electra_pipeline.errors import DataError
from electra_pipeline.pretrainer import ElectraPretrainer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    m = ElectraPretrainer(presets.tiny().model).eval()
    hf.save_hf(m.discriminator, root / "disc", "discriminator")
    hf.save_hf(m.generator, root / "gen", "generator")
    return m, root


def inputs(vocab):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (3, 24), generator=g)
    am = torch.ones_like(ids)
    am[1, 17:] = 0
    am[2, 9:] = 0
    tt = torch.zeros_like(ids)
    tt[:, 12:] = 1
    return ids, tt, am


def test_discriminator_parity_with_transformers(saved):
    m, root = saved
    ref = transformers.ElectraForPreTraining.from_pretrained(root / "disc").eval()
    ids, tt, am = inputs(m.config.vocab_size)
    with torch.no_grad():
        ours = m.discriminator(ids, tt, am)
        theirs = ref(input_ids=ids, token_type_ids=tt, attention_mask=am).logits
    assert (ours - theirs)[am.bool()].abs().max() < 1e-4


def test_generator_parity_with_transformers(saved):
    m, root = saved
    ref = transformers.ElectraForMaskedLM.from_pretrained(root / "gen").eval()
    ids, tt, am = inputs(m.config.vocab_size)
    every = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    with torch.no_grad():
        ours = m.generator(ids, tt, am, every)
        theirs = ref(input_ids=ids, token_type_ids=tt, attention_mask=am).logits
    assert (ours - theirs)[am.bool()].abs().max() < 1e-4


def test_transformers_weights_load_into_ours(tmp_path):
    cfg = transformers.ElectraConfig(vocab_size=500, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128, max_position_embeddings=64)
    torch.manual_seed(0)
    ref = transformers.ElectraForPreTraining(cfg).eval()
    ref.save_pretrained(tmp_path)
    ours = hf.load_discriminator(tmp_path).eval()
    ids, tt, am = inputs(500)
    with torch.no_grad():
        assert (ours(ids, tt, am) - ref(input_ids=ids, token_type_ids=tt, attention_mask=am).logits)[am.bool()].abs().max() < 1e-4


def test_round_trip_is_exact(saved):
    m, root = saved
    d = hf.load_discriminator(root / "disc")
    for (k, a), b in zip(m.discriminator.state_dict().items(), d.state_dict().values()):
        assert torch.equal(a, b), k
    g = hf.load_generator(root / "gen")
    for (k, a), b in zip(m.generator.state_dict().items(), g.state_dict().values()):
        assert torch.equal(a, b), k


def test_bad_checkpoints_name_the_file(saved, tmp_path):
    _, root = saved
    with pytest.raises(DataError, match="checkpoint directory not found"):
        hf.load_discriminator(tmp_path / "nope")
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    (trunc / "config.json").write_text((root / "disc" / "config.json").read_text())
    data = (root / "disc" / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="model.safetensors"):
        hf.load_discriminator(trunc)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (foreign / "model.safetensors").write_bytes(data)
    with pytest.raises(DataError, match="not an ELECTRA checkpoint"):
        hf.load_discriminator(foreign)
