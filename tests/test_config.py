"""Config: presets, precedence, and errors that name the field."""

import json

import pytest

from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import presets


def test_presets_have_published_sizes():
    assert (presets.small().model.hidden_size, presets.small().model.num_layers, presets.small().model.embedding_size) == (256, 12, 128)
    assert (presets.base().model.hidden_size, presets.base().model.num_heads) == (768, 12)
    assert presets.large().train.mask_prob == 0.25
    assert presets.small().train.max_predictions == 20  # round((0.15 + 0.005) * 128) = round(19.84)


@pytest.mark.parametrize("name,gen", [("small", (64, 1, 256)), ("base", (256, 4, 1024)), ("large", (256, 4, 1024))])
def test_generator_sizes_per_preset(name, gen):
    g = presets.preset(name).model.generator()
    assert (g.hidden_size, g.num_heads, g.intermediate_size) == gen
    assert g.num_layers == presets.preset(name).model.num_layers  # same depth


@pytest.mark.parametrize("overrides,field", [
    ({"train": {"mask_prob": 1.5}}, "train.mask_prob"),
    ({"train": {"mask_prob": 0}}, "train.mask_prob"),
    ({"model": {"hidden_size": 130}}, "model.hidden_size"),  # not divisible by 4 heads
    ({"model": {"hiden_size": 128}}, "model.hiden_size"),  # unknown key
    ({"train": {"batch_size": "many"}}, "train.batch_size"),
    ({"train": {"objective": "gpt"}}, "train.objective"),
    ({"train": {"seq_len": 1024}}, "train.seq_len"),  # beyond max_position_embeddings
    ({"train": {"compile": "maybe"}}, "train.compile"),
    ({"train": {"candidates": 1}}, "train.candidates"),  # the original needs a rival
    ({"train": {"candidates": 40000}}, "train.candidates"),  # more than the vocabulary
    ({"model": {"embedding_sharing": "half"}}, "model.embedding_sharing"),
    ({"model": {"embedding_sharing": "gdes"}, "train": {"objective": "mlm"}}, "model.embedding_sharing"),  # no generator
])
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        c.merge(presets.small(), overrides)


def test_gdes_needs_separate_encoders():
    with pytest.raises(ConfigError, match="model.embedding_sharing"):
        c.merge(presets.cpu(), {"model": {"embedding_sharing": "gdes"}})  # cpu shares its bottom layer
    assert c.merge(presets.cpu(), {"model": {"embedding_sharing": "gdes", "share_encoder": False}}).model.embedding_sharing == "gdes"


def test_precedence_preset_file_flags(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("preset: tiny\ntrain:\n  lr: 0.002\n  max_steps: 50\nmodel:\n  num_layers: 3\n")
    cfg = presets.resolve(None, str(f), {"train": {"max_steps": "70"}})
    assert cfg.preset == "tiny" and cfg.model.num_layers == 3  # file over preset
    assert cfg.train.lr == 0.002 and cfg.train.max_steps == 70  # flag over file
    assert cfg.model.hidden_size == presets.tiny().model.hidden_size  # untouched fields from the preset


def test_unknown_key_in_file_is_an_error(tmp_path):
    f = tmp_path / "run.json"
    f.write_text(json.dumps({"train": {"learning_rate": 1e-3}}))
    with pytest.raises(ConfigError, match="train.learning_rate: unknown config key"):
        presets.resolve("tiny", str(f))


def test_saved_config_round_trips(tmp_path):
    cfg = c.merge(presets.tiny(), {"train": {"seed": 7}})
    c.save(cfg, tmp_path / "config.json")
    assert c.from_dict(c.PretrainConfig, json.loads((tmp_path / "config.json").read_text())) == cfg


def test_cli_flags_cover_every_field():
    import argparse

    from electra_cli import flags

    p = argparse.ArgumentParser()
    flags.add_config_flags(p)
    args = p.parse_args(["--train.mask_prob", "0.2", "--model.num_layers", "4", "--output-dir", "x"])
    assert flags.overrides_from_args(args) == {"train": {"mask_prob": "0.2"}, "model": {"num_layers": "4"},
                                               "output_dir": "x"}
    dests = {a.dest for a in p._actions}
    assert "cfg:tracking.tracking_uri" in dests and "cfg:train.disc_weight" in dests


def test_cpu_preset_budgets_replace_each_other_and_none_clears_one():
    cfg = presets.resolve("cpu", None, {})
    assert cfg.train.budget_flops == 4e13 and cfg.train.budget_minutes is None
    assert cfg.model.pre_layer_norm and cfg.model.relative_attention == 64 and cfg.model.dropout == 0.0
    by_clock = presets.resolve("cpu", None, {"train": {"budget_minutes": "60"}})
    assert by_clock.train.budget_minutes == 60.0 and by_clock.train.budget_flops is None
    by_steps = presets.resolve("cpu", None, {"train": {"budget_flops": "none", "max_steps": "100"}})
    assert by_steps.train.budget_flops is None and by_steps.train.max_steps == 100
    with pytest.raises(ConfigError, match="not both"):
        presets.resolve("cpu", None, {"train": {"budget_minutes": "1", "budget_flops": "1e12"}})
    with pytest.raises(ConfigError, match="model.share_encoder"):
        c.ModelConfig(share_encoder=True, generator_fraction=0.5)
    assert c.ModelConfig(share_encoder=True, generator_fraction=1.0).generator().hidden_size == 256


def test_generator_layers_sets_the_generator_depth_only():
    m = c.ModelConfig(num_layers=4, generator_fraction=0.25, generator_layers=1)
    g = m.generator()
    assert (g.num_layers, g.hidden_size, g.generator_layers) == (1, 64, 0)
    assert c.ModelConfig(num_layers=4).generator().num_layers == 4  # 0: the discriminator's depth
    with pytest.raises(ConfigError, match="model.generator_layers"):
        c.ModelConfig(num_layers=2, generator_layers=3)
    shared = c.ModelConfig(num_layers=2, generator_fraction=1.0, share_encoder=True, generator_layers=1).generator()
    assert (shared.num_layers, shared.hidden_size, shared.share_encoder) == (1, 256, False)


def test_every_config_field_has_a_docstring_that_is_its_help(capsys):
    """One source of help text: the docstring under each field; generated flags show it."""
    from electra_cli import main
    from electra_pipeline.data.corpus.config import CorpusConfig
    from electra_pipeline.data.examples import ExamplesConfig
    from electra_pipeline.data.tokenizer import TokenizerConfig
    from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig
    from electra_pipeline.modeling.settings import field_docs, undocumented

    for cls in (c.PretrainConfig, FinetuneConfig, TokenizerConfig, ExamplesConfig, CorpusConfig):
        assert undocumented(cls) == [], cls.__name__
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for section in (c.ModelConfig, c.TrainConfig):
        prefix = "model" if section is c.ModelConfig else "train"
        for name, doc in field_docs(section).items():
            assert f"--{prefix}.{name}" in text and " ".join(doc.split()[:4]) in text, name
    assert "--train.budget_flops FLOAT" in text  # an optional float still reads as a float
    with pytest.raises(SystemExit):
        main(["finetune", "sst2", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(field_docs(FinetuneConfig)["pooling"].split()[:5]) in text
    for command, cls, names in (("tokenizer", TokenizerConfig, ["vocab_size", "max_chars"]),
                                ("examples", ExamplesConfig, ["seq_len", "holdout_fraction"]),
                                ("corpus", CorpusConfig, ["text_field", "row_group_mb"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in names:  # flag, docstring and the dataclass default
            flag = "--" + name.replace("_", "-")
            assert flag in text and " ".join(field_docs(cls)[name].split()[:4]) in text, (command, name)
            default = getattr(cls(), name)  # an unset one is not printed: the docstring says what it means
            assert (f"(default: {default})" in text) is (default is not None), (command, name)
