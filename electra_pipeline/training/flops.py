"""Analytic training FLOPs of the joint ELECTRA step, and model FLOPs utilisation (MFU).

Counted: every matrix multiply, 2 FLOPs per multiply-add (the convention of PaLM's MFU and the
ELECTRA paper's compute figures). Not counted: embedding lookups, LayerNorm, GELU, softmax,
dropout, losses, the optimiser - a few percent on top. A backward pass costs twice its forward
(gradients with respect to inputs and to weights), so a training step is 3 x forward.

Per sequence of T tokens, an encoder layer of width H and FFN width F does
    QKV 6TH^2 + scores 2T^2H + context 2T^2H + output 2TH^2 + FFN 4THF
and the generator's vocabulary projection is counted at the P predicted positions only, as the
generator computes it (`model.Generator`); pass `generator_positions=T` for a model that
projects every token (a naive Hugging Face composition).
"""

from __future__ import annotations

from dataclasses import dataclass

from electra_pipeline.modeling.config import ModelConfig, TrainConfig

TRAIN_FACTOR = 3  # forward + backward (2 x forward)


def layer_flops(seq_len: int, hidden: int, intermediate: int) -> int:
    """Forward FLOPs of one encoder layer over one sequence of `seq_len` tokens."""
    T, H, F = seq_len, hidden, intermediate
    qkv = 2 * T * H * 3 * H
    scores = 2 * T * T * H  # Q K^T, summed over heads (nh x T x T x H/nh)
    context = 2 * T * T * H  # softmax(..) V
    output = 2 * T * H * H
    ffn = 2 * T * H * F * 2
    return qkv + scores + context + output + ffn


def encoder_flops(cfg: ModelConfig, seq_len: int) -> int:
    """Forward FLOPs of `ElectraModel` over one sequence: embedding projection + layers."""
    project = 2 * seq_len * cfg.embedding_size * cfg.hidden_size if cfg.embedding_size != cfg.hidden_size else 0
    return project + cfg.num_layers * layer_flops(seq_len, cfg.hidden_size, cfg.intermediate_size)


def generator_head_flops(cfg: ModelConfig, positions: int) -> int:
    """dense(hidden -> embedding) and the tied vocabulary projection, at `positions` tokens."""
    return 2 * positions * cfg.hidden_size * cfg.embedding_size + 2 * positions * cfg.embedding_size * cfg.vocab_size


def discriminator_head_flops(cfg: ModelConfig, seq_len: int) -> int:
    """dense(hidden -> hidden) + dense(hidden -> 1) at every token."""
    return 2 * seq_len * cfg.hidden_size * cfg.hidden_size + 2 * seq_len * cfg.hidden_size


def selection_head_flops(cfg: ModelConfig, positions: int, candidates: int) -> int:
    """dense(hidden -> embedding) and one dot product per candidate, at `positions` tokens."""
    return 2 * positions * cfg.hidden_size * cfg.embedding_size + 2 * positions * candidates * cfg.embedding_size


@dataclass(frozen=True)
class StepFlops:
    """Training FLOPs (forward + backward) of one optimiser step over the whole global batch."""

    generator: int
    discriminator: int

    @property
    def total(self) -> int:
        return self.generator + self.discriminator


def train_step_flops(model: ModelConfig, train: TrainConfig, *, batch_size: int | None = None,
                     generator_positions: int | None = None) -> StepFlops:
    """FLOPs of one optimiser step: `train.batch_size` sequences (or `batch_size`) of `train.seq_len`.

    For objective `mlm` the "generator" is the discriminator-sized MLM model and there is no
    discriminator; for the others "discriminator" is the main model with its objective's heads
    (objectives.py). `generator_positions` defaults to the prediction budget `max_predictions`."""
    T = train.seq_len
    B = batch_size if batch_size is not None else train.batch_size
    P = generator_positions if generator_positions is not None else train.max_predictions
    objective = train.objective
    if objective == "mlm":
        gen = encoder_flops(model, T) + generator_head_flops(model, P)
        return StepFlops(generator=TRAIN_FACTOR * B * gen, discriminator=0)
    g = model.generator()
    gen = encoder_flops(g, T) + generator_head_flops(g, P)
    gen_forward_only = 0
    disc = encoder_flops(model, T)
    if objective in ("electra", "electra_15", "all_tokens_mlm", "teams"):  # the RTD head (all_tokens_mlm: copy gate)
        disc += discriminator_head_flops(model, T)
    if objective == "replace_mlm":
        disc += generator_head_flops(model, P)
    elif objective == "all_tokens_mlm":
        disc += generator_head_flops(model, T)
    elif objective == "mc_bert":  # candidates come from the generator at every token, without gradient
        disc += selection_head_flops(model, T, train.candidates)
        gen_forward_only = generator_head_flops(g, T)
    elif objective == "teams":
        disc += selection_head_flops(model, P, train.candidates)
    return StepFlops(generator=TRAIN_FACTOR * B * gen + B * gen_forward_only, discriminator=TRAIN_FACTOR * B * disc)


def phase_step_flops(model: ModelConfig, train: TrainConfig) -> tuple[float, ...]:
    """FLOPs of one optimiser step in each phase of `train.schedule`: (joint step,) or, for
    two_stage, (generator trained alone: its forward and backward; the frozen generator's forward,
    which samples the replacements, plus the discriminator's forward and backward)."""
    step = train_step_flops(model, train)
    if train.schedule != "two_stage":
        return (float(step.total),)
    return float(step.generator), float(step.generator // TRAIN_FACTOR + step.discriminator)


# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets (fp16 where
# the GPU has no bf16). More specific names first: "H100 PCIe" before "H100", "A100" before "A10".
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H800", 989.0),
    ("H20", 148.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),  # fp16
    ("T4", 65.0),  # fp16
)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like `torch.cuda.get_device_name()`, or None."""
    name = device_name.upper()
    for key, peak in PEAK_TFLOPS:
        if key.upper() in name:
            return peak
    return None


def mfu(flops: float, seconds: float, peak_tflops_per_device: float, devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all devices together."""
    if seconds <= 0 or peak_tflops_per_device <= 0:
        return 0.0
    return flops / seconds / (peak_tflops_per_device * 1e12 * devices)
