"""Data parallelism on the CPU (gloo): two ranks train exactly like one process with their
combined batch; a torchrun run logs and checkpoints once and resumes under another world size."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from electra_pipeline.data.batches import Batch, ExampleShards, micro_batches
from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import objectives, presets
from electra_pipeline.training import distributed, optim, train

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
VOCAB, SEQ, STEPS = 512, 32, 3


def write_examples(root: Path, n: int = 64, seed: int = 0) -> Path:
    """Unpadded [CLS] A [SEP] B [SEP] rows: every sequence has the same number of maskable
    tokens, so per-rank loss means average to the combined batch's mean exactly."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(SPECIAL), VOCAB, size=(n, SEQ)).astype(np.int32)
    ids[:, 0], ids[:, SEQ // 2], ids[:, -1] = SPECIAL["cls"], SPECIAL["sep"], SPECIAL["sep"]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "shard-00000.npy", ids)
    meta = {"format": "electra-examples/1", "seq_len": SEQ, "vocab_size": VOCAB, "num_examples": n,
            "shards": [{"file": "shard-00000.npy", "num_examples": n}], "special_ids": SPECIAL}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def tiny_cfg(data: Path, out: Path, **train_kw) -> c.PretrainConfig:
    cfg = presets.tiny()
    model = dataclasses.replace(cfg.model, vocab_size=VOCAB, hidden_size=64, num_heads=2, intermediate_size=128,
                                embedding_size=32, dropout=0.0, attention_dropout=0.0)
    kw = dict(seq_len=SEQ, batch_size=16, max_steps=STEPS, lr=1e-3, warmup_steps=1, device="cpu")
    kw.update(train_kw)
    return dataclasses.replace(cfg, data=str(data), output_dir=str(out), model=model,
                               train=dataclasses.replace(cfg.train, **kw))


def mask_per_example(mb: Batch, cfg: c.PretrainConfig) -> objectives.Masked:
    """Masking seeded by each row's content: the same choice whichever rank or batch holds it."""
    special = torch.tensor(sorted(SPECIAL.values()))
    parts = []
    for row, am in zip(mb.input_ids, mb.attention_mask):
        seed = int((row * torch.arange(1, SEQ + 1)).sum()) % (2**31)
        parts.append(objectives.mask_tokens(row[None], am[None], special, mask_id=SPECIAL["mask"], vocab_size=VOCAB,
                                            mask_prob=cfg.train.mask_prob, max_predictions=cfg.train.max_predictions,
                                            rng=torch.Generator().manual_seed(seed)))
    return objectives.Masked(*(torch.cat([getattr(p, f.name) for p in parts])
                               for f in dataclasses.fields(objectives.Masked)))


def fixed_samples(logits: torch.Tensor, temperature: float = 1.0, rng=None) -> torch.Tensor:
    """Replacements that do not depend on float rounding, so both runs feed the discriminator
    the same tokens (a sample is a float argmax: a near-tie could flip between batch sizes)."""
    B, P = logits.shape[:2]
    return (torch.arange(P) * 7 + len(SPECIAL)).expand(B, P) % VOCAB


def train_steps(cfg: c.PretrainConfig, world: distributed.World, out_file: Path, fsdp: bool = False) -> None:
    real_sampler, objectives.sample_tokens = objectives.sample_tokens, fixed_samples
    try:
        _train_steps(cfg, world, out_file, fsdp)
    finally:
        objectives.sample_tokens = real_sampler


def _train_steps(cfg: c.PretrainConfig, world: distributed.World, out_file: Path, fsdp: bool) -> None:
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    t = cfg.train
    torch.manual_seed(t.seed)
    model = ElectraPretrainer(cfg.model, t)
    optimizer = optim.build_optimizer(model, t, torch.device("cpu"))
    if fsdp:
        optimizer = distributed.shard(model, optimizer, world, param_dtype=None,
                                      make_optimizer=lambda m: optim.build_optimizer(m, t, torch.device("cpu")))
        runner = model
    else:
        runner = distributed.wrap(model, world)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: optim.lr_factor(s, t.warmup_steps, t.max_steps))
    stream = micro_batches(ExampleShards(cfg.data), batch_size=t.batch_size, grad_accum=t.grad_accum, seed=t.seed,
                           start_example=0, rank=world.rank, world_size=world.size)
    losses = []
    for _ in range(t.max_steps):
        metrics = train.train_step(runner, model, optimizer, scheduler, next(stream),
                                   lambda mb: mask_per_example(mb, cfg), device=torch.device("cpu"), amp=None,
                                   grad_clip=t.grad_clip)
        metrics = distributed.mean_across(metrics, world)
        losses.append((float(metrics["loss/total"]), float(metrics["grad_norm"])))  # the norm checks gradient scale
    if fsdp:
        model, _ = distributed.gather(model, None, world, make_model=lambda: ElectraPretrainer(cfg.model, t),
                                      make_optimizer=None)
    torch.save({"state": model.state_dict(), "losses": losses}, out_file)


def _worker(rank: int, world_size: int, port: int, cfg: c.PretrainConfig, out_dir: Path, fsdp: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        train_steps(cfg, distributed.World(rank=rank, size=world_size), out_dir / f"rank{rank}.pt", fsdp)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_two_ranks_match_one_process_with_the_combined_batch(tmp_path, fsdp):
    data = write_examples(tmp_path / "data")
    # 2 ranks x 2 accumulated micro-batches of 4 == 1 process with the whole batch of 16
    ddp_cfg = tiny_cfg(data, tmp_path / "ddp", grad_accum=2)
    mp.spawn(_worker, args=(2, free_port(), ddp_cfg, tmp_path, fsdp), nprocs=2, join=True)
    single = tmp_path / "single.pt"
    train_steps(tiny_cfg(data, tmp_path / "one"), distributed.World(), single)

    r0, one = torch.load(tmp_path / "rank0.pt"), torch.load(single)
    for (loss, norm), (loss1, norm1) in zip(r0["losses"], one["losses"]):
        assert loss == pytest.approx(loss1, rel=1e-5) and norm == pytest.approx(norm1, rel=1e-4)
    if not fsdp:  # DDP replicas stay identical (FSDP's rank 1 holds shards only)
        r1 = torch.load(tmp_path / "rank1.pt")
        assert all(torch.equal(r0["state"][k], v) for k, v in r1["state"].items())
    for name, p in one["state"].items():
        assert torch.allclose(r0["state"][name], p, atol=1e-5, rtol=0), name
    assert not torch.equal(one["state"]["discriminator.head.dense.weight"], start_weights(ddp_cfg))  # it trained


def start_weights(cfg: c.PretrainConfig) -> torch.Tensor:
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    torch.manual_seed(cfg.train.seed)
    return ElectraPretrainer(cfg.model, cfg.train).discriminator.head.dense.weight.detach()


DRIVER = """
import json, sys
from electra_pipeline.modeling import config
from electra_pipeline.training import optim, train
from electra_pipeline.modeling import presets
cfg = presets.resolve("tiny", None, json.loads(sys.argv[1]))
resume = sys.argv[2] == "resume"  # each resume runs a longer schedule: a recorded change
train.pretrain(cfg, resume=cfg.output_dir if resume else None, progress=False, allow_changes=resume)
"""


def _torchrun(nproc: int, overrides: dict, resume: bool, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone` on a two-line driver of `train.pretrain` (what `electra pretrain` calls)."""
    driver = cwd / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(driver),
           json.dumps(overrides), "resume" if resume else "new"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_logs_once_and_resumes_under_other_world_sizes_and_fsdp(tmp_path):
    data = write_examples(tmp_path / "data")
    run = tmp_path / "run"

    def cfg(max_steps: int, fsdp: bool = False) -> dict:
        return {"data": str(data), "output_dir": str(run), "model": {"vocab_size": VOCAB},
                "train": {"seq_len": SEQ, "batch_size": 8, "device": "cpu", "log_every": 1, "save_every": 2,
                          "max_steps": max_steps, "fsdp": fsdp}}

    first = _torchrun(2, cfg(4), False, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # rank 0 alone writes
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    assert json.loads((run / "checkpoints" / "step-00000004" / "state.json").read_text())["examples_seen"] == 32

    # one process picks up at the same global example position
    second = _torchrun(1, cfg(6), True, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["examples_seen"] == 48
    assert summary["compute"]["train_flops"] == 6 * summary["compute"]["flops_per_step"]
    assert summary["compute"]["device_hours"] > summary["compute"]["device_hours_this_session"] > 0

    # two FSDP2 ranks shard the plain checkpoint, then gather their own into the same format
    third = _torchrun(2, cfg(8, fsdp=True), True, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    state = json.loads((run / "checkpoints" / "step-00000008" / "state.json").read_text())
    assert state["examples_seen"] == 64
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    t = presets.resolve("tiny", None, cfg(8, fsdp=True)).train  # the warm-up fitted to 8 steps, as the driver's
    expected = [t.lr * optim.lr_factor(s, t.warmup_steps, 8) for s in range(1, 9)]
    assert [r["lr"] for r in rows[-2:]] == pytest.approx(expected[-2:])
    from electra_pipeline.modeling import hf

    assert hf.load_discriminator(run / "discriminator") is not None  # a full model, not a shard


def test_rebinding_the_schedule_keeps_step_and_rate():
    model = torch.nn.Linear(2, 2)
    first = torch.optim.AdamW(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(first, lambda s: 1 / (s + 1))
    for _ in range(3):
        first.step()
        schedule.step()
    second = torch.optim.AdamW(model.parameters(), lr=1.0)
    rebound = optim.rebind(schedule, second, lambda s: 1 / (s + 1))
    assert second.param_groups[0]["lr"] == first.param_groups[0]["lr"] == 0.25
    second.step()
    rebound.step()
    assert second.param_groups[0]["lr"] == 0.2
