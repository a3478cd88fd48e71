"""What a pre-trained encoder has to beat, in every results table.

- **random init**: the same config at initialisation, fine-tuned with the same recipe and seeds.
  A pre-training that does not beat it has bought nothing. Its checkpoint and per-task results
  are cached on (config, init seed, task, recipe, data), so a sweep pays for it once.
- **majority**: the constant prediction from the training labels (the most frequent class; for
  regression the mean, which correlates with nothing). A fine-tuned model at this score has
  learned nothing from its task, pre-trained or not.

`compare` puts the three side by side per task and says, in one sentence, whether the gain over
random init is measurable: positive for every fine-tuning seed (both arms use the same seeds)
and larger than one point on the GLUE score. With one seed it says it cannot tell.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from electra_pipeline import hf, metrics
from electra_pipeline.errors import DataError, read_json_object
from electra_pipeline.model import Discriminator, init_weights

MEASURABLE_GLUE_GAIN = 1.0  # points: below this a GLUE gain is not claimed, whatever the seeds say


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def encoder_shape(checkpoint: str | Path) -> dict[str, Any]:
    """The encoder's config as a discriminator's config.json: the same for a discriminator and
    an MLM model of one size, so both share one random-init baseline."""
    cfg_file = Path(checkpoint) / "config.json"
    cfg_dict = read_json_object(cfg_file, "missing; not a Hugging Face ELECTRA checkpoint")
    return hf.to_hf_config(hf.from_hf_config(cfg_dict, str(cfg_file)), "discriminator")


def random_init_checkpoint(checkpoint: str | Path, cache_dir: str | Path, seed: int = 1234) -> Path:
    """A Hugging Face discriminator directory holding `checkpoint`'s config at random init
    (BERT initialisation, `seed`); made once per config and seed under `cache_dir`."""
    shape = encoder_shape(checkpoint)
    cfg = hf.from_hf_config(shape)
    out = Path(cache_dir) / f"random-init-{_key(shape, seed)}"
    if not (out / "model.safetensors").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Discriminator(cfg)
            init_weights(model, cfg.initializer_range)
        hf.save_hf(model, out, "discriminator")
    return out


def cache_key(checkpoint: str | Path, task: str, recipe: dict[str, Any], data_dir: str | Path) -> str:
    """Key of one random-init result: the model shape, the task, the recipe and the data."""
    return _key(encoder_shape(checkpoint), task, recipe, str(Path(data_dir).resolve()) if not str(data_dir).startswith("hf:") else data_dir)


def majority_metrics(task: Any, train: list[Any], dev: list[Any]) -> dict[str, float]:
    """The task's metrics for a constant prediction fitted on the training labels."""
    labels = [e.label for e in train if e.label is not None]
    if not labels:
        raise DataError(f"{task.name}: no labelled training examples for the majority baseline")
    if task.kind == "regression":
        constant: float | int = float(statistics.fmean(labels))
    else:
        constant = Counter(labels).most_common(1)[0][0]
    return task.score(dev, {task.example_id(e): constant for e in dev})


def _seed_scores(result: dict[str, Any], task: str) -> dict[str, float]:
    seeds = result.get("seeds") or {}
    return {str(s): metrics.task_score(task, m) for s, m in seeds.items()}


def compare(pretrained: dict[str, dict[str, Any]], random_init: dict[str, dict[str, Any]],
            majority: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per task and for the GLUE mean: scores of the three, the gain over random init per seed,
    and the verdict. Each input maps task -> {"metrics", "score"[, "seeds"]}; majority maps
    task -> metrics."""
    tasks: dict[str, Any] = {}
    for name, r in pretrained.items():
        if name not in metrics.GLUE_SCORE_METRICS:
            continue
        row: dict[str, Any] = {"pretrained": r["score"]}
        if name in random_init:
            row["random_init"] = random_init[name]["score"]
            row["gain"] = r["score"] - random_init[name]["score"]
            a, b = _seed_scores(r, name), _seed_scores(random_init[name], name)
            row["seed_gains"] = {s: a[s] - b[s] for s in a if s in b}
        if name in majority:
            row["majority"] = metrics.task_score(name, majority[name])
        tasks[name] = row
    glue_tasks = [n for n in tasks if n != "wnli" and "random_init" in tasks[n]]
    out: dict[str, Any] = {"tasks": tasks}
    if glue_tasks:
        pre = statistics.fmean(tasks[n]["pretrained"] for n in glue_tasks)
        rnd = statistics.fmean(tasks[n]["random_init"] for n in glue_tasks)
        seeds = set.intersection(*(set(tasks[n]["seed_gains"]) for n in glue_tasks))
        seed_gains = {s: statistics.fmean(tasks[n]["seed_gains"][s] for n in glue_tasks) for s in sorted(seeds)}
        maj = [tasks[n]["majority"] for n in glue_tasks if "majority" in tasks[n]]
        out["glue"] = {"tasks": glue_tasks, "pretrained": pre, "random_init": rnd, "gain": pre - rnd,
                       "seed_gains": seed_gains, "majority": statistics.fmean(maj) if len(maj) == len(glue_tasks)
                       else None}
        out["measurable"] = len(seed_gains) >= 2 and min(seed_gains.values()) > 0 and pre - rnd > MEASURABLE_GLUE_GAIN
        out["verdict"] = verdict(out["glue"], out["measurable"])
    return out


def verdict(glue: dict[str, Any], measurable: bool) -> str:
    """One plain sentence about the GLUE gain over random initialisation."""
    gain, seeds = glue["gain"], glue["seed_gains"]
    head = (f"Pre-trained {glue['pretrained']:.1f} vs random init {glue['random_init']:.1f} "
            f"(GLUE mean of {len(glue['tasks'])} tasks, gain {gain:+.1f})")
    if glue.get("majority") is not None:
        head += f"; majority class {glue['majority']:.1f}"
    if len(seeds) < 2:
        return head + ": one fine-tuning seed cannot separate the gain from seed noise (1-2 points per task); use 3 seeds."
    if measurable:
        return head + f": a measurable gain, positive for all {len(seeds)} fine-tuning seeds."
    per_seed = ", ".join(f"{g:+.1f}" for g in seeds.values())
    return head + f": no measurable gain over random initialisation (per-seed gains {per_seed})."
