"""Where and in what precision a model runs: the device rule and bf16 autocast, shared by
pre-training, fine-tuning and the benchmarks, and the device peak used for MFU."""

from __future__ import annotations

import torch

from electra_pipeline.errors import ConfigError
from electra_pipeline.training import flops


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """`auto` -> CUDA when present, else the CPU; a CUDA request without CUDA is an error naming `field`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        flag = "--device" if field == "finetune.device" else f"--{field}"
        raise ConfigError(f"{field}: {name!r} requested but CUDA is not available; use {flag} cpu")
    return torch.device(name)


def has_bf16_matrix_units(device: torch.device) -> bool:
    """CUDA GPUs, and CPUs with bf16 dot-product instructions: AMX tiles (Intel Sapphire Rapids
    and later) or AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake). Without them a CPU
    converts bf16 to fp32 for every multiply, slower than plain fp32. On the project's 2-core
    Zen 4 CI machine bf16 GEMMs run at 2.2x fp32 (210-220 vs 78-100 GFLOP/s a core)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    queries = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch has no public query
    return any(bool(getattr(torch.cpu, q, lambda: False)()) for q in queries)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for `bf16`, none for `fp32`; `auto` picks bf16 where the hardware multiplies
    bf16 matrices natively (CUDA; AMX or AVX512-BF16 CPUs). On the project's 2-core CPU a small
    pre-training step runs 1.65-1.9x faster in bf16 (docs/performance.md). Master weights, losses
    and sampling stay fp32 either way."""
    if precision == "fp32" or (precision == "auto" and not has_bf16_matrix_units(device)):
        return None
    return torch.bfloat16


def precision_name(amp: torch.dtype | None) -> str:
    return "bf16 autocast" if amp is torch.bfloat16 else "fp32"


def peak_tflops(device: torch.device, configured: float = 0.0) -> float | None:
    """The device's dense bf16 peak for MFU: `train.peak_tflops`, else the GPU table, else None."""
    if configured > 0:
        return configured
    if device.type == "cuda":
        return flops.peak_tflops(torch.cuda.get_device_name(device))
    return None
