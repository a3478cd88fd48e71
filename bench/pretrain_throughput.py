"""Throughput of one joint ELECTRA pre-training step: ours against a naive Hugging Face
composition, measured in the same process on the same batches.

A step is what `train.pretrain` does per optimiser step: mask, joint forward, backward, global
grad-norm clip, AdamW step. The reference composes `ElectraForMaskedLM` (generator) and
`ElectraForPreTraining` (discriminator) of the same sizes with tied embeddings (word, position,
token type, LayerNorm), the same masking, token sampling and losses, the generator's logits
computed over every position (what the composition does), and AdamW with the same groups.

The two are measured in alternating iterations after warmup (ours-HF, HF-ours, ...), so load
from other processes on the machine hits both alike. Throughputs come from the median step
time; the ratio is the median over iterations of the HF/ours time ratio of each adjacent pair,
which a burst of outside load hitting a few iterations cannot move (the table shows the ratio
of medians too). The last line is machine-readable:

    pretrain_throughput tokens_per_s=<ours> reference_tokens_per_s=<hf> ratio=<ours/hf>

    python bench/pretrain_throughput.py                        # small, 16 x 128, CPU
    python bench/pretrain_throughput.py --cpu-time             # one thread, CPU seconds: for busy machines
    python bench/pretrain_throughput.py --device cuda --batch 128 --compile
    python bench/pretrain_throughput.py --smoke                # tiny, 2 x 32, 2 steps: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from electra_pipeline.data.batches import Batch, derive_segments
from electra_pipeline.modeling import objectives, presets
from electra_pipeline.modeling.config import ModelConfig, PretrainConfig
from electra_pipeline.training import cpu_paths, flops, optim, runtime, train
from electra_pipeline.training.pretrainer import ElectraPretrainer

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def synthetic_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0,
                      short_prob: float = 0.1) -> list[Batch]:
    """Packed-looking rows [CLS] A [SEP] B [SEP]; with `short_prob` a row is shorter and padded
    (the recipe's random-length examples and document ends), so masks are exercised."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = np.zeros((batch, seq), dtype=np.int64)
        for r in range(batch):
            length = int(rng.integers(8, seq + 1)) if rng.random() < short_prob else seq
            row = rng.integers(len(SPECIAL), vocab, size=length)
            split = int(rng.integers(2, length - 2))
            row[0], row[split], row[length - 1] = SPECIAL["cls"], SPECIAL["sep"], SPECIAL["sep"]
            ids[r, :length] = row
        tt, am = derive_segments(ids, SPECIAL["sep"], SPECIAL["pad"])
        out.append(Batch(torch.from_numpy(ids), torch.from_numpy(tt), torch.from_numpy(am)))
    return out


def _autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def ours(cfg: PretrainConfig, device: torch.device, amp: torch.dtype | None,
         compile: bool) -> Callable[[Batch], None]:
    """`train.train_step`, the training loop's own step, on our pre-trainer."""
    t = cfg.train
    model = cpu_paths.apply(ElectraPretrainer(cfg.model, t)).to(device)
    runner = torch.compile(model) if compile else model  # as train.pretrain does
    optimizer = optim.build_optimizer(model, t, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: optim.lr_factor(s, t.warmup_steps, t.max_steps))
    special = torch.tensor(sorted(set(SPECIAL.values())), device=device)
    rng = torch.Generator(device=device).manual_seed(0)
    model.train()

    def mask(mb: Batch) -> objectives.Masked:
        return model.mask(mb.as_dict(), special, SPECIAL["mask"], rng)

    def step(mb: Batch) -> None:
        train.train_step(runner, model, optimizer, scheduler, [mb], mask, device=device, amp=amp,
                         grad_clip=t.grad_clip, rng=rng)

    return step


def hf_config(cfg: ModelConfig) -> transformers.ElectraConfig:  # noqa: F821
    from transformers import ElectraConfig

    return ElectraConfig(vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         intermediate_size=cfg.intermediate_size, hidden_dropout_prob=cfg.dropout,
                         attention_probs_dropout_prob=cfg.attention_dropout,
                         max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
                         layer_norm_eps=cfg.layer_norm_eps, pad_token_id=cfg.pad_token_id)


def reference(cfg: PretrainConfig, device: torch.device, amp: torch.dtype | None) -> Callable[[Batch], None]:
    """The naive composition: HF generator + discriminator, embeddings tied by module sharing."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    t = cfg.train
    disc = ElectraForPreTraining(hf_config(cfg.model))
    gen = ElectraForMaskedLM(hf_config(cfg.model.generator()))
    gen.electra.embeddings = disc.electra.embeddings  # word, position, token type + LayerNorm
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    both = nn.ModuleDict({"generator": gen, "discriminator": disc}).to(device)
    assert gen.generator_lm_head.weight is disc.electra.embeddings.word_embeddings.weight
    optimizer = torch.optim.AdamW(optim.param_groups(both, t.weight_decay), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                                  eps=t.adam_eps, foreach=None)  # torch defaults: foreach on CUDA, a per-tensor loop on CPU
    special = torch.tensor(sorted(set(SPECIAL.values())), device=device)
    rng = torch.Generator(device=device).manual_seed(0)
    both.train()

    def step(mb: Batch) -> None:
        mb = mb.to(device, non_blocking=True)
        ids, tt, am = mb.input_ids, mb.token_type_ids, mb.attention_mask
        masked = objectives.mask_tokens(ids, am, special, mask_id=SPECIAL["mask"], vocab_size=cfg.model.vocab_size,
                                        mask_prob=t.mask_prob, max_predictions=t.max_predictions,
                                        mask_token_prob=t.mask_token_prob, random_token_prob=t.random_token_prob,
                                        rng=rng)
        # HF's MLM loss: labels at the chosen positions, -100 elsewhere (the same mean CE).
        labels = torch.full_like(ids, -100).scatter(1, masked.positions,
                                                    torch.where(masked.weights.bool(), masked.original, -100))
        with _autocast(device, amp):
            out = gen(input_ids=masked.input_ids, attention_mask=am, token_type_ids=tt, labels=labels)
            logits = out.logits  # (B, T, V): every position
            at_masked = torch.gather(logits, 1, masked.positions[..., None].expand(-1, -1, logits.shape[-1]))
            gen_loss = out.loss
            sampled = objectives.sample_tokens(at_masked, t.temperature, rng)
            fake, is_replaced = objectives.replace_tokens(masked, sampled, ids)
            disc_logits = disc(input_ids=fake, attention_mask=am, token_type_ids=tt).logits  # (B, T)
            disc_loss = objectives.rtd_loss(disc_logits, is_replaced, am)
            loss = t.gen_weight * gen_loss + t.disc_weight * disc_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(both.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(steps: dict[str, Callable[[Batch], None]], batches: list[Batch], warmup: int, iters: int,
            device: torch.device, clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per step for each contender, alternating contenders every iteration."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + iters):
        mb = batches[i % len(batches)]
        order = list(steps.items()) if i % 2 == 0 else list(reversed(steps.items()))
        for name, step in order:
            sync()
            t0 = clock()
            step(mb)
            sync()
            if i >= warmup:
                times[name].append(clock() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--preset", choices=sorted(presets.PRESETS), default="small")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--seq", type=int, default=128, help="sequence length")
    p.add_argument("--steps", type=int, default=20, help="timed iterations per contender")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per contender (more with --compile)")
    p.add_argument("--compile", action="store_true", help="torch.compile our pre-trainer (fixed shapes)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast on CUDA and bf16-capable CPUs (AMX, AVX512-BF16), else fp32 (both contenders alike)")
    p.add_argument("--no-reference", action="store_true", help="measure ours only")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: GPU table)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--check-syncs", action="store_true",
                   help="CUDA: run one more step of ours under torch.cuda.set_sync_debug_mode('warn') and list "
                        "the operations that made the host wait for the GPU")
    p.add_argument("--cpu-time", action="store_true",
                   help="CPU: one thread, timed in CPU seconds of that thread, not wall-clock; other processes "
                        "on the machine then barely move the figures (they still share caches and memory)")
    p.add_argument("--smoke", action="store_true",
                   help="check the script in seconds: tiny preset, batch 2 x seq 32, 2 timed steps after 1 warmup")
    args = p.parse_args(argv)
    if args.smoke:
        args.preset, args.batch, args.seq, args.steps, args.warmup = "tiny", 2, 32, 2, 1
    if args.cpu_time and (args.device != "cpu" or (args.threads or 1) != 1):
        p.error("--cpu-time measures one CPU thread: use it with --device cpu and without --threads")
    if args.cpu_time:
        args.threads = 1

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = presets.preset(args.preset)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seq_len=args.seq, batch_size=args.batch,
                                                             grad_accum=1, compile=args.compile))
    amp = runtime.autocast_dtype(args.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)

    steps = {"ours": ours(cfg, device, amp, args.compile)}
    if not args.no_reference:
        steps["hf_reference"] = reference(cfg, device, amp)
    batches = synthetic_batches(8, args.batch, args.seq, cfg.model.vocab_size)
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]  # as the trainer's Prefetcher delivers them
    warmup = max(args.warmup, 3 if args.compile else 0)
    times = measure(steps, batches, warmup, args.steps, device, time.thread_time if args.cpu_time else time.perf_counter)

    if args.check_syncs and device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                steps["ours"](batches[0])
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
        print(f"# --check-syncs: {len(syncs)} host-device synchronisations in one step of ours")
        for line in syncs[:10]:
            print(f"#   {line}")

    peak = args.peak_tflops
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if peak is None and device.type == "cuda":
        peak = flops.peak_tflops(device_name)
    step_flops = {"ours": flops.train_step_flops(cfg.model, cfg.train).total,
                  "hf_reference": flops.train_step_flops(cfg.model, cfg.train, generator_positions=args.seq).total}
    tokens = args.batch * args.seq
    print(f"# {args.preset} batch {args.batch} x seq {args.seq} on {device_name} ({torch.get_num_threads()} threads), "
          f"precision {amp or 'fp32'}, compile {args.compile}, torch {torch.__version__}; "
          f"median of {args.steps} alternating iterations after {warmup} warmup"
          f"{'; CPU seconds of the one thread' if args.cpu_time else '; wall-clock'}")
    print(f"{'contender':<14}{'s/step':>10}{'min':>9}{'max':>9}{'seq/s':>10}{'tokens/s':>12}{'GFLOP/step':>12}"
          f"{'TFLOP/s':>9}{'MFU':>8}")
    tps = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        tps[name] = tokens / med
        achieved = step_flops[name] / med / 1e12
        mfu = f"{flops.mfu(step_flops[name], med, peak):.1%}" if peak else "-"
        print(f"{name:<14}{med:>10.4f}{min(ts):>9.4f}{max(ts):>9.4f}{args.batch / med:>10.1f}{tokens / med:>12.0f}"
              f"{step_flops[name] / 1e9:>12.1f}{achieved:>9.3f}{mfu:>8}")
    ref = tps.get("hf_reference", math.nan)
    ratio = math.nan
    if "hf_reference" in times:
        ratio = statistics.median(r / o for o, r in zip(times["ours"], times["hf_reference"]))
        print(f"ratio ours/hf: {ratio:.3f} (median of paired iterations), {tps['ours'] / ref:.3f} (of medians), "
              f"{min(times['hf_reference']) / min(times['ours']):.3f} (of the fastest iterations)")
    print(f"pretrain_throughput tokens_per_s={tps['ours']:.1f} reference_tokens_per_s={ref:.1f} ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
