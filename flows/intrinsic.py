"""Stage 4b, intrinsic evaluation: did pre-training learn context? Seconds, right after pre-training.

Held-out replaced-token detection (unigram and generator replacements) and masked-token
accuracy, each next to the same config at random initialisation and a context-free detector
(`electra_pipeline.training.intrinsic`). Written to `intrinsic.json` in the pre-training run directory,
logged under `intrinsic/` in its own MLflow run, and shown in the pipeline report.
"""

from pathlib import Path
from typing import Any

from prefect import flow

from flows.base import Tracking, user_errors
from flows.tracking import sweep_hook


@flow(name="intrinsic", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def intrinsic(
    run_dir: str,
    label: str = "electra",
    max_rows: int = 256,
    snapshot: str = "",
    tracking: Tracking = Tracking(),
) -> dict[str, Any]:
    """Score a pre-training run on its examples' held-out slice.

    Args:
        run_dir: The pre-training run directory (config.json, discriminator/, generator/).
        label: Name of the model in MLflow (electra, mlm).
        max_rows: Held-out rows scored (128 tokens each at the default sequence length).
        snapshot: Score the run's snapshot at this fraction of its budget (snapshots/<fraction>,
            from train.snapshots) instead of its final model; empty: the final model.
        tracking: MLflow store, experiment and parent run.
    """
    from prefect.logging import get_run_logger

    from electra_pipeline.errors import ConfigError, DataError
    from electra_pipeline.training import intrinsic as lib

    with tracking.run(f"intrinsic-{label}", stage="intrinsic", model=label) as run:
        try:
            target = Path(run_dir) / "snapshots" / snapshot if snapshot else Path(run_dir)
            result = lib.run(target, run_dir=run_dir, cfg=lib.IntrinsicConfig(max_rows=max_rows))
        except (DataError, ConfigError) as e:  # nothing to score: say so, keep the pipeline going
            if not any(m in str(e) for m in ("scorable tokens", "no held-out slice", "trains no replaced-token head")):
                raise
            get_run_logger().warning("intrinsic evaluation skipped: %s", e)
            run.set_tags({"skipped": str(e)[:4000]})
            return {"skipped": str(e), "verdict": f"Intrinsic evaluation skipped: {e}", "run_id": run.run_id}
        path = lib.save(result, target)
        result["verdict"] = lib.verdict(result)
        result["table"] = lib.format_table(result)
        run.log_metrics(lib.flat_metrics(result))
        run.log_artifact(Path(path))
        run.set_tags({"verdict": result["verdict"]})
    result["run_id"] = run.run_id
    return result
