"""The one results writer: `results.json` and `results.md` of an evaluation, whether it ran from
`electra evaluate` or from the pipeline's evaluate flow.

results.json:
    label        what was evaluated (an objective, a run name, "random init")
    checkpoint   the encoder directory, or null for random initialisation
    glue_score   mean task score over the GLUE tasks present (WNLI excluded); null when none is
    tasks        {task: {"metrics", "score", "seeds": {seed: metrics}, "model_dir", ...}}
    failed       {task: error message} for tasks that did not finish
    baselines    (when measured) random-init and majority-class results and the comparison
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from electra_pipeline import atomic
from electra_pipeline.evaluation import metrics

RESULTS_JSON, RESULTS_MD = "results.json", "results.md"


def glue_score(tasks: dict[str, dict[str, Any]]) -> float | None:
    """The GLUE mean of the tasks' metrics; None when no GLUE task (or only WNLI) is present."""
    glue = {n: r["metrics"] for n, r in tasks.items() if n in metrics.GLUE_SCORE_METRICS}
    score = metrics.glue_score(glue) if glue else None
    return None if score is None or score != score else score  # NaN: only WNLI ran


def write(out_dir: str | Path, tasks: dict[str, dict[str, Any]], table_md: str, *, label: str,
          checkpoint: str | Path | None, failed: dict[str, str] | None = None,
          baselines: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write results.json and results.md (`table_md`) into `out_dir`, each whole or not at all;
    returns the results.json document."""
    doc: dict[str, Any] = {"label": label, "checkpoint": str(checkpoint) if checkpoint else None,
                           "glue_score": glue_score(tasks), "tasks": tasks, "failed": failed or {}}
    if baselines:
        doc["baselines"] = baselines
    out = Path(out_dir)
    atomic.write_text(out / RESULTS_JSON, json.dumps(doc, indent=2) + "\n")
    atomic.write_text(out / RESULTS_MD, table_md if table_md.endswith("\n") else table_md + "\n")
    return doc
