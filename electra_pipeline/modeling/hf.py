"""Hugging Face ELECTRA format, both ways: config.json + model.safetensors with HF names.

The ecosystem's interchange format: users publish our discriminators and start from Google's
checkpoints. Our only naming difference is the fused QKV projection, split/joined here.
Only safetensors are read: nothing untrusted is unpickled.

A model with the paper's architecture (post-LN, absolute positions) is saved as transformers'
ELECTRA (`model_type` electra). One that transformers' ELECTRA cannot compute (pre-LayerNorm,
relative attention) is saved as the Hub saves custom architectures: `model_type`
electra_pipeline, `auto_map`, and the configuration and modeling code of `remote_code/` beside
config.json, so `AutoModel*.from_pretrained(dir, trust_remote_code=True)` computes exactly our model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from electra_pipeline import atomic
from electra_pipeline.atomic import staged_dir
from electra_pipeline.errors import DataError
from electra_pipeline.modeling import modelcard
from electra_pipeline.modeling.config import ModelConfig
from electra_pipeline.modeling.model import DeltaEmbedding, Discriminator, Generator

# our ElectraModel key suffix -> HF suffix (under `electra.`), per layer where `{i}` appears
_LAYER_MAP = {
    "attention.dense": "attention.output.dense",
    "attention.LayerNorm": "attention.output.LayerNorm",
    "ffn.intermediate": "intermediate.dense",
    "ffn.output": "output.dense",
    "ffn.LayerNorm": "output.LayerNorm",
}
_HEAD_MAP = {
    "discriminator": {"head.dense": "discriminator_predictions.dense",
                      "head.dense_prediction": "discriminator_predictions.dense_prediction"},
    "generator": {"head.dense": "generator_predictions.dense",
                  "head.LayerNorm": "generator_predictions.LayerNorm"},
}
ARCHITECTURES = {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM"}
# the custom architecture: model_type, classes per kind, and the code the directory carries (remote_code/)
CUSTOM_MODEL_TYPE = "electra_pipeline"
CUSTOM_ARCHITECTURES = {"discriminator": "ElectraPipelineForPreTraining", "generator": "ElectraPipelineForMaskedLM"}
REMOTE_CODE = Path(__file__).parent / "remote_code"
REMOTE_CODE_FILES = ("configuration_electra_pipeline.py", "modeling_electra_pipeline.py")
AUTO_MAP = {
    "AutoConfig": "configuration_electra_pipeline.ElectraPipelineConfig",
    "AutoModel": "modeling_electra_pipeline.ElectraPipelineModel",
    "AutoModelForPreTraining": "modeling_electra_pipeline.ElectraPipelineForPreTraining",
    "AutoModelForMaskedLM": "modeling_electra_pipeline.ElectraPipelineForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_electra_pipeline.ElectraPipelineForSequenceClassification",
}


def custom_architecture(cfg: ModelConfig) -> bool:
    """Whether transformers' ELECTRA (post-LN, absolute positions only) would compute another function."""
    return cfg.pre_layer_norm or cfg.relative_attention > 0


def to_hf_config(cfg: ModelConfig, kind: str) -> dict:
    custom = custom_architecture(cfg)
    return {
        "architectures": [(CUSTOM_ARCHITECTURES if custom else ARCHITECTURES)[kind]],
        "model_type": CUSTOM_MODEL_TYPE if custom else "electra",
        "vocab_size": cfg.vocab_size,
        "embedding_size": cfg.embedding_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "tie_word_embeddings": True,
        **({"pre_layer_norm": cfg.pre_layer_norm, "relative_attention": cfg.relative_attention} if custom else
           {"position_embedding_type": "absolute", "summary_type": "first"}),
    }


def from_hf_config(d: dict, source: str = "config.json") -> ModelConfig:
    if d.get("model_type") not in (None, "electra", CUSTOM_MODEL_TYPE):
        raise DataError(f"{source}: model_type is {d.get('model_type')!r}, not an ELECTRA checkpoint")
    if d.get("hidden_act", "gelu") != "gelu":
        raise DataError(f"{source}: hidden_act {d['hidden_act']!r} is not supported (only gelu)")
    try:
        return ModelConfig(
            vocab_size=d["vocab_size"], embedding_size=d.get("embedding_size", d["hidden_size"]),
            hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
            intermediate_size=d["intermediate_size"], dropout=d.get("hidden_dropout_prob", 0.1),
            attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=d.get("max_position_embeddings", 512), type_vocab_size=d.get("type_vocab_size", 2),
            initializer_range=d.get("initializer_range", 0.02), layer_norm_eps=d.get("layer_norm_eps", 1e-12),
            pad_token_id=d.get("pad_token_id", 0), generator_fraction=1.0,
            pre_layer_norm=bool(d.get("pre_layer_norm", False)), relative_attention=int(d.get("relative_attention", 0)))
    except KeyError as e:
        raise DataError(f"{source}: missing field {e.args[0]!r}") from None


def encoder_to_hf(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Our ElectraModel state dict (keys under `prefix`) -> HF `electra.*` names."""
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        m = re.match(r"layers\.(\d+)\.(.+)\.(weight|bias)$", k)
        rel = re.match(r"layers\.(\d+)\.attention\.relative_bias$", k)
        if rel:
            out[f"electra.encoder.layer.{rel.group(1)}.attention.self.relative_bias"] = t
        elif m:
            i, name, kind = m.groups()
            base = f"electra.encoder.layer.{i}."
            if name == "attention.qkv":
                for part, chunk in zip(("query", "key", "value"), t.chunk(3, dim=0)):
                    out[f"{base}attention.self.{part}.{kind}"] = chunk.contiguous()
            else:
                out[f"{base}{_LAYER_MAP[name]}.{kind}"] = t
        else:
            out[f"electra.{k}"] = t
    return out


def encoder_from_hf(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """HF names (with or without the `electra.` prefix) -> our ElectraModel state dict."""
    sd = {(k[len("electra."):] if k.startswith("electra.") else k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("embeddings.") and not k.endswith("position_ids"):
            out[k] = v
        elif k.startswith(("embeddings_project.", "final_LayerNorm.")):
            out[k] = v
    inverse = {v: k for k, v in _LAYER_MAP.items()}
    for i in range(num_layers):
        base = f"encoder.layer.{i}."
        if f"{base}attention.self.relative_bias" in sd:
            out[f"layers.{i}.attention.relative_bias"] = sd[f"{base}attention.self.relative_bias"]
        for kind in ("weight", "bias"):
            parts = [sd.get(f"{base}attention.self.{p}.{kind}") for p in ("query", "key", "value")]
            if all(p is not None for p in parts):
                out[f"layers.{i}.attention.qkv.{kind}"] = torch.cat(parts, 0)
            for hf_name, ours in inverse.items():
                if f"{base}{hf_name}.{kind}" in sd:
                    out[f"layers.{i}.{ours}.{kind}"] = sd[f"{base}{hf_name}.{kind}"]
    return out


def to_hf_state_dict(module: Discriminator | Generator, kind: str) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    table = module.electra.embeddings.word_embeddings
    if isinstance(table, DeltaEmbedding):  # gdes: the table this model reads, base + delta
        del sd["electra.embeddings.word_embeddings.delta"]
        sd["electra.embeddings.word_embeddings.weight"] = table.weight.detach().cpu()
    out = encoder_to_hf(sd, prefix="electra.")
    for ours, hf in _HEAD_MAP[kind].items():
        for kind_ in ("weight", "bias"):
            out[f"{hf}.{kind_}"] = sd[f"{ours}.{kind_}"]
    if kind == "generator":
        out["generator_lm_head.bias"] = sd["head.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def save_hf(module: Discriminator | Generator, out_dir: str | Path, kind: str,
            tokenizer: str | Path | None = None) -> Path:
    """Write config.json + model.safetensors atomically (temp dir, then rename), plus the
    tokenizer files when given, so `from_pretrained(out_dir)` works for model and tokenizer; a
    custom architecture also gets its code and `auto_map` (module docstring)."""
    cfg = module.electra.config
    with staged_dir(Path(out_dir), "config.json") as tmp:
        hf_cfg = to_hf_config(cfg, kind)
        if custom_architecture(cfg):
            hf_cfg["auto_map"] = AUTO_MAP
            for name in REMOTE_CODE_FILES:
                atomic.copy_file(REMOTE_CODE / name, tmp / name)
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
        # Tied weight is implied by tie_word_embeddings; HF drops it on save too.
        save_file(to_hf_state_dict(module, kind), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer:
            copy_tokenizer(Path(tokenizer), tmp)
    return Path(out_dir)


# what each directory is for, in the Hub's terms: the discriminator is an encoder to fine-tune
# (transformers' feature-extraction pipeline loads it); the generator predicts masked tokens
PIPELINE_TAGS = {"discriminator": "feature-extraction", "generator": "fill-mask"}
ROLE_TAGS = {"discriminator": "replaced-token-detection", "generator": "fill-mask"}


def model_card(kind: str, cfg: dict, summary: dict) -> str:
    """README.md for a Hugging Face directory written by pre-training (Hugging Face model-card
    format): what it is, the data it saw (with the corpus manifest's checksums), how it was
    trained and at what compute, what it started from, and what it is (not) for."""
    m, t, c = cfg["model"], cfg["train"], summary["compute"]
    main_model = {  # what the discriminator-sized model learned, and what its exported head is
        "replace_mlm": "the main model of Replace MLM (masked-LM on generator replacements; its RTD head is untrained)",
        "all_tokens_mlm": "the main model of All-Tokens MLM (masked-LM over every token; the RTD head is its copy gate)",
        "mc_bert": "the MC-BERT main model (picks the original among generator candidates; its RTD head is untrained)",
        "teams": "the TEAMS discriminator (replaced-token detection and multi-word selection)",
    }.get(t["objective"], "the ELECTRA discriminator (replaced-token detection)")
    role = {"discriminator": f"{main_model}; the encoder to fine-tune",
            "generator": "the masked-LM generator" if t["objective"] != "mlm" else
                         "the BERT-style masked-LM model (the MLM baseline); the encoder to fine-tune"}[kind]
    init = summary.get("init")
    custom = m.get("pre_layer_norm") or m.get("relative_attention")  # transformers' ELECTRA has neither
    auto_class = {"discriminator": "AutoModelForPreTraining", "generator": "AutoModelForMaskedLM"}[kind]
    corpus = modelcard.pretraining_corpus(cfg["data"]) if cfg.get("data") else None
    metadata = {
        "license": cfg.get("license", modelcard.LICENSE),
        "language": cfg.get("language", modelcard.LANGUAGE),
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAGS[kind],
        "tags": modelcard.unique(["electra", t["objective"], cfg["preset"], "pretraining", ROLE_TAGS[kind],
                                  "electra-pipeline", *(["custom_code"] if custom else [])]),
        **({"datasets": corpus.datasets} if corpus else {}),
    }
    hours = c.get("device_hours")
    lines = [
        f"# ELECTRA {kind} ({cfg['preset']} preset)", "",
        f"This directory holds {role}, in the Hugging Face ELECTRA format"
        + (" with its own modeling code (pre-LayerNorm or relative attention, which transformers' ELECTRA lacks)."
           if custom else "."), "",
        f"- sizes: {m['num_layers']} layers x {m['hidden_size']} hidden, {m['num_heads']} heads, "
        f"{m['vocab_size']:,}-token vocabulary"
        + (", pre-LayerNorm" if m.get("pre_layer_norm") else "")
        + (f", learned relative-distance attention bias (+-{m['relative_attention']})" if m.get("relative_attention") else ""),
        f"- objective: {t['objective']}; {summary['steps']:,} steps of {t['batch_size']} x {t['seq_len']} tokens "
        f"({c['tokens'] / 1e6:.1f}M tokens)",
        f"- recipe: mask_prob {t.get('mask_prob')}"
        + (f", disc_weight {t.get('disc_weight')}, generator_fraction {m.get('generator_fraction')}, "
           f"embedding sharing {m.get('embedding_sharing', 'tied')}" if t["objective"] != "mlm" else "")
        + (f", {t.get('candidates')} candidates, select_weight {t.get('select_weight')}"
           if t["objective"] in ("mc_bert", "teams") else "")
        + f"; AdamW lr {t.get('lr')}, weight decay {t.get('weight_decay')}, "
        + (f"warm-up {t['warmup_fraction']:.0%} of the run" if t.get("warmup_fraction") is not None
           else f"{t.get('warmup_steps')} warm-up steps")
        + f", seed {t.get('seed')} (the whole resolved config: `config.json` of the run directory)",
        f"- compute: {c['train_flops']:.3g} training FLOPs"
        + (f", {hours:.3g} device-hours" if hours is not None else "")
        + f" ({c.get('devices', 1)} x {c['device']}, {c['precision']}); {c['train_minutes']:.1f} min of training steps",
        f"- data: `{cfg['data']}` (packed examples)",
    ]
    if corpus is not None:
        lines.append(f"- corpus: `{corpus.path}`, {corpus.documents:,} documents, {corpus.bytes / 1e6:.1f} MB of "
                     f"cleaned text; manifest.json sha256 `{corpus.manifest_sha256}`; sources:")
        shown = 10
        lines += [f"  - `{s.get('path')}` ({s.get('format')}"
                  + (f", sha256 `{s['sha256']}`" if s.get("sha256") else ", a Hub dataset: no checksum") + ")"
                  for s in corpus.sources[:shown]]
        if len(corpus.sources) > shown:
            lines.append(f"  - ... and {len(corpus.sources) - shown} more (all in the manifest)")
    lines += [
        "- started from: " + (f"`{init['from']}` (weights sha256 {init['sha256'][:16]}...)" if init else "random initialisation"),
        "",
        "Whether it learned context: `electra intrinsic <run directory>` (held-out replaced-token detection next to "
        "random initialisation and a context-free detector)."
        + (f" In transformers: `{auto_class}.from_pretrained(dir, trust_remote_code=True)` (the code is "
           "`modeling_electra_pipeline.py` here); `ElectraModel` and its heads would drop the relative bias and "
           "the final LayerNorm and compute another function." if custom else ""),
        "",
        "## Intended use and limits",
        "",
        "- use: " + ("a starting point for fine-tuning (`electra finetune`, `electra evaluate`) in research on "
                     "pre-training recipes" if kind == "discriminator" or t["objective"] != "electra" else
                     "inspection and continued pre-training; the generator is deliberately small "
                     f"(generator_fraction {m.get('generator_fraction')}) and is not meant for downstream use"),
        f"- limits: trained only on the corpus above ({metadata['language']}), whose biases and gaps it carries; "
        "not evaluated for fairness or safety. Small presets (`tiny`, `cpu`) exercise the pipeline and learn "
        "little: compare fine-tuning results with the random-init and majority baselines before relying on it.",
        "",
    ]
    return modelcard.render(metadata, "\n".join(lines))


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """The tokenizer files beside a tokenizer.json (or in its directory) into `dst`."""
    src_dir = src if src.is_dir() else src.parent
    atomic.copy_file(src / "tokenizer.json" if src.is_dir() else src, dst / "tokenizer.json")
    for name in TOKENIZER_FILES[1:]:
        if (src_dir / name).is_file():
            atomic.copy_file(src_dir / name, dst / name)


def read_hf(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read an HF ELECTRA directory: (config, raw HF state dict). Errors name the file."""
    p = Path(path)
    cfg_file, weights = p / "config.json", p / "model.safetensors"
    if not p.is_dir():
        raise DataError(f"{p}: checkpoint directory not found")
    if not cfg_file.is_file():
        raise DataError(f"{cfg_file}: missing; an HF ELECTRA checkpoint has config.json + model.safetensors")
    if not weights.is_file():
        hint = " (only safetensors are read; convert pytorch_model.bin first)" if (p / "pytorch_model.bin").exists() else ""
        raise DataError(f"{weights}: missing{hint}")
    try:
        cfg_dict = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(cfg_dict, dict):
        raise DataError(f"{cfg_file}: expected a JSON object, got {type(cfg_dict).__name__}")
    cfg = from_hf_config(cfg_dict, str(cfg_file))
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{weights}: unreadable or truncated safetensors file ({e})") from None
    return cfg, sd


def _load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], source: Path) -> None:
    expected = set(module.state_dict())
    missing = sorted(expected - set(sd))
    if missing:
        raise DataError(f"{source}: checkpoint lacks {len(missing)} tensors (first: {missing[0]}); "
                        "is it a different architecture?")
    for k, v in module.state_dict().items():
        if sd[k].shape != v.shape:
            raise DataError(f"{source}: tensor {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    module.load_state_dict({k: sd[k] for k in expected})


def load_encoder(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The ElectraModel part of any HF ELECTRA checkpoint (pre-training, MLM or base model)."""
    cfg, sd = read_hf(path)
    return cfg, encoder_from_hf(sd, cfg.num_layers)


def _load(path: str | Path, kind: str) -> Discriminator | Generator:
    """Our module of `kind` from an HF checkpoint: encoder + that kind's head (HF names)."""
    cfg, sd = read_hf(path)
    ours = {f"electra.{k}": v for k, v in encoder_from_hf(sd, cfg.num_layers).items()}
    heads = dict(_HEAD_MAP[kind])
    if kind == "generator":
        heads["head"] = "generator_lm_head"  # only its bias: the weight is the tied embedding
    for o, hf_name in heads.items():
        for suffix in ("weight", "bias"):
            if f"{hf_name}.{suffix}" in sd and not (o == "head" and suffix == "weight"):
                ours[f"{o}.{suffix}"] = sd[f"{hf_name}.{suffix}"]
    model = Discriminator(cfg) if kind == "discriminator" else Generator(cfg)
    _load_into(model, ours, Path(path))
    return model


def load_discriminator(path: str | Path) -> Discriminator:
    return _load(path, "discriminator")


def load_generator(path: str | Path) -> Generator:
    return _load(path, "generator")
