"""Training checkpoints: model, optimizer, scheduler, RNG and data position, with no pickle.

    <run>/checkpoints/step-00001000/
        model.safetensors      the whole pre-trainer (shared embeddings stored once)
        optimizer.safetensors  every optimizer state tensor, keyed state.<param index>.<name>
        state.json             step, examples seen, param groups, scheduler, RNG keys, config, and
                               "files": the sha256 of both weights files

Each is written to a hidden temporary directory and renamed into place, so a crash never
leaves a half-written checkpoint; older ones beyond `keep` are deleted after the rename.
state.json is written last and is the checkpoint's manifest: loading checks both files against
its sums first, so a damaged byte anywhere stops the resume with the file's name. A checkpoint
from before the sums ("files" absent) loads with one warning.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from electra_pipeline import integrity
from electra_pipeline.atomic import staged_dir
from electra_pipeline.errors import DataError, read_json_object

FORMAT = "electra-checkpoint/1"
WEIGHT_FILES = ("model.safetensors", "optimizer.safetensors")

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    step: int  # optimiser steps done
    examples_seen: int  # position in the global example stream
    train_seconds: float = 0.0  # wall-clock seconds of training steps, all sessions (a minutes budget reads it)
    phase: str = "joint"  # what the model trains (pretrainer.ElectraPretrainer.phase): its structure at a resume


def _rng_tensors(mask_gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state(), "rng.mask": mask_gen.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, state: TrainState,
                    mask_gen: torch.Generator, config: dict[str, Any], keep: int) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{state.step:08d}"
    with staged_dir(final, "state.json") as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        opt = optimizer.state_dict()
        tensors = {f"state.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
                   for i, s in opt["state"].items() for k, v in s.items()}
        tensors.update({k: v.cpu().contiguous() for k, v in _rng_tensors(mask_gen).items()})
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta = {"format": FORMAT, "step": state.step, "examples_seen": state.examples_seen,
                "train_seconds": state.train_seconds, "phase": state.phase,
                "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), "config": config,
                "files": integrity.file_sums(tmp, list(WEIGHT_FILES))}
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=list))
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def find_resume_point(path: Path) -> Path:
    """A run directory resumes from its latest checkpoint; a checkpoint directory from itself."""
    p = Path(path)
    if (p / "state.json").is_file():
        return p
    ckpts = list_checkpoints(p)
    if not ckpts:
        raise DataError(f"{p}: no checkpoint to resume from (expected {p}/checkpoints/step-*/state.json)")
    return ckpts[-1]


def read_state(ckpt: Path) -> dict[str, Any]:
    f = Path(ckpt) / "state.json"
    meta = read_json_object(f, "missing; not a training checkpoint")
    if meta.get("format") != FORMAT:
        raise DataError(f"{f}: format {meta.get('format')!r}, expected {FORMAT!r} (a foreign checkpoint?)")
    return meta


def verify_checkpoint(ckpt: Path, meta: dict[str, Any], names: tuple[str, ...] = WEIGHT_FILES) -> None:
    """`names` against the sums in state.json; a checkpoint without them loads with a warning."""
    sums = meta.get("files")
    manifest = Path(ckpt) / "state.json"
    if sums is None:
        log.warning("%s: no checksums (a checkpoint from before them); its weights are loaded unverified", manifest)
        return
    if not isinstance(sums, dict) or not all(isinstance(sums.get(n), str) for n in names):
        raise DataError(f"{manifest}: \"files\" must map {', '.join(names)} to their sha256")
    integrity.verify(ckpt, {n: sums[n] for n in names}, manifest)


def _optimizer_file(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]]]:
    """(every tensor of optimizer.safetensors, the AdamW state by parameter index)."""
    try:
        tensors = load_file(str(ckpt / "optimizer.safetensors"))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{ckpt / 'optimizer.safetensors'}: unreadable or truncated ({e})") from None
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = t
    return tensors, opt_state


def load_optimizer_moments(ckpt: Path, optimizer: torch.optim.Optimizer) -> None:
    """The AdamW moments of checkpoint `ckpt` into `optimizer`, keeping its own param groups (and so
    its learning rates): how a continued run carries its source run's optimizer state."""
    ckpt = Path(ckpt)
    verify_checkpoint(ckpt, read_state(ckpt), ("optimizer.safetensors",))
    tensors, opt_state = _optimizer_file(ckpt)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for idx, s in opt_state.items():
        if idx >= len(params) or s["exp_avg"].shape != params[idx].shape:
            raise DataError(f"{ckpt / 'optimizer.safetensors'}: optimizer state does not fit this model (parameter "
                            f"{idx}); continue the optimizer only from a run of the same config and objective")
    optimizer.load_state_dict({"state": opt_state, "param_groups": optimizer.state_dict()["param_groups"]})


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, mask_gen: torch.Generator) -> TrainState:
    """Restore everything in place; errors name the file and what does not match."""
    ckpt = Path(ckpt)
    meta = read_state(ckpt)
    verify_checkpoint(ckpt, meta)
    try:
        missing, unexpected = load_model(model, str(ckpt / "model.safetensors"), strict=False)
    except (SafetensorError, OSError) as e:
        raise DataError(f"{ckpt / 'model.safetensors'}: unreadable or truncated ({e})") from None
    except RuntimeError as e:  # shape mismatch
        raise DataError(f"{ckpt / 'model.safetensors'}: does not fit this model ({str(e).splitlines()[0]}); "
                        "was it trained with another config?") from None
    if missing or unexpected:
        raise DataError(f"{ckpt / 'model.safetensors'}: does not fit this model "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    tensors, opt_state = _optimizer_file(ckpt)
    state_file = ckpt / "state.json"
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        scheduler.load_state_dict(meta["scheduler"])
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"{state_file}: optimizer or scheduler state does not fit this model ({type(e).__name__}: "
                        f"{e}); was it trained with another config?") from None
    try:
        torch.set_rng_state(tensors["rng.cpu"])
        mask_gen.set_state(tensors["rng.mask"].to(torch.uint8))
    except (KeyError, RuntimeError) as e:
        raise DataError(f"{ckpt / 'optimizer.safetensors'}: random-generator state missing or damaged ({e})") from None
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    try:
        return TrainState(step=int(meta["step"]), examples_seen=int(meta["examples_seen"]),
                          train_seconds=float(meta.get("train_seconds", 0.0)), phase=str(meta.get("phase", "joint")))
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{state_file}: step, examples_seen or train_seconds missing or not a number ({e})") from None
