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


def task_table(summaries: Summaries) -> str:
    """Markdown: one row per task, one column per model, the GLUE score row last."""
    labels = list(summaries)
    lines = ["| task | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for task in _task_order(summaries):
        lines.append(f"| {task} | " + " | ".join(_cell(summaries[lb], task) for lb in labels) + " |")
    if any(s.get("glue_score") is not None for s in summaries.values()):
        cells = [f"**{s['glue_score']:.1f}**" if s.get("glue_score") is not None else "-" for s in summaries.values()]
        lines.append("| **GLUE** (mean task score, WNLI excluded) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text_table(summaries: Summaries) -> str:
    """The same table for a terminal: plain aligned columns."""
    labels = list(summaries)
    rows = [["task", *labels]]
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
        rows.append(row)
    if any(s.get("glue_score") is not None for s in summaries.values()):
        rows.append(["GLUE", *[f"{s['glue_score']:.1f}" if s.get("glue_score") is not None else "-"
                               for s in summaries.values()]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def glue_chart(summaries: Summaries, out: Path) -> Path | None:
    """Grouped bars: task score per task, one colour per model."""
    tasks = [t for t in _task_order(summaries) if any(t in s.get("tasks", {}) for s in summaries.values())]
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summaries)
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(tasks) * len(labels) + 1), 3.2))
    for i, lb in enumerate(labels):
        scores = [summaries[lb].get("tasks", {}).get(t, {}).get("score", 0.0) for t in tasks]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(tasks))]
        bars = ax.bar(xs, scores, width, label=lb)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("dev score")
    ax.set_ylim(0, 100)
    ax.set_title("GLUE / SQuAD dev scores")
    if len(labels) > 1:
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def loss_chart(histories: dict[str, Path], out: Path) -> Path | None:
    """Pre-training curves of several runs on shared axes (metrics.jsonl of each run dir)."""
    import json

    series = {}
    for label, metrics_file in histories.items():
        if metrics_file.is_file():
            series[label] = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    keys = [k for k in ("loss/gen", "loss/disc", "loss/total") if any(k in (rows[0] if rows else {})
                                                                       for rows in series.values())]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for label, rows in series.items():
            pts = [(r["step"], r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), label=label)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
