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


def report_markdown(p: Any, result: Any) -> str:
    """A pipeline run's Prefect artifact and report.md (`p`: its PipelineParams, `result`: its
    PipelineResult): results, stage times, the MLflow link, the model."""
    from flows.tracking import is_server

    local = not is_server(result.tracking_uri)
    lines = [f"# ELECTRA pipeline ({p.preset} preset)", "",
             f"MLflow: [parent run]({result.mlflow_url}) in experiment `{p.experiment}` "
             f"([runs compared]({result.mlflow_runs_url}))"
             + (f"; open the UI with `{result.mlflow_ui}`." if local else "."), ""]
    if p.init_from:
        lines += [f"Pre-training continued from `{p.init_from}` (its sizes and vocabulary); the held-out figures "
                  "below compare the result with random initialisation of the same config.", ""]
    if result.intrinsic:
        lines += ["## What pre-training learned (held-out text)", "",
                  "Replaced-token detection on held-out text: with unigram replacements token identity is worth "
                  "nothing, so only context separates replaced from original (0.5 = chance).", ""]
        for objective, r in result.intrinsic.items():
            if "skipped" in r:
                lines += [f"**{objective}**: {r['verdict']}", ""]
                continue
            lines += [f"**{objective}** ({r['heldout']['rows']} rows, {r['heldout']['tokens']:,} tokens):", "",
                      r["table"], "", r["verdict"], ""]
    if result.probes:
        lines += ["## What the encoder's frozen features hold (linear probes)", "",
                  "A linear model on the frozen encoder's mean-pooled or [CLS] states (layer and regularisation "
                  "chosen on a split of the training data), scored on dev next to the same config at random "
                  "initialisation, a bag-of-words model on the same examples and the majority class. Intervals: "
                  "paired bootstrap over dev examples, 95%.", ""]
        for objective, r in result.probes.items():
            lines += [f"**{objective}**:", "", r["table"], "", *[f"- {v}" for v in r["verdict"]], ""]
    lines += ["## Fine-tuned dev scores", "", result.table, "",
              "## Stages", "", "| stage | status | seconds | output |", "|---|---|---|---|"]
    for s in result.stages:
        lines.append(f"| {s.stage} | {'cached' if s.cached else 'ran'} | {s.seconds:.1f} | `{s.path}` |")
    if result.exported:
        e = result.exported
        where = f"`{e['model_uri']}` (version {e['version']})" if e.get("version") else f"`{e['model_uri']}`"
        lines += ["", "## Exported model", "", f"ONNX in `{e['onnx_dir']}`, registered as {where}; "
                  f"max |ONNX - PyTorch| = {e['max_abs_diff']:.2g}."]
        if e.get("alias_reason"):
            lines += ["", f"Alias `@{e['alias']}` {'moved to this version' if e['alias_moved'] else 'kept'}: "
                          f"{e['alias_reason']}."]
        if e.get("version"):
            lines += ["", f"Serve it: `ELECTRA_MODEL_URI={e['model_uri']} MLFLOW_TRACKING_URI={result.tracking_uri} "
                          "bentoml serve serving.service:ElectraService`"]
    return "\n".join(lines) + "\n"


def parent_metrics(result: Any) -> dict[str, float]:
    """The parent run's metrics, each under its objective (`electra/...`): held-out detection, the
    probes with their baselines, and every evaluated task's score, baselines and gain with its CI,
    under the names the stage runs use."""
    from electra_pipeline.evaluation import probe as probe_lib
    from electra_pipeline.training import intrinsic as intrinsic_lib
    from flows.evaluate import evaluation_metrics

    parent = {f"{o}/glue_score": s["glue_score"] for o, s in result.summaries.items() if s.get("glue_score") is not None}
    for o, s in result.summaries.items():
        parent |= {f"{o}/{k}": v for k, v in evaluation_metrics(s).items() if k != "glue/score"}
    for o, r in result.intrinsic.items():
        if "skipped" not in r:
            parent |= {f"{o}/{k}": v for k, v in intrinsic_lib.flat_metrics(r).items()}
    for o, r in result.probes.items():
        parent |= {f"{o}/{k}": v for k, v in probe_lib.flat_metrics(r).items()}
    return parent


HEADLINE = ("{task}/score", "{task}/score_random", "{task}/score_majority", "{task}/gain", "{task}/gain_low",
            "{task}/gain_high", "probe/mean/encoder", "probe/mean/random_init", "probe/mean/bow", "probe/mean/majority",
            "intrinsic/unigram/auc", "intrinsic/unigram/auc_random")


def headline_columns(metrics: dict[str, float], objectives: list[str], task: str) -> list[str]:
    """The parent-run metrics the runs list shows side by side: per objective, the served task's
    score, baselines and gain with its CI, the probe mean and its baselines, and held-out ROC-AUC."""
    keys = [f"{o}/{h.format(task=task)}" for o in objectives for h in HEADLINE]
    return [k for k in keys if k in metrics]


def run_note(params: Any, result: Any) -> str:
    """The parent run's description (`mlflow.note.content`, Markdown): the report's verdicts and
    where the served model went."""
    lines = [f"**ELECTRA pipeline**, {params.preset} preset, {' vs '.join(params.objectives)}.", ""]
    for o, r in result.intrinsic.items():
        lines.append(f"- **{o}**, held-out text: {r['verdict']}")
    for o, r in result.probes.items():
        lines += [f"- **{o}**, probes: {v}" for v in r["verdict"]]
    for o, s in result.summaries.items():
        comp = (s.get("baselines") or {}).get("comparison") or {}
        if comp.get("verdict"):
            lines.append(f"- **{o}**: {comp['verdict']}")
    e = result.exported
    if e and e.get("version"):
        lines += ["", f"Registered `{e['registered_name']}` version {e['version']} "
                      f"(`{e['model_uri']}`)" + (f": {e['alias_reason']}." if e.get("alias_reason") else ".")]
    return "\n".join(lines)
