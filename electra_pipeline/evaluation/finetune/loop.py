"""The training and prediction loop for one seed, task-agnostic behind `tasks.Task`.

Batches are padded to their own longest sequence (dynamic padding); evaluation sorts by length
first so padding stays small. Metrics are read once per log window (the only host syncs
besides evaluation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from electra_pipeline.evaluation import metrics
from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig, autocast, lr_lambda, param_groups
from electra_pipeline.evaluation.finetuned import TaskModel
from electra_pipeline.evaluation.tasks import Feature, Task
from electra_pipeline.tracking import Tracker

BUCKET_BATCHES = 32  # batches per length bucket when training batches are grouped by length


def batches(n: int, size: int, rng: np.random.Generator | None,
            lengths: Sequence[int] | None = None) -> list[np.ndarray]:
    """Index batches: shuffled with `rng`, in order without. With `lengths`, grouped by length
    as Hugging Face's `group_by_length` does: the shuffled order is cut into buckets of
    BUCKET_BATCHES batches, each sorted by length before it is cut into batches, and the batches
    are shuffled again. Padding to the batch's longest then costs little on short-sentence tasks,
    and each batch is still a random draw of similar lengths."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if lengths is None or rng is None:
        return [order[i:i + size] for i in range(0, n, size)]
    span = size * BUCKET_BATCHES
    out: list[np.ndarray] = []
    for start in range(0, n, span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
        out += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return [out[i] for i in rng.permutation(len(out))]


def _forward(model: TaskModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return out if isinstance(out, dict) else {"logits": out}


@torch.no_grad()
def run_model(model: TaskModel, task: Task, features: Sequence[Feature], batch_size: int, pad_id: int,
              device: torch.device, precision: str) -> list[dict[str, np.ndarray]]:
    """Raw outputs per feature (fp32 numpy); batches are length-sorted so padding stays small."""
    model.eval()
    order = np.argsort([len(f) for f in features], kind="stable")
    rows: list[dict[str, np.ndarray] | None] = [None] * len(features)
    for idx in batches(len(order), batch_size, None):
        sel = order[idx]
        batch = {k: v.to(device) for k, v in task.collate([features[i] for i in sel], pad_id, False).items()}
        with autocast(precision, device):
            out = {k: v.float().cpu().numpy() for k, v in _forward(model, batch).items()}
        for j, i in enumerate(sel):
            rows[i] = {k: v[j] for k, v in out.items()}
    return rows  # type: ignore[return-value]


def evaluate_splits(model: TaskModel, task: Task, evals: dict[str, tuple[list, list[Feature]]],
                    cfg: FinetuneConfig, pad_id: int, device: torch.device) -> tuple[dict[str, float], dict[str, dict]]:
    """Metrics over every dev split (suffixed keys, e.g. MNLI's accuracy_mm) and predictions."""
    scores, preds = {}, {}
    for split, (examples, feats) in evals.items():
        outputs = run_model(model, task, feats, cfg.eval_batch_size, pad_id, device, cfg.precision)
        preds[split] = task.predict(examples, feats, outputs)
        suffix = task.eval_splits[split]
        scores.update({f"{k}{suffix}": v for k, v in task.score(examples, preds[split]).items()})
    return scores, preds


def task_score(task: Task, scores: dict[str, float]) -> float:
    """The single number seeds are compared by: GLUE's task score, SQuAD's mean of EM and F1."""
    if task.name in metrics.GLUE_SCORE_METRICS:
        return metrics.task_score(task.name, scores)
    return float(np.mean([scores["exact_match"], scores["f1"]]))


def train_seed(task: Task, model: TaskModel, train_feats: list[Feature], evals: dict[str, tuple[list, list[Feature]]],
               cfg: FinetuneConfig, seed: int, pad_id: int, device: torch.device, tracker: Tracker,
               progress: bool) -> tuple[dict[str, float], dict[str, dict]]:
    """Train one seed in place; returns dev metrics and predictions of the kept weights."""
    steps_per_epoch = math.ceil(len(train_feats) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup_fraction * total)) if cfg.warmup_fraction > 0 else 0
    groups = param_groups(model, cfg.lr, cfg.layer_decay, cfg.layer_decay_form, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup, total))
    rng = np.random.default_rng(seed)
    lengths = [len(f) for f in train_feats]
    step, best, kept = 0, -math.inf, None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{task.name} seed {seed}", unit="step", dynamic_ncols=True, leave=False)
    loss_sum, n_loss, t0 = torch.zeros((), device=device), 0, time.perf_counter()
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            for idx in batches(len(train_feats), cfg.batch_size, rng, lengths):
                batch = {k: v.to(device) for k, v in task.collate([train_feats[i] for i in idx], pad_id, True).items()}
                with autocast(cfg.precision, device):
                    loss = task.loss(_forward(model, batch), batch)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_sum, n_loss = loss_sum + loss.detach().float(), n_loss + 1
                if bar is not None:
                    bar.update(1)
                if step % cfg.log_every == 0 or step == total:
                    mean_loss = float(loss_sum) / n_loss  # the host sync
                    tracker.log_metrics({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[-1],
                                         "throughput/steps_per_s": n_loss / (time.perf_counter() - t0),
                                         "progress": step / total}, step=step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}")
                    loss_sum, n_loss, t0 = torch.zeros((), device=device), 0, time.perf_counter()
            if cfg.eval_every_epoch or epoch == cfg.epochs:
                scores, preds = evaluate_splits(model, task, evals, cfg, pad_id, device)
                tracker.log_metrics({f"dev/{k}": v for k, v in scores.items()}, step=epoch)
                score = task_score(task, scores)
                if cfg.select == "last" and epoch == cfg.epochs:
                    kept = (scores, preds, None)
                elif cfg.select == "best" and (kept is None or score > best):
                    best = score
                    kept = (scores, preds, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    finally:
        if bar is not None:
            bar.close()
    scores, preds, state = kept
    if state is not None:
        model.load_state_dict(state)
    return scores, preds
