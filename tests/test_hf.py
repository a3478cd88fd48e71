"""Hugging Face ELECTRA format: our weights in transformers give our logits; files round-trip.

The paper's architecture loads in transformers' own ELECTRA classes; pre-LayerNorm and relative
attention load through the Auto classes with the code the directory carries
(trust_remote_code), and transformers' ELECTRA classes say they do not fit."""

import contextlib
import dataclasses
import json
import logging

import pytest
import torch

from electra_pipeline.errors import DataError
from electra_pipeline.modeling import hf, presets
from electra_pipeline.training.pretrainer import ElectraPretrainer

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
    written = json.loads((root / "disc" / "config.json").read_text())
    assert written["model_type"] == "electra" and "auto_map" not in written
    assert not list((root / "disc").glob("*.py"))  # the stock classes need no code of ours
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


def test_only_the_cpu_preset_needs_its_own_modeling_code():
    # tiny/small/base/large have the paper's architecture; the cpu recipe is pre-LN with relative attention
    assert {name for name, make in presets.PRESETS.items() if hf.custom_architecture(make().model)} == {"cpu"}


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """A tiny pre-LN, relative-attention pretrainer (the cpu preset's architecture) saved both ways."""
    root = tmp_path_factory.mktemp("hf_custom")
    cfg = dataclasses.replace(presets.cpu().model, vocab_size=500, hidden_size=64, num_heads=4, intermediate_size=128,
                              embedding_size=32, max_position_embeddings=64, relative_attention=8)
    torch.manual_seed(0)
    m = ElectraPretrainer(cfg).eval()
    with torch.no_grad():  # away from the initial values, so that every parameter matters
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_hf(m.discriminator, root / "disc", "discriminator")
    hf.save_hf(m.generator, root / "gen", "generator")
    return m, root


def test_custom_architecture_carries_its_code_and_model_type(custom):
    _, root = custom
    for d in ("disc", "gen"):
        written = json.loads((root / d / "config.json").read_text())
        assert written["model_type"] == "electra_pipeline" and written["auto_map"] == hf.AUTO_MAP
        assert written["pre_layer_norm"] is True and written["relative_attention"] == 8
        for name in hf.REMOTE_CODE_FILES:  # the copy is the file the tests below run
            assert (root / d / name).read_bytes() == (hf.REMOTE_CODE / name).read_bytes()
        assert hf.read_hf(root / d)[0].relative_attention == 8  # and our own loaders still read it


def test_custom_architecture_parity_through_auto_classes(custom):
    """AutoModel* with trust_remote_code, offline, compute our model's function to 1e-5."""
    m, root = custom
    ids, tt, am = inputs(m.config.vocab_size)
    keep = am.bool()
    auto = dict(trust_remote_code=True, local_files_only=True)
    with torch.no_grad():
        disc = transformers.AutoModelForPreTraining.from_pretrained(root / "disc", **auto).eval()
        assert type(disc).__name__ == "ElectraPipelineForPreTraining"
        theirs = disc(input_ids=ids, token_type_ids=tt, attention_mask=am).logits
        assert (m.discriminator(ids, tt, am) - theirs)[keep].abs().max() <= 1e-5

        enc = transformers.AutoModel.from_pretrained(root / "disc", **auto).eval()
        out = enc(input_ids=ids, token_type_ids=tt, attention_mask=am, output_hidden_states=True)
        ours = m.discriminator.electra.hidden_states(ids, tt, am)
        assert len(out.hidden_states) == len(ours) == m.config.num_layers + 1
        for a, b in zip(ours, out.hidden_states):
            assert (a - b)[keep].abs().max() <= 1e-5
        assert (m.discriminator.electra(ids, tt, am) - out.last_hidden_state)[keep].abs().max() <= 1e-5

        gen = transformers.AutoModelForMaskedLM.from_pretrained(root / "gen", **auto).eval()
        every = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
        theirs = gen(input_ids=ids, token_type_ids=tt, attention_mask=am).logits
        assert (m.generator(ids, tt, am, every) - theirs)[keep].abs().max() <= 1e-5

    # fine-tuning in transformers: our encoder under a new classification head that trains
    clf = transformers.AutoModelForSequenceClassification.from_pretrained(root / "disc", num_labels=3, **auto).eval()
    with torch.no_grad():
        assert (m.discriminator.electra(ids, tt, am) - clf.electra(ids, am, tt).last_hidden_state)[keep].abs().max() <= 1e-5
    loss = clf(input_ids=ids, token_type_ids=tt, attention_mask=am, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert torch.isfinite(loss) and clf.classifier.out_proj.weight.grad.abs().sum() > 0


@contextlib.contextmanager
def transformers_warnings():
    """The messages transformers logs at WARNING or above while the block runs."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_stock_electra_classes_warn_on_the_custom_architecture(custom):
    """transformers' own ELECTRA classes load the weights they know and warn twice: another model
    type, and tensors they ignore. What they then compute is another function."""
    m, root = custom
    for cls, d in ((transformers.ElectraForPreTraining, "disc"), (transformers.ElectraModel, "disc"),
                   (transformers.ElectraForMaskedLM, "gen")):
        with transformers_warnings() as said:
            cls.from_pretrained(root / d)
        text = "\n".join(said)
        assert "model of type `electra_pipeline` to instantiate a model of type `electra`" in text, cls
        assert "relative_bias" in text and "final_LayerNorm" in text and "UNEXPECTED" in text, cls
    ids, tt, am = inputs(m.config.vocab_size)
    with torch.no_grad():
        theirs = transformers.ElectraForPreTraining.from_pretrained(root / "disc").eval()(
            input_ids=ids, token_type_ids=tt, attention_mask=am).logits
    assert (m.discriminator(ids, tt, am) - theirs)[am.bool()].abs().max() > 1e-2
