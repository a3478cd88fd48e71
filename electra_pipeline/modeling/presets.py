"""The named recipes (presets) and the one resolver every entry point uses: preset, then a
config file, then overrides, then the step-count policy (`fit_steps`), so the CLI and the flows
train one request the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling.config import ModelConfig, PretrainConfig, TrainConfig, merge
from electra_pipeline.modeling.settings import load_file


def tiny() -> PretrainConfig:
    """A 2-layer model for tests and the CPU demo: trains in minutes on two cores."""
    return PretrainConfig(
        preset="tiny",
        model=ModelConfig(vocab_size=8192, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
                          embedding_size=64, max_position_embeddings=128, generator_fraction=0.5),
        train=TrainConfig(seq_len=128, batch_size=16, max_steps=300, lr=2e-4, warmup_steps=30, log_every=10,
                          save_every=100),
    )


def cpu() -> PretrainConfig:
    """The recipe that learns on a CPU budget (docs/recipes.md): a 2-layer, 256-wide discriminator
    with 4 heads whose generator is its own bottom layer under an MLM head (`share_encoder` with
    `generator_layers` 1, as in TEAMS): the generator's MLM gradients train the layer the
    discriminator reads first, and the discriminator leaves the replaced-token prior within
    hundreds of steps instead of thousands or never. Pre-LayerNorm; no dropout; a learned
    relative-distance attention bias that starts local (ALiBi's form), which takes the models off
    the unigram plateau in hundreds of steps instead of tens of thousands; disc_weight 10 (50
    left the discriminator behind its generator); an 8,192-token vocabulary; peak lr 1e-3 with
    warm-up over 6% of the budget and linear decay to zero at it. The default budget is the
    README main job's; set `train.budget_minutes` or `train.budget_flops` for longer runs."""
    return PretrainConfig(
        preset="cpu",
        model=ModelConfig(vocab_size=8192, hidden_size=256, num_layers=2, num_heads=4, intermediate_size=1024,
                          embedding_size=128, max_position_embeddings=128, generator_fraction=1.0,
                          generator_layers=1, share_encoder=True, dropout=0.0, attention_dropout=0.0,
                          pre_layer_norm=True, relative_attention=64),
        train=TrainConfig(seq_len=128, batch_size=16, max_steps=1_000_000, budget_flops=4e13, lr=1e-3,
                          warmup_fraction=0.06, disc_weight=10.0, log_every=20, save_every=1000),
    )


def small() -> PretrainConfig:
    """ELECTRA-Small: 13.5M-parameter discriminator, 1/4-width generator."""
    return PretrainConfig(preset="small", model=ModelConfig(),
                          train=TrainConfig(seq_len=128, batch_size=128, max_steps=1_000_000, lr=5e-4))


def base() -> PretrainConfig:
    """ELECTRA-Base: 110M-parameter discriminator, 1/3-width generator."""
    return PretrainConfig(
        preset="base",
        model=ModelConfig(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                          embedding_size=768, generator_fraction=1 / 3),
        train=TrainConfig(seq_len=512, batch_size=256, max_steps=766_000, lr=2e-4),
    )


def large() -> PretrainConfig:
    """ELECTRA-Large: 335M-parameter discriminator, 1/4-width generator, mask_prob 0.25."""
    return PretrainConfig(
        preset="large",
        model=ModelConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                          embedding_size=1024, generator_fraction=0.25),
        train=TrainConfig(seq_len=512, batch_size=2048, max_steps=400_000, lr=2e-4, mask_prob=0.25),
    )


PRESETS: dict[str, Callable[[], PretrainConfig]] = {"tiny": tiny, "cpu": cpu, "small": small, "base": base,
                                                     "large": large}
# The preset of `electra pretrain`, the pre-training flow and the pipeline when none is named: the
# one that learns something on the machine a new user has.
DEFAULT = "cpu"


def preset(name: str) -> PretrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def _given(value: Any) -> bool:
    return value not in (None, "none", "null")


def fit_steps(cfg: PretrainConfig, explicit: dict[str, Any]) -> PretrainConfig:
    """Recipe policy for a step count the user gave (`explicit`: the train fields they set): it
    replaces the preset's budget, and the checkpoint interval and the warm-up (at most a tenth
    of the steps) shrink to fit it unless they were given too. Every entry point (the CLI, the
    flows) resolves through here, so one request trains one way."""
    if not _given(explicit.get("max_steps")) or any(_given(explicit.get(b)) for b in ("budget_flops", "budget_minutes")):
        return cfg
    t = cfg.train
    train: dict[str, Any] = {"budget_flops": None, "budget_minutes": None}
    if "save_every" not in explicit:
        train["save_every"] = min(t.save_every, t.max_steps)
    if "warmup_steps" not in explicit:
        train["warmup_steps"] = min(t.warmup_steps, max(1, t.max_steps // 10))
    return merge(cfg, {"train": train})


def resolve(preset_name: str | None, config_file: str | None = None,
            overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """Preset (flag, else the file's `preset`, else `DEFAULT`), then file, then flags."""
    file_data = load_file(config_file) if config_file else {}
    name = preset_name or str(file_data.get("preset") or DEFAULT)
    file_data.pop("preset", None)
    cfg = preset(name)
    if file_data:
        cfg = merge(cfg, file_data)
    if overrides:
        cfg = merge(cfg, overrides)
    cfg = fit_steps(cfg, {**(file_data.get("train") or {}), **((overrides or {}).get("train") or {})})
    if cfg.init_from:  # model sizes come from the checkpoint
        from electra_pipeline.modeling import warmstart

        explicit = {**(file_data.get("model") or {}), **((overrides or {}).get("model") or {})}
        cfg = warmstart.adopt_architecture(cfg, explicit)
    return cfg
