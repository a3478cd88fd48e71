"""Results as people read them: a Markdown table (terminal, Prefect artifact, MLflow) and a
GLUE bar chart PNG, one column / bar group per model (ELECTRA, the MLM baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# summaries: {label: {"tasks": {task: {"score", "metrics"}}, "failed": {task: message}, "glue_score"}}
Summaries = dict[str, dict[str, Any]]


def _task_order(summaries: Summaries) -> list[str]:
    names: list[str] = []
    for s in summaries.values():
        for n in [*s.get("tasks", {}), *s.get("failed", {})]:
            if n not in names:
                names.append(n)
    return names


def _cell(summary: dict[str, Any], task: str) -> str:
    if task in summary.get("tasks", {}):
        r = summary["tasks"][task]
        shown = ", ".join(f"{k} {v:.1f}" for k, v in r["metrics"].items() if not k.endswith(("thresh", "threshold",
                                                                                               "total")))
        return f"**{r['score']:.1f}** ({shown})"
    if task in summary.get("failed", {}):
        msg = " ".join(str(summary["failed"][task]).split())
        return f"failed: {msg[:120]}"
    return "-"


def _baselines(summaries: Summaries) -> dict[str, Any] | None:
    """The random-init and majority baselines (one config: the same for every objective)."""
    return next((s["baselines"] for s in summaries.values() if s.get("baselines")), None)


def _baseline_scores(base: dict[str, Any], task: str) -> tuple[float | None, float | None, float | None]:
    row = base["comparison"]["tasks"].get(task, {})
    return row.get("random_init"), row.get("majority"), row.get("bow")


def _gain_cell(summary: dict[str, Any], task: str | None) -> str:
    """`+1.2 [-0.8, +3.1]`: the gain over random init and its 95% interval (task, or GLUE for None)."""
    from electra_pipeline.evaluation.stats import Interval

    comp = (summary.get("baselines") or {}).get("comparison") or {}
    row = comp.get("glue") if task is None else comp.get("tasks", {}).get(task)
    return Interval(**row["gain_ci"]).text() if row and row.get("gain_ci") else "-"


BASELINE_COLUMNS = ["random init", "majority class", "bag-of-words"]


def task_table(summaries: Summaries) -> str:
    """Markdown: one row per task, one column per model, then the random-init and majority-class
    baselines when evaluated; the GLUE score row, the gain over random init, and the verdicts."""
    labels = list(summaries)
    base = _baselines(summaries)
    extra = BASELINE_COLUMNS + [f"{lb}: gain over random init (95% CI)" for lb in labels] if base else []
    lines = ["| task | " + " | ".join(labels + extra) + " |", "|---|" + "---|" * (len(labels) + len(extra))]
    for task in _task_order(summaries):
        cells = [_cell(summaries[lb], task) for lb in labels]
        if base:
            cells += [f"{v:.1f}" if v is not None else "-" for v in _baseline_scores(base, task)]
            cells += [_gain_cell(summaries[lb], task) for lb in labels]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if any(s.get("glue_score") is not None for s in summaries.values()):
        cells = [f"**{s['glue_score']:.1f}**" if s.get("glue_score") is not None else "-" for s in summaries.values()]
        glue = (base or {}).get("comparison", {}).get("glue")
        if base:
            cells += [f"{glue[k]:.1f}" if glue and glue.get(k) is not None else "-"
                      for k in ("random_init", "majority", "bow")]
            cells += [_gain_cell(summaries[lb], None) for lb in labels]
        lines.append("| **GLUE** (mean task score, WNLI excluded) | " + " | ".join(cells) + " |")
    sentences = []
    for lb, s in summaries.items():
        comp = (s.get("baselines") or {}).get("comparison") or {}
        if "glue" in comp:
            sentences.append(f"**{lb}**: {comp['verdict']}")
    return "\n".join(lines) + ("\n\n" + "\n\n".join(sentences) if sentences else "")


def text_table(summaries: Summaries) -> str:
    """The same table for a terminal: plain aligned columns, then the verdicts."""
    labels = list(summaries)
    base = _baselines(summaries)
    rows = [["task", *labels, *(["random init", "majority", "bag-of-words"] + [f"{lb} gain (95% CI)" for lb in labels]
                                if base else [])]]
    for task in _task_order(summaries):
        row = [task]
        for lb in labels:
            s = summaries[lb]
            if task in s.get("tasks", {}):
                row.append(f"{s['tasks'][task]['score']:.1f}")
            elif task in s.get("failed", {}):
                row.append("failed")
            else:
                row.append("-")
        if base:
            row += [f"{v:.1f}" if v is not None else "-" for v in _baseline_scores(base, task)]
            row += [_gain_cell(summaries[lb], task) for lb in labels]
        rows.append(row)
    if any(s.get("glue_score") is not None for s in summaries.values()):
        row = ["GLUE", *[f"{s['glue_score']:.1f}" if s.get("glue_score") is not None else "-"
                         for s in summaries.values()]]
        if base:
            glue = base["comparison"].get("glue") or {}
            row += [f"{glue[k]:.1f}" if glue.get(k) is not None else "-" for k in ("random_init", "majority", "bow")]
            row += [_gain_cell(summaries[lb], None) for lb in labels]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    verdicts = [f"{lb}: {s['baselines']['comparison']['verdict']}" for lb, s in summaries.items()
                if (s.get("baselines") or {}).get("comparison", {}).get("verdict")]
    return text + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def glue_chart(summaries: Summaries, out: Path) -> Path | None:
    """Grouped bars: task score per task, one colour per model."""
    tasks = [t for t in _task_order(summaries) if any(t in s.get("tasks", {}) for s in summaries.values())]
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[float]] = {lb: [summaries[lb].get("tasks", {}).get(t, {}).get("score", float("nan"))
                                           for t in tasks] for lb in summaries}
    base = _baselines(summaries)
    if base:
        rows = [_baseline_scores(base, t) for t in tasks]
        for i, name in enumerate(BASELINE_COLUMNS):
            series[name] = [r[i] if r[i] is not None else float("nan") for r in rows]
    colors = {"random init": "#9e9e9e", "majority class": "#d9d9d9", "bag-of-words": "#f2c14e"}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.7 * len(tasks) * len(series) + 2)), 4.0))
    for i, (lb, scores) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(tasks))]
        bars = ax.bar(xs, scores, width, label=lb, color=colors.get(lb), edgecolor="#555555", linewidth=0.5)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("dev score (task metric, %)")
    low = min([0.0] + [v for scores in series.values() for v in scores if v == v])
    ax.set_ylim(low - 5 if low < 0 else 0, 100)  # CoLA's MCC and STS-B's correlations can be negative
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title("Fine-tuned dev scores" + (" and their baselines" if base else ""))
    if len(series) > 1:  # below the axes: inside, it covers the tallest bars' labels
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(series), 5), frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def probe_chart(result: dict[str, Any], out: Path) -> Path:
    """Grouped bars of the probe scores per task (the encoder, each baseline), with the encoder's
    gain over random init and its 95% interval under each task's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from electra_pipeline.evaluation.probe import interval, model_name

    tasks = list(result["tasks"])
    labels = list(result["mean"]["scores"])
    colors = {"encoder": "#1f77b4", "compare": "#ff7f0e", "random_init": "#9e9e9e", "majority": "#d9d9d9",
              "bow": "#f2c14e"}
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.5 * len(tasks) * len(labels) + 2)), 4.0))
    for i, lb in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(tasks))]
        bars = ax.bar(xs, [result["tasks"][t]["scores"][lb]["score"] for t in tasks], width,
                      label=model_name(result, lb), color=colors.get(lb), edgecolor="#555555", linewidth=0.5)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(tasks)), [f"{t}\n{interval(result['tasks'][t]['vs']['random_init']).text()}"
                                      for t in tasks], fontsize=8)
    ax.set_ylabel("dev score of a linear probe (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title("Frozen-encoder probes (under each task: gain over random init, 95% CI)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(labels), frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def loss_chart(histories: dict[str, Path], out: Path) -> Path | None:
    """Pre-training curves of several runs (metrics.jsonl of each run dir), each loss on its own
    panel and x = training FLOPs, the axis on which the compared runs are matched (an MLM step
    costs less than an ELECTRA step). The weighted total is left out: it mixes the objectives."""
    import json

    series = {}
    for label, metrics_file in histories.items():
        if metrics_file.is_file():
            series[label] = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    titles = {"loss/gen": "masked-LM loss (ELECTRA: its generator)", "loss/disc": "replaced-token-detection loss",
              "disc/loss_over_prior": "RTD loss / prior (1 = learned nothing)"}
    keys = [k for k in titles if any(k in r for rows in series.values() for r in rows)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for label, rows in series.items():
            pts = [(r["step"] * r.get("perf/flops_per_step", 0.0), r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), label=label, linewidth=1.2)
        if k == "disc/loss_over_prior":
            ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(titles[k], fontsize=11)
        ax.set_xlabel("training FLOPs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
