"""kill -9 in the middle of a checkpoint write and of the final export, then `--resume auto`: the
run ends as the uninterrupted one does (losses, metrics.jsonl, summary.json, exported weights),
with no temporary directory left behind.

Each run is a child process running the real CLI; the crashing ones first wrap one library
function so that the process SIGKILLs itself at the chosen moment (no cleanup, no `finally`)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from electra_pipeline.training.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow  # five whole `electra pretrain` processes, ~2 min on two cores

STEPS, SAVE_EVERY = 6, 2

# The child: install the trap named by argv[1], then run `electra` with the rest of argv.
HARNESS = r"""
import os, signal, sys

def die():
    os.kill(os.getpid(), signal.SIGKILL)

trap = sys.argv[1]
if trap == "checkpoint":  # the 2nd checkpoint: model.safetensors and optimizer.safetensors written, no state.json
    from electra_pipeline.training import checkpoint

    real_save_file, calls = checkpoint.save_file, []

    def save_file(*args, **kwargs):
        real_save_file(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            die()

    checkpoint.save_file = save_file
elif trap == "export":  # the discriminator export: config.json and weights written, before the rename
    from electra_pipeline.modeling import hf

    real_save_hf, real_save_file = hf.save_hf, hf.save_file

    def save_file(*args, **kwargs):
        real_save_file(*args, **kwargs)
        die()

    def save_hf(module, out_dir, kind, **kwargs):
        if kind == "discriminator":
            hf.save_file = save_file
        return real_save_hf(module, out_dir, kind, **kwargs)

    hf.save_hf = save_hf
from electra_cli import main

sys.exit(main(sys.argv[2:]))
"""


def pretrain(tiny_data, run: Path, trap: str = "none") -> subprocess.CompletedProcess:
    tok_dir, ex_dir, vocab = tiny_data
    argv = ["pretrain", "--preset", "tiny", "--data", str(ex_dir), "--tokenizer", str(tok_dir),
            "--output-dir", str(run), "--model.vocab_size", str(vocab), "--train.seq_len", "64",
            "--train.batch_size", "4", "--train.max_steps", str(STEPS), "--train.save_every", str(SAVE_EVERY),
            "--train.warmup_steps", "2", "--train.log_every", "1", "--train.precision", "fp32",
            "--train.device", "cpu", "--tracking.enabled", "false", "--no-progress", "--resume", "auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads, so the same fp32 sums, in every run
    return subprocess.run([sys.executable, "-c", HARNESS, trap, *argv], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def reproducible(row: dict) -> dict:
    """A metrics row without its wall-clock figures."""
    return {k: v for k, v in row.items() if not k.startswith("throughput/")}


def leftovers(run: Path) -> list[str]:
    """Temporary files and directories of atomic writes (atomic.py, runlog.trim_metrics)."""
    return sorted(str(p.relative_to(run)) for p in run.rglob("*")
                  if any(part.startswith(".") or part.endswith(".tmp") for part in p.relative_to(run).parts))


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = pretrain(tiny_data, run)
    assert done.returncode == 0, done.stderr
    return run


def test_kill_during_a_checkpoint_write(tiny_data, uninterrupted, tmp_path):
    run = tmp_path / "run"
    killed = pretrain(tiny_data, run, trap="checkpoint")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The crash is where it was meant to be: step 4's checkpoint half-built in its hidden directory.
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]
    (half,) = (run / "checkpoints").glob(".step-00000004.tmp-*")
    assert sorted(p.name for p in half.iterdir()) == ["model.safetensors", "optimizer.safetensors"]
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4]  # steps 3 and 4 will be replayed

    resumed = pretrain(tiny_data, run)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, uninterrupted)


def test_kill_during_the_final_export(tiny_data, uninterrupted, tmp_path):
    run = tmp_path / "run"
    killed = pretrain(tiny_data, run, trap="export")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Trained to the end and checkpointed; the discriminator half-exported, nothing after it.
    assert list_checkpoints(run)[-1].name == f"step-{STEPS:08d}"
    (half,) = run.glob(".discriminator.tmp-*")
    assert {"config.json", "model.safetensors"} <= {p.name for p in half.iterdir()}
    assert not (run / "discriminator").exists() and not (run / "summary.json").exists()

    resumed = pretrain(tiny_data, run)  # resumes at its last step: nothing to train, the export to redo
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, uninterrupted)


def assert_same_run(run: Path, reference: Path) -> None:
    got, want = rows(run), rows(reference)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))  # each step once, in order
    for a, b in zip(got, want):
        a, b = reproducible(a), reproducible(b)
        assert a.keys() == b.keys(), a["step"]
        for k in b:
            assert a[k] == pytest.approx(b[k], rel=0, abs=1e-6), (a["step"], k)

    summary, expected = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert summary["steps"] == expected["steps"] == STEPS
    assert summary["examples_seen"] == expected["examples_seen"]
    assert summary["compute"]["train_flops"] == expected["compute"]["train_flops"]
    assert summary["final"] and reproducible(summary["final"]) == pytest.approx(reproducible(expected["final"]),
                                                                                rel=0, abs=1e-6)

    for kind in ("discriminator", "generator"):
        a, b = (load_file(str(r / kind / "model.safetensors")) for r in (run, reference))
        assert a.keys() == b.keys(), kind
        for name in b:
            assert torch.equal(a[name], b[name]), (kind, name)
    assert [p.name for p in list_checkpoints(run)] == [p.name for p in list_checkpoints(reference)]
    assert leftovers(run) == []
