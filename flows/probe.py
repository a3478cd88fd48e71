"""Stage 4c, frozen-encoder probes: what the encoder's features hold, in seconds, without
fine-tuning (`electra_pipeline.evaluation.probe`).

Each task's linear probe stands beside the random-init twin, bag-of-words and the majority
class, with paired bootstrap 95% intervals of the gains. Written to `probe.json` / `probe.md`
in the pre-training run directory with `probe.png` (the scores as bars, each task's gain under
its name), logged under `probe/` in its own MLflow run, and shown at the top of the pipeline
report.
"""

from pathlib import Path
from typing import Any

from prefect import flow

from flows.base import SAMPLE, Tracking, data_path, user_errors
from flows.report import probe_chart
from flows.tracking import sweep_hook


@flow(name="probe", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def probe(
    run_dir: str,
    glue_dir: str = SAMPLE,
    tasks: list[str] | None = None,
    compare: str = "",
    compare_label: str = "mlm",
    max_train_examples: int | None = 20000,
    label: str = "electra",
    tracking: Tracking = Tracking(),
) -> dict[str, Any]:
    """Probe a pre-trained encoder's frozen features on GLUE tasks, next to its baselines.

    Args:
        run_dir: A pre-training run directory (discriminator/ or the MLM run's generator/) or a Hugging Face
            ELECTRA directory with its tokenizer.json.
        glue_dir: GLUE root (<dir>/SST-2/train.tsv ...); `sample` is the shipped slices.
        tasks: GLUE tasks; empty: sst2 cola mrpc stsb rte, and qnli mnli where their train files exist.
        compare: A second encoder probed the same way (e.g. the MLM arm's run directory); empty: none.
        compare_label: Its name in tables and MLflow.
        max_train_examples: A fixed random subset of each training set (20,000: SST-2's 67k cost minutes
            and add little to a linear probe); empty: all of it.
        label: Name of the probed model in MLflow (electra, mlm).
        tracking: MLflow store, experiment and parent run.
    """
    from prefect.logging import get_run_logger

    from electra_pipeline.evaluation import probe as lib

    log = get_run_logger()
    cfg = lib.ProbeConfig(tasks=tasks or None, max_train_examples=max_train_examples)
    data = data_path(glue_dir, "glue")
    with tracking.run(f"probe-{label}", stage="probe", model=label) as run:
        run.log_params({"encoder": run_dir, "glue_dir": data, "compare": compare or "none",
                        **{f"probe.{k}": v for k, v in cfg.__dict__.items()}})
        result = lib.run(run_dir, data, cfg, compare=compare or None, compare_label=compare_label,
                         random_init_dir=Path(run_dir) / "probe" / "random-init", progress=log.info)
        path = lib.save(result, Path(run_dir) / "probe")
        result.pop("_predictions")  # arrays, saved beside probe.json; the flow returns JSON-able data
        chart = probe_chart(result, path.with_suffix(".png"))
        result["table"] = lib.format_table(result)
        result["verdict"] = lib.verdict(result)
        run.log_metrics(lib.flat_metrics(result))
        for f in (path, path.with_suffix(".md"), chart):
            run.log_artifact(f)
        run.set_tags({"verdict": " ".join(result["verdict"])[:4000]})
    result["run_id"] = run.run_id
    return result
