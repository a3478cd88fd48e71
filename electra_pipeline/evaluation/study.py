"""The efficiency study's arithmetic and report: ELECTRA against its ablations and successors at
equal compute (Clark et al. 2020, Table 5, and the later objectives in objectives.py).

Every arm trains on the same examples for the same training FLOPs (each gets the steps its own
step cost buys) and is fine-tuned at fractions of that budget (`train.snapshots`), so each arm
is a curve of score against FLOPs. From the curves: the paper's table at the full budget, a plot,
and "x times cheaper": the FLOPs the MLM arm needs to reach ELECTRA's final score, read off its
curve by linear interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from electra_pipeline.errors import ConfigError
from electra_pipeline.modeling import config as config_mod
from electra_pipeline.training import flops

# the paper's compute-matched GLUE dev scores at base size (REFERENCE.md), for the ordering
PAPER_TABLE5 = {"mlm": 82.2, "replace_mlm": 82.4, "electra_15": 82.4, "all_tokens_mlm": 84.3, "electra": 85.0}


def check_arms(configs: dict[str, config_mod.PretrainConfig]) -> dict[str, int]:
    """Steps each arm's budget buys, {objective: steps}; a budget too small for one step of some
    arm is an error naming it, before any arm starts."""
    steps = {}
    for objective, cfg in configs.items():
        t = cfg.train
        per_step = flops.train_step_flops(cfg.model, t).total
        if t.budget_flops is not None:
            n = int(t.budget_flops // per_step)
            if n < 1:
                raise ConfigError(f"train.budget_flops: {t.budget_flops:.3g} is less than one {objective} step "
                                  f"({per_step:.3g} FLOPs)")
            steps[objective] = min(n, t.max_steps)
        else:
            steps[objective] = t.max_steps
    return steps


@dataclass
class Point:
    """One fine-tuned checkpoint of one arm."""

    fraction: float  # of the arm's budget
    step: int
    train_flops: float
    glue_score: float | None
    tasks: dict[str, float] = field(default_factory=dict)  # task -> score
    auc: float | None = None  # held-out replaced-token detection (unigram replacements), RTD arms only


def flops_to_reach(curve: Sequence[Point], target: float) -> float | None:
    """The training FLOPs at which the piecewise-linear curve (points in FLOPs order, starting
    from its first point) first reaches `target`; None when it never does."""
    pts = [(p.train_flops, p.glue_score) for p in sorted(curve, key=lambda p: p.train_flops)
           if p.glue_score is not None]
    for i, (f, s) in enumerate(pts):
        if s >= target:
            if i == 0:
                return f
            f0, s0 = pts[i - 1]
            return f0 + (target - s0) / (s - s0) * (f - f0)
    return None


def final(curve: Sequence[Point]) -> Point | None:
    return max(curve, key=lambda p: p.fraction) if curve else None


def cheaper(curves: dict[str, list[Point]], reference: str = "electra", baseline: str = "mlm") -> dict[str, Any]:
    """How many times fewer FLOPs `reference` needs than `baseline` for `reference`'s final score."""
    ref, base = final(curves.get(reference, [])), curves.get(baseline, [])
    if ref is None or ref.glue_score is None or not base:
        return {"reference": reference, "baseline": baseline, "baseline_flops": None, "times": None}
    need = flops_to_reach(base, ref.glue_score)
    first = min(p.train_flops for p in base)
    return {"reference": reference, "baseline": baseline, "target": ref.glue_score, "reference_flops": ref.train_flops,
            "baseline_flops": need, "times": need / ref.train_flops if need else None,
            "at_most": need is not None and need == first}  # reached by its first point: earlier is unmeasured


def cheaper_sentence(c: dict[str, Any], reference_learned: bool | None = None) -> str:
    """The "x times cheaper" figure in words; when the reference arm is not measurably above random
    init (`reference_learned` False) the sentence says the figure compares noise."""
    if c.get("target") is None:
        return f"{c['reference']} or {c['baseline']} has no score: no comparison."
    text = _cheaper_text(c)
    if reference_learned is False:
        text += (f" {c['reference']} itself is not measurably above random init, so this compares fine-tuning noise, "
                 "not pre-training efficiency.")
    return text


def _cheaper_text(c: dict[str, Any]) -> str:
    if c["baseline_flops"] is None:
        return (f"{c['baseline']} does not reach {c['reference']}'s final GLUE score ({c['target']:.1f}) within the "
                f"budget ({c['reference_flops']:.3g} FLOPs): more than 1x cheaper, by how much this budget cannot say.")
    if c.get("at_most"):
        return (f"{c['baseline']} already has {c['reference']}'s final GLUE score ({c['target']:.1f}) at its first "
                f"checkpoint ({c['baseline_flops']:.3g} training FLOPs): {c['reference']} is at most {c['times']:.2f}x "
                "cheaper here.")
    return (f"{c['baseline']} reaches {c['reference']}'s final GLUE score ({c['target']:.1f}) at {c['baseline_flops']:.3g} "
            f"training FLOPs: {c['reference']} is {c['times']:.2f}x cheaper.")


def gain_cell(versus: dict[str, Any] | None) -> str:
    """`+1.9` for a GLUE gain over random init, `+1.9 ✓` when it is measurable (baselines.compare)."""
    if not versus or versus.get("gain") is None:
        return "-"
    return f"{versus['gain']:+.1f}" + (" ✓" if versus.get("measurable") else "")


def learned_sentence(versus: dict[str, dict[str, Any]]) -> str:
    """Which arms measurably beat random initialisation at the full budget. `versus` maps each
    objective to {"gain", "seed_gains", "measurable"} (baselines.compare's GLUE figures)."""
    if not versus:
        return "No random-init baseline was fine-tuned: what pre-training bought is not measured."
    rule = "the 95% interval of the GLUE gain over paired fine-tuning seeds above 0, as the pipeline's report rules"
    won = [o for o, v in versus.items() if v.get("measurable")]
    gains = ", ".join(f"{o} {v['gain']:+.1f}" for o, v in sorted(versus.items(), key=lambda kv: -kv[1]["gain"]))
    if won:
        return f"Measurably above random init ({rule}): {', '.join(won)}. Gains: {gains}."
    seeds = min(len(v.get("seed_gains") or {}) for v in versus.values())
    why = (" One fine-tuning seed gives no interval: give 3 or more paired seeds."
           if seeds < 2 else "")
    return f"No arm is measurably above random init at this budget ({rule}). Gains: {gains}.{why}"


def table(curves: dict[str, list[Point]], tasks: Sequence[str], random_init: dict[str, float] | None = None,
          auc: dict[str, float | None] | None = None, versus: dict[str, dict[str, Any]] | None = None) -> str:
    """The paper's table: objective x task at the full budget, GLUE, its gain over random init
    (✓ measurable), held-out AUC, and the paper's base-size figure for the ordering."""
    head = ["objective", *tasks, "GLUE", "vs random init", "held-out AUC", "steps", "paper (base)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"

    order = sorted(curves, key=lambda o: -(final(curves[o]).glue_score or -1e9) if final(curves[o]) else 0)
    for objective in order:
        p = final(curves[objective])
        if p is None:
            continue
        a = (auc or {}).get(objective)
        rows.append(f"| {objective} | " + " | ".join(fmt(p.tasks.get(t)) for t in tasks)
                    + f" | **{fmt(p.glue_score)}** | {gain_cell((versus or {}).get(objective))} | "
                    + f"{'-' if a is None else f'{a:.3f}'} | {p.step:,} | "
                    + f"{PAPER_TABLE5.get(objective, '-')} |")
    if random_init:
        mean = sum(random_init.values()) / len(random_init) if random_init else None
        rows.append("| random init | " + " | ".join(fmt(random_init.get(t)) for t in tasks) + f" | {fmt(mean)} | - | 0.500 | 0 | - |")
    return "\n".join(rows)


def plot(curves: dict[str, list[Point]], out: Path, random_init: float | None = None, title: str = "",
         seeds: int = 1, floors: dict[str, float | None] | None = None) -> Path:
    """GLUE score against pre-training FLOPs, one line per objective (log x), with the random-init
    line and the floors that need no pre-training (`floors`: majority class, bag-of-words); beside
    it, when the RTD arms were scored at their checkpoints, held-out detection AUC against the same
    FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_auc = any(p.auc is not None for c in curves.values() for p in c)
    fig, axes = plt.subplots(1, 2 if with_auc else 1, figsize=(14 if with_auc else 8, 5), dpi=120, squeeze=False)
    colors = {o: f"C{i}" for i, o in enumerate(sorted(curves))}
    ax = axes[0][0]
    for objective, curve in sorted(curves.items()):
        pts = sorted((p.train_flops, p.glue_score) for p in curve if p.glue_score is not None)
        if pts:
            ax.plot([f for f, _ in pts], [s for _, s in pts], marker="o", color=colors[objective],
                    linewidth=2.5 if objective in ("electra", "mlm") else 1.5, label=objective)
    if random_init is not None:
        ax.axhline(random_init, color="grey", linestyle="--", linewidth=1, label="random init")
    styles = {"majority class": ("#9e9e9e", ":"), "bag-of-words": ("#d4a017", "-.")}
    for name, value in (floors or {}).items():
        if value is not None:
            color, style = styles.get(name, ("black", ":"))
            ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=name)
    ax.set_ylabel(f"GLUE score (dev, median of {seeds} seeds)" if seeds > 1 else "GLUE score (dev, one seed)")
    ax.set_title(title or "Quality against pre-training compute")
    if with_auc:
        right = axes[0][1]
        for objective, curve in sorted(curves.items()):
            pts = sorted((p.train_flops, p.auc) for p in curve if p.auc is not None)
            if pts:
                right.plot([f for f, _ in pts], [a for _, a in pts], marker="o", color=colors[objective],
                           linewidth=2.5 if objective == "electra" else 1.5, label=objective)
        right.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="random init / chance")
        right.set_ylabel("held-out replaced-token detection ROC-AUC")
        right.set_title("What the discriminator learned (unigram replacements)")
    for a in axes[0]:
        a.set_xscale("log")
        a.set_xlabel("pre-training FLOPs")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def summary_line(curves: dict[str, list[Point]], budget_flops: float | None) -> str:
    scored = {o: final(c).glue_score for o, c in curves.items() if final(c) and final(c).glue_score is not None}
    best = max(scored, key=scored.get) if scored else "none"
    c = cheaper(curves)

    def fmt(v: float | None) -> str:
        return "none" if v is None else f"{v:.1f}"

    match = "never" if c.get("baseline_flops") is None else f"{c['baseline_flops']:.3g}"
    budget = "preset" if budget_flops is None else f"{budget_flops:.3g}"
    return (f"study objectives={len(curves)} best={best} electra_score={fmt(scored.get('electra'))} "
            f"mlm_score={fmt(scored.get('mlm'))} mlm_flops_to_match={match} budget_flops={budget}")


def ordering_note(curves: dict[str, list[Point]]) -> str:
    """Where this budget's ordering of the paper's five arms differs from the paper's."""
    ours = {o: final(curves[o]).glue_score for o in PAPER_TABLE5 if o in curves and final(curves[o])
            and final(curves[o]).glue_score is not None}
    if len(ours) < 2:
        return "Fewer than two of the paper's arms finished: no ordering to compare."
    mine = sorted(ours, key=lambda o: -ours[o])
    paper = sorted(ours, key=lambda o: -PAPER_TABLE5[o])
    if mine == paper:
        return "The ordering matches the paper's: " + " > ".join(mine) + "."
    return ("The ordering differs from the paper's (" + " > ".join(paper) + "): here " + " > ".join(mine)
            + ". Differences of a point or two are within fine-tuning noise on small dev sets.")
