"""Joint ELECTRA pre-training: one loop, readable top to bottom.

setup (device, data, model, optimiser, schedule, resume) -> for each step (`train_step`):
accumulate micro-batches (mask, joint forward, backward), clip, step; read metrics every
`log_every` steps (the only host sync; averaged over ranks there), checkpoint atomically ->
export generator and discriminator in the Hugging Face format and write the compute spent.
Multi-process runs (torchrun) are data-parallel; see `distributed.py` and docs/performance.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from electra_pipeline import atomic, distributed, flops, hf, intrinsic, warmstart
from electra_pipeline import checkpoint as ckpt
from electra_pipeline import config as config_mod
from electra_pipeline.config import PretrainConfig, TrainConfig
from electra_pipeline.data import Batch, ExampleShards, Prefetcher, micro_batches
from electra_pipeline.distributed import rank0_value
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.objectives import Masked
from electra_pipeline.pretrainer import ElectraPretrainer
from electra_pipeline.tokenizer import file_sha256
from electra_pipeline.tracking import NullTracker, Tracker

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    output_dir: Path
    discriminator_dir: Path | None  # HF ElectraForPreTraining dir (None for objective=mlm)
    generator_dir: Path  # HF ElectraForMaskedLM dir (the MLM model for objective=mlm)
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)  # last logged window
    history: list[dict[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. CollapseWatch's


def rtd_over_prior(row: dict[str, float]) -> float | None:
    """RTD loss over H(p), the loss of always predicting the replaced fraction p: ~1 means the
    discriminator has learned nothing beyond the prior. None without discriminator metrics."""
    p, loss = row.get("disc/replaced_fraction"), row.get("loss/disc")
    if p is None or loss is None or not 0.0 < p < 1.0:
        return None
    return loss / -(p * math.log(p) + (1 - p) * math.log(1 - p))


@dataclass
class CollapseWatch:
    """ELECTRA's quiet failure: the discriminator settles on the prior (every token "original"),
    the loss stays flat at H(p) and the run looks healthy. Seen here with the tiny preset at lr
    1e-3 (and with HF's ElectraForPreTraining composition alike): collapsed within 50 steps, still
    there at step 3,800. At 2e-4 it learned (0.77 x H(p) at step 500), then drifted back to 0.97
    as the generator improved. `update` returns a warning once `patience` logged windows in a row after
    `after_step` sit at >= `threshold` x H(p)."""

    after_step: int
    patience: int = 10
    threshold: float = 0.97
    learned_auc: float = 0.6  # a held-out ROC-AUC at or above this says the run learns, whatever the loss
    stuck: int = 0
    warned: bool = False
    heldout_auc: float | None = None  # the latest held-out score (intrinsic.Probe), when the run has one

    def update(self, step: int, row: dict[str, float]) -> str | None:
        ratio = rtd_over_prior(row)
        if ratio is None:
            return None
        self.heldout_auc = row.get("heldout/unigram_auc", self.heldout_auc)
        learns = self.heldout_auc is not None and self.heldout_auc >= self.learned_auc
        self.stuck = self.stuck + 1 if step > self.after_step and ratio >= self.threshold and not learns else 0
        if self.stuck < self.patience or self.warned:
            return None
        self.warned = True
        return (f"step {step}: the discriminator has learned almost nothing beyond the replaced-token prior for "
                f"{self.stuck} logged windows (RTD loss {row['loss/disc']:.3f} = {ratio:.0%} of the prior's "
                f"{row['loss/disc'] / ratio:.3f}, recall {row.get('disc/recall', float('nan')):.3f}"
                + (f"; held-out ROC-AUC {self.heldout_auc:.3f}" if self.heldout_auc is not None else "") + "). Causes: a "
                "learning rate too high for the batch (lower train.lr or raise train.warmup_steps and restart), or "
                "a generator as good as the discriminator can follow (a smaller model.generator_fraction). Check with "
                "`electra intrinsic` before acting: against a good generator the training loss stays near the prior "
                "even while held-out detection improves.")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available; use --train.device cpu")
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


def _precision_name(amp: torch.dtype | None) -> str:
    return "bf16 autocast" if amp is torch.bfloat16 else "fp32"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on LayerNorm weights, biases, the MLM output bias or the
    relative-distance attention biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "relative_bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over all parameters on CUDA, and on CPU too, where it
    is 3x faster than the default per-tensor loop (64 -> 19 ms per ELECTRA-Small step)."""
    return torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                             eps=t.adam_eps, fused=device.type in ("cuda", "cpu"))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Warmup and linear decay applied together: min(1, s/warmup) x (1 - s/total), s = step + 1."""
    s = step + 1
    return min(1.0, s / max(1, warmup)) * max(0.0, 1.0 - step / total)


@dataclass
class Schedule:
    """How long a run trains and how its learning rate moves: over `max_steps`, over the steps a
    FLOPs budget buys, or over a wall-clock budget. With a budget, warm-up and the decay to zero
    are laid out over the budget ("How to Train BERT with an Academic Budget", Izsak et al. 2021;
    "Cramming", Geiping & Goldstein 2022), so the last step, checkpoint and export land at it."""

    total_steps: int  # steps the run may take
    warmup_steps: int
    budget_seconds: float | None = None  # wall-clock budget of training steps (setup not counted)
    warmup_fraction: float | None = None
    elapsed: float = 0.0  # training seconds spent so far, all sessions (updated by the loop)

    @classmethod
    def of(cls, t: TrainConfig, step_flops: float) -> Schedule:
        total = t.max_steps
        if t.budget_flops is not None:
            total = int(t.budget_flops // step_flops)
            if total < 1:
                raise ConfigError(f"train.budget_flops: {t.budget_flops:.3g} is less than one step "
                                  f"({step_flops:.3g} FLOPs at this batch and model)")
            if t.max_steps < total:
                raise ConfigError(f"train.max_steps: {t.max_steps} stops before train.budget_flops {t.budget_flops:.3g} "
                                  f"is spent ({total} steps); raise it or drop one of them")
        warmup = t.warmup_steps if t.warmup_fraction is None else int(round(t.warmup_fraction * total))
        seconds = t.budget_minutes * 60 if t.budget_minutes is not None else None
        return cls(total_steps=total, warmup_steps=warmup, budget_seconds=seconds, warmup_fraction=t.warmup_fraction)

    def progress(self, step: int) -> float:
        """Share of the run done: steps, or (with a wall-clock budget) time, whichever is further."""
        p = step / self.total_steps
        if self.budget_seconds is not None:
            p = max(p, self.elapsed / self.budget_seconds)
        return min(1.0, p)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier for optimiser step `step` (0-based)."""
        if self.budget_seconds is None:
            return lr_factor(step, self.warmup_steps, self.total_steps)
        p = self.progress(step)
        if self.warmup_fraction is not None:
            warm = min(1.0, p / self.warmup_fraction) if self.warmup_fraction > 0 else 1.0
        else:
            warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        return warm * max(0.0, 1.0 - p)

    def done(self, step: int) -> bool:
        return step >= self.total_steps or (self.budget_seconds is not None and self.elapsed >= self.budget_seconds)


def train_step(runner: nn.Module, model: ElectraPretrainer, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, micro: list[Batch],
               mask: Callable[[Batch], Masked], *, device: torch.device, amp: torch.dtype | None,
               grad_clip: float, rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One optimiser step over `micro` (this rank's micro-batches, on the host).

    `runner` is `model` as wrapped for the run (DDP, FSDP, torch.compile); gradients are
    all-reduced on the last micro-batch only. Returns the step's metrics as device tensors,
    averaged over micro-batches: nothing here waits for the device."""
    sums: dict[str, torch.Tensor] = {}
    for i, host_mb in enumerate(micro):
        # Known on the host before the copy: an unpadded batch needs no attention mask (flash on CUDA).
        pad_free = bool(host_mb.attention_mask.all())
        mb = host_mb.to(device, non_blocking=True)
        masked = mask(mb)
        sync = contextlib.nullcontext() if i == len(micro) - 1 else distributed.no_sync(runner)
        cast = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with sync:
            with cast:
                result = runner(mb.input_ids, mb.token_type_ids, mb.attention_mask, masked.input_ids,
                                masked.positions, masked.original, masked.weights, rng, pad_free=pad_free)
            (result.loss / len(micro)).backward()  # outside autocast, as torch recommends
        for k, v in result.metrics.items():
            sums[k] = sums[k] + v.float() / len(micro) if k in sums else v.float() / len(micro)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    sums["grad_norm"] = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).float()  # FSDP: a DTensor
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return sums


def _rebind(scheduler: torch.optim.lr_scheduler.LambdaLR, optimizer: torch.optim.Optimizer,
            fn: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, at the same step, driving a replacement optimizer (FSDP's over shards)."""
    state = scheduler.state_dict()
    rebound = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    rebound.load_state_dict(state)
    for group, lr in zip(optimizer.param_groups, rebound.get_last_lr()):
        group["lr"] = lr  # the constructor reset it to the schedule's first value
    return rebound


def peak_tflops(device: torch.device, configured: float = 0.0) -> float | None:
    """The device's dense bf16 peak for MFU: `train.peak_tflops`, else the GPU table, else None."""
    if configured > 0:
        return configured
    if device.type == "cuda":
        return flops.peak_tflops(torch.cuda.get_device_name(device))
    return None


def _trim_metrics(metrics_file: Path, upto_step: int) -> float:
    """Keep the rows of metrics.jsonl up to `upto_step` and return the device-hours logged by then.

    A resumed run replays the steps after its checkpoint, and a crash can cut the last line in
    half: both would otherwise leave duplicate or unreadable rows. A fresh start (step 0) empties
    the file. Rewritten atomically."""
    if not metrics_file.is_file():
        return 0.0
    kept: list[str] = []
    for line in metrics_file.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and 0 < row["step"] <= upto_step:
            kept.append(line)
    tmp = metrics_file.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(metrics_file)
    return float(json.loads(kept[-1]).get("throughput/device_hours", 0.0)) if kept else 0.0


def check_inputs(cfg: PretrainConfig) -> ExampleShards:
    """Open the examples and check them against the config and tokenizer, before any run starts."""
    if not cfg.data:
        raise ConfigError("data: no examples directory given; pass --data DIR (built by `electra examples`)")
    Schedule.of(cfg.train, flops.train_step_flops(cfg.model, cfg.train).total)  # budget errors before any output
    out = Path(cfg.output_dir)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"output_dir: {p}: exists and is not a directory")
    data = ExampleShards(cfg.data)
    if data.seq_len != cfg.train.seq_len:
        raise ConfigError(f"train.seq_len: {cfg.train.seq_len}, but the examples in {data.path} were built with "
                          f"seq_len {data.seq_len}; pass --train.seq_len {data.seq_len} or rebuild them")
    if data.vocab_size != cfg.model.vocab_size:
        raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size}, but the examples in {data.path} use a "
                          f"{data.vocab_size}-token vocabulary; pass --model.vocab_size {data.vocab_size}")
    data.check_ids(cfg.model.vocab_size)
    if cfg.tokenizer:
        from tokenizers import Tokenizer

        tok_path = Path(cfg.tokenizer)
        tok_file = tok_path / "tokenizer.json" if tok_path.is_dir() else tok_path
        if not tok_file.is_file():
            raise DataError(f"{tok_file}: tokenizer not found")
        try:
            size = Tokenizer.from_file(str(tok_file)).get_vocab_size()
        except Exception as e:  # the tokenizers library raises plain Exceptions on bad JSON
            raise DataError(f"{tok_file}: not a tokenizers JSON file ({e})") from None
        if size != cfg.model.vocab_size:
            raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size}, but the tokenizer {tok_file} has {size} "
                              f"tokens; pass --model.vocab_size {size} or use the matching tokenizer")
        if cfg.init_from:
            warmstart.check_tokenizer(cfg, Tokenizer.from_file(str(tok_file)).get_vocab(), tok_file)
            if data.meta.get("tokenizer_sha256") not in (None, file_sha256(tok_file)):
                raise ConfigError(f"data: the examples in {data.path} were built with another tokenizer than "
                                  f"{tok_file}; build them with it (`electra examples --tokenizer {tok_file}`)")
    elif cfg.init_from:
        raise ConfigError("tokenizer: --init-from needs the tokenizer the examples were built with, the "
                          f"checkpoint's own (`electra tokenizer --from {cfg.init_from} -o DIR`); pass --tokenizer")
    if cfg.train.init_optimizer and not (cfg.init_from and ckpt.list_checkpoints(Path(cfg.init_from))):
        raise ConfigError("train.init_optimizer: continues the optimizer of a run directory of ours with checkpoints; "
                          f"init_from is {cfg.init_from or 'empty'!r}")
    return data


# Fields a resumed run must share with its checkpoint: they change what the saved state means.
RESUME_FIXED = ("model", "train.objective", "train.seed", "train.lr", "train.batch_size", "train.seq_len",
                "train.mask_prob", "train.mask_token_prob", "train.random_token_prob", "train.gen_weight",
                "train.disc_weight", "train.temperature", "train.warmup_steps", "train.warmup_fraction",
                "train.weight_decay")


def config_changes(saved: dict[str, Any], cfg: PretrainConfig) -> dict[str, list[Any]]:
    """{dotted field: [checkpoint's value, this run's]} over `RESUME_FIXED`."""
    now = config_mod.to_dict(cfg)
    changes: dict[str, list[Any]] = {}
    for name in RESUME_FIXED:
        section, _, field_name = name.partition(".")
        a, b = saved.get(section, {}), now.get(section, {})
        keys = [field_name] if field_name else sorted(set(a) | set(b))
        for k in keys:
            if a.get(k) != b.get(k):
                changes[f"{section}.{k}"] = [a.get(k), b.get(k)]
    return changes


PLOT_TITLES = {"loss/gen": "generator MLM loss", "loss/disc": "discriminator RTD loss",
               "disc/loss_over_prior": "RTD loss / prior (1 = learned nothing)",
               "gen/accuracy": "generator accuracy (hidden positions)", "disc/accuracy": "discriminator accuracy",
               "heldout/unigram_auc": "held-out RTD ROC-AUC, unigram replacements (0.5 = chance)",
               "heldout/masked_accuracy": "held-out masked-token accuracy", "lr": "learning rate"}


def _save_plot(history: list[dict[str, float]], out: Path) -> Path | None:
    """Training curves as a grid of panels, two a row, each metric on its own axis: readable in
    MLflow's artifact viewer and a README alike."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in PLOT_TITLES if any(k in h for h in history)]
    rows_n = (len(keys) + 1) // 2
    fig, axes = plt.subplots(rows_n, 2, figsize=(10, 3.2 * rows_n), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        rows = [h for h in history if k in h]  # a run resumed across versions may lack a metric early on
        ax.plot([h["step"] for h in rows], [h[k] for h in rows], linewidth=1.2)
        if k == "disc/loss_over_prior":
            ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="prior: learned nothing")
            ax.legend(loc="lower right", fontsize=9)
        if k == "heldout/unigram_auc":
            ax.axhline(0.5, color="tab:red", linestyle="--", linewidth=1, label="chance: no context learned")
            ax.legend(loc="upper left", fontsize=9)
        ax.set_title(PLOT_TITLES[k], fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pretrain(cfg: PretrainConfig, *, resume: str | Path | None = None, tracker: Tracker | None = None,
             progress: bool = True, allow_changes: bool = False) -> PretrainResult:
    """Run (or resume) one pre-training run; outputs land in `cfg.output_dir`.

    A resume whose config differs from the checkpoint's on a `RESUME_FIXED` field is refused,
    naming the fields, unless `allow_changes`: then the new values apply (a new peak lr
    included) and summary.json records the change."""
    session_start = time.perf_counter()
    tracker = tracker or NullTracker()
    t = cfg.train
    world = distributed.World.from_env()
    device = resolve_device(t.device) if world.size == 1 else world.device(t.device)
    data = check_inputs(cfg)
    if t.batch_size % (world.size * t.grad_accum):
        raise ConfigError(f"train.batch_size: {t.batch_size} is not divisible by world size {world.size} x "
                          f"train.grad_accum {t.grad_accum}")
    out = Path(cfg.output_dir)
    if resume is None and ckpt.list_checkpoints(out):
        raise ConfigError(f"output_dir: {out} already holds checkpoints; pass --resume to continue it or choose "
                          "another --output-dir")
    resume_from = ckpt.find_resume_point(Path(resume)) if resume is not None else None
    saved = ckpt.read_state(resume_from) if resume_from else {}
    changes = config_changes(saved.get("config") or {}, cfg) if resume_from else {}
    if changes and not allow_changes:
        listed = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())
        raise ConfigError(f"resume: {resume_from} was trained with another config ({listed}); resume with the same "
                          "values, or pass --resume-with-changes to apply the new ones")
    source = warmstart.find_source(cfg.init_from) if cfg.init_from else None
    lineage = {"from": cfg.init_from, "sha256": source.sha256()} if source else {}  # hashed once: weights are large

    torch.manual_seed(t.seed)  # the same initial weights on every rank
    model = ElectraPretrainer(cfg.model, t)
    init: dict[str, Any] = {}
    if source is not None and resume_from is None:  # a resumed run has them in its checkpoint
        extension = warmstart.extension_of(cfg.tokenizer) if cfg.tokenizer else None
        init = {**lineage, **warmstart.load_weights(model, source, extension)}
        if world.is_main:
            for part, what in init.items():
                log.info("init %s: %s", part, what)
    model = model.to(device)
    if world.rank:
        torch.manual_seed(t.seed + world.rank)  # dropout differs per rank; rank 0 is the single-process run
    optimizer = build_optimizer(model, t, device)
    if t.init_optimizer and init:  # a fresh start from a run of ours: its AdamW moments too
        source_ckpt = ckpt.list_checkpoints(Path(cfg.init_from))[-1]
        ckpt.load_optimizer_moments(source_ckpt, optimizer)
        init["optimizer"] = str(source_ckpt)
    step_flops = flops.train_step_flops(cfg.model, t).total  # the global batch, all ranks together
    schedule = Schedule.of(t, step_flops)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
    mask_rng = torch.Generator(device=device).manual_seed(t.seed * 1000 + world.rank)
    state = ckpt.TrainState(step=0, examples_seen=0)
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, model, optimizer, scheduler, mask_rng)
        if "train.lr" in changes:  # the scheduler's saved peak would win over the new one
            scheduler.base_lrs = [t.lr for _ in scheduler.base_lrs]
        if world.rank:  # the checkpoint holds rank 0's generators; other ranks draw their own
            torch.manual_seed(t.seed + world.rank + 7919 * state.step)
            mask_rng.manual_seed(t.seed * 1000 + world.rank + 7919 * state.step)
    schedule.elapsed = state.train_seconds
    amp = autocast_dtype(t.precision, device)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.json")
        tracker.log_params(config_mod.to_dict(cfg))
        # what `auto` resolved to on this machine, so runs compare honestly in MLflow
        tracker.set_tags({"preset": cfg.preset, "objective": t.objective, "precision": _precision_name(amp)}
                         | ({"init_from": cfg.init_from, "init_from.sha256": lineage["sha256"]} if source else {}))
    fsdp = distributed.fsdp_requested(world, t.fsdp)
    if fsdp:  # shard in place; the optimizer (and its resumed state) moves onto the shards
        optimizer = distributed.shard(model, optimizer, world, param_dtype=amp if device.type == "cuda" else None,
                                      make_optimizer=lambda m: build_optimizer(m, t, device))
        scheduler = _rebind(scheduler, optimizer, schedule.factor)
        runner: nn.Module = model
    else:
        runner = distributed.wrap(model, world)
    if t.compile:
        runner = torch.compile(runner)
    special = torch.tensor(sorted(set(data.special_ids.values())), device=device)
    mask_id = data.special_ids["mask"]
    stream = micro_batches(data, batch_size=t.batch_size, grad_accum=t.grad_accum, seed=t.seed,
                           start_example=state.examples_seen, rank=world.rank, world_size=world.size)
    loader = Prefetcher(stream, depth=2, pin=device.type == "cuda")

    def mask(mb: Batch) -> Masked:
        return model.mask(mb.as_dict(), special, mask_id, mask_rng)

    def unsharded(with_optimizer: bool) -> tuple[ElectraPretrainer, torch.optim.Optimizer | None]:
        """The model (and optimizer) as plain tensors: itself, or gathered on rank 0 under FSDP."""
        if not fsdp:
            return model, optimizer
        with torch.random.fork_rng(devices=[]):  # building the copy must not move the dropout stream
            return distributed.gather(model, optimizer if with_optimizer else None, world,
                                      make_model=lambda: ElectraPretrainer(cfg.model, t),
                                      make_optimizer=lambda m: build_optimizer(m, t, torch.device("cpu")))

    def save() -> None:
        plain, plain_optimizer = unsharded(with_optimizer=True)  # every rank takes part under FSDP
        if world.is_main:
            ckpt.save_checkpoint(out, plain, plain_optimizer, scheduler, state, mask_rng, config_mod.to_dict(cfg),
                                 t.keep_checkpoints)

    peak = peak_tflops(device, t.peak_tflops)
    earlier_hours = _trim_metrics(out / "metrics.jsonl", state.step) if world.is_main else 0.0
    session_steps = 0
    history: list[dict[str, float]] = []
    warnings: list[str] = []
    watch = CollapseWatch(after_step=2 * schedule.warmup_steps)
    # scored on rank 0 between steps; under FSDP the weights are sharded, so the intrinsic stage scores at the end
    probe = intrinsic.Probe.of_examples(cfg.data, cfg.model.vocab_size) if t.eval_every and world.is_main \
        and not fsdp else None
    scored_bucket = state.step // t.eval_every if t.eval_every else 0
    sums: dict[str, torch.Tensor] = {}
    window_steps, window_start = 0, time.perf_counter()
    metrics_file = (out / "metrics.jsonl").open("a") if world.is_main else None
    bar = None
    if progress and world.is_main:
        from tqdm.auto import tqdm

        if schedule.budget_seconds is None:
            bar = tqdm(total=schedule.total_steps, initial=state.step, desc=f"pretrain {cfg.preset}", unit="step",
                       dynamic_ncols=True)
        else:  # a wall-clock budget: the bar counts training seconds
            bar = tqdm(total=round(schedule.budget_seconds), initial=round(state.train_seconds), unit="s",
                       desc=f"pretrain {cfg.preset} ({t.budget_minutes:g} min budget)", dynamic_ncols=True)
    model.train()
    try:
        while not schedule.done(state.step):
            started = time.perf_counter()
            step_metrics = train_step(runner, model, optimizer, scheduler, next(loader), mask, device=device, amp=amp,
                                      grad_clip=t.grad_clip, rng=mask_rng)
            for k, v in step_metrics.items():
                sums[k] = sums[k] + v if k in sums else v
            spent = time.perf_counter() - started
            state.step += 1
            state.examples_seen += t.batch_size
            state.train_seconds = rank0_value(state.train_seconds + spent, world, device) \
                if schedule.budget_seconds is not None else state.train_seconds + spent
            schedule.elapsed = state.train_seconds
            window_steps += 1
            session_steps += 1
            if bar is not None:
                if schedule.budget_seconds is None:
                    bar.update(1)
                else:
                    bar.update(min(round(schedule.budget_seconds), round(state.train_seconds)) - bar.n)

            last = schedule.done(state.step)
            if state.step % t.log_every == 0 or last:
                sums = distributed.mean_across(sums, world)  # every rank's shard, not rank 0's alone
                now = time.perf_counter()
                row = {k: float(v) / window_steps for k, v in sums.items()}  # the host sync
                seconds = now - window_start
                row["lr"] = scheduler.get_last_lr()[0]
                row["throughput/seq_per_s"] = window_steps * t.batch_size / seconds
                row["throughput/tokens_per_s"] = row["throughput/seq_per_s"] * t.seq_len
                row["perf/flops_per_step"] = float(step_flops)
                # wall-clock figures live under throughput/ (a resumed run reproduces everything else)
                row["throughput/tflops_per_s_per_device"] = window_steps * step_flops / seconds / world.size / 1e12
                if peak:
                    row["throughput/mfu"] = flops.mfu(window_steps * step_flops, seconds, peak, world.size)
                row["throughput/device_hours"] = earlier_hours + (now - session_start) * world.size / 3600
                row["progress"] = schedule.progress(state.step)  # share of the run (steps or budget) done
                ratio = rtd_over_prior(row)
                if ratio is not None:
                    row["disc/loss_over_prior"] = ratio
                if probe is not None and (state.step // t.eval_every > scored_bucket or last):
                    scored_bucket = state.step // t.eval_every
                    row |= probe.score(model.discriminator, model.generator)
                row["step"] = state.step
                history.append(row)
                warning = watch.update(state.step, row)
                if warning is not None and world.is_main:
                    warnings.append(warning)
                    log.warning(warning)
                    tracker.set_tags({"warning.discriminator": warning})
                if world.is_main:
                    tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=state.step)
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    if bar is not None:
                        bar.set_postfix({k.split("/")[-1]: f"{row[k]:.3g}" for k in ("loss/total", "disc/accuracy", "gen/accuracy") if k in row})
                sums, window_steps, window_start = {}, 0, time.perf_counter()
            if state.step % t.save_every == 0 or last:
                save()
    except KeyboardInterrupt:
        if world.is_main and state.step > 0 and not fsdp:  # gathering shards needs every rank
            save()
        raise
    finally:
        loader.close()
        if bar is not None:
            bar.close()
        if metrics_file is not None:
            metrics_file.close()
    distributed.barrier(world)
    session_hours = (time.perf_counter() - session_start) * world.size / 3600

    result = PretrainResult(output_dir=out, discriminator_dir=None, generator_dir=out / "generator",
                            steps=state.step, metrics=history[-1] if history else {}, history=history,
                            warnings=warnings)
    final, _ = unsharded(with_optimizer=False)
    if world.is_main:
        if final.discriminator is not None:
            result.discriminator_dir = hf.save_hf(final.discriminator, out / "discriminator", "discriminator",
                                                  tokenizer=cfg.tokenizer or None)
        hf.save_hf(final.generator, out / "generator", "generator", tokenizer=cfg.tokenizer or None)
        if cfg.tokenizer:
            hf.copy_tokenizer(Path(cfg.tokenizer), out)
        full_history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
        if not result.metrics and full_history:  # resumed at its last step: the final window is on file
            result.metrics = full_history[-1]
        plot = _save_plot(full_history, out / "loss_curves.png")
        compute = {
            "flops_per_step": step_flops,  # analytic, see flops.py
            "train_flops": step_flops * state.step,  # all steps of the run, as the paper counts compute
            "flops_this_session": step_flops * session_steps,
            "device_hours": earlier_hours + session_hours,  # wall clock x devices, all sessions
            "device_hours_this_session": session_hours,
            "devices": world.size,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "peak_tflops_per_device": peak,
            "precision": _precision_name(amp),
            "tokens": state.examples_seen * t.seq_len,  # sequence positions trained on, padding included
            "train_minutes": state.train_seconds / 60,  # training steps only, all sessions
            "budget": ({"minutes": t.budget_minutes} if t.budget_minutes is not None else
                       {"flops": t.budget_flops} if t.budget_flops is not None else {"steps": t.max_steps}),
        }
        summary = {"steps": state.step, "examples_seen": state.examples_seen, "final": result.metrics,
                   "compute": compute}
        if changes:
            summary["resumed_with_changes"] = {"at_step": saved["step"], "fields": changes}
        if source is not None:  # lineage: what the weights started from
            summary["init"] = init or lineage
        atomic.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        for kind in ("discriminator", "generator"):
            if (out / kind).is_dir():
                (out / kind / "README.md").write_text(hf.model_card(kind, config_mod.to_dict(cfg), summary))
        for p in (out / "config.json", out / "summary.json", plot):
            if p is not None:
                tracker.log_artifact(p)
        if result.discriminator_dir is not None:
            tracker.log_artifact(result.discriminator_dir, "discriminator")
    distributed.barrier(world)
    distributed.shutdown(world)
    return result
