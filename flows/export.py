"""Stage 6, export: the fine-tuned model -> verified ONNX, registered in the MLflow Model
Registry with an alias (`champion`) that serving loads as `models:/<name>@<alias>`."""

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.base import Tracking, retry_unless_user_error, user_errors
from flows.tracking import sweep_hook


@task(name="export-onnx", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error)
@user_errors
def export_task(model_dir: str, out_dir: str, optimize: bool, quantize: bool, registered_name: str, alias: str,
                run_id: str, tracking_uri: str, force_alias: bool = False) -> dict[str, Any]:
    """Export, check ONNX Runtime against PyTorch, then log and register under the stage's run.

    Retried once: registering talks to the tracking server over the network."""

    from electra_pipeline.export.onnx import export_onnx
    from electra_pipeline.export.registry import log_to_mlflow

    report = export_onnx(model_dir, out_dir, optimize=optimize, quantize=quantize)
    logged = log_to_mlflow(out_dir, registered_name or None, alias=alias, tracking_uri=tracking_uri, run_id=run_id,
                           force=force_alias)
    return {"onnx_dir": str(Path(out_dir).resolve()), "task": report.task, "kind": report.kind,
            "max_abs_diff": float(report.max_abs_diff), "int8_agreement": report.int8_agreement,
            "registered_name": registered_name or None, "alias": alias if registered_name else None,
            "version": logged.get("version"), "model_uri": logged.get("model_uri") or logged.get("artifact_uri"),
            "alias_moved": logged.get("alias_moved"), "alias_reason": logged.get("alias_reason"),
            "score": logged.get("score")}


@flow(name="export-onnx", on_crashed=[sweep_hook], on_cancellation=[sweep_hook])
@user_errors
def export_model(
    model_dir: str,
    output_dir: str = "outputs/export",
    registered_name: str = "electra-sst2",
    alias: str = "champion",
    optimize: bool = True,
    quantize: bool = False,
    force_alias: bool = False,
    tracking: Tracking = Tracking(),
) -> dict[str, Any]:
    """Export `model_dir` to ONNX in `output_dir` and register it as `registered_name@alias`.

    Args:
        model_dir: A fine-tuned model directory (evaluate flow: <task>/model) or an HF discriminator.
        output_dir: Export directory (model.onnx, tokenizer.json, metadata.json).
        registered_name: MLflow registered model name; empty: log the files without registering.
        alias: Registry alias moved to the new version when its dev score beats the current holder's (serving
            loads models:/<name>@<alias>); every version also gets `challenger`.
        optimize: Write attention as ONNX Runtime's fused Attention op (faster; ORT-only file).
        quantize: Also write a dynamic int8 model.
        force_alias: Move the alias to the new version whatever its score.
        tracking: MLflow store, experiment and parent run.
    """
    with tracking.run("export", stage="export") as run:
        run.log_params({"model_dir": model_dir, "optimize": optimize, "quantize": quantize,
                        "registered_name": registered_name, "alias": alias})
        result = export_task(model_dir, output_dir, optimize, quantize, registered_name, alias, run.run_id,
                             tracking.uri(), force_alias)
        if result.get("alias_reason"):
            from prefect.logging import get_run_logger

            get_run_logger().info("@%s %s: %s", alias, "moved" if result["alias_moved"] else "kept",
                                  result["alias_reason"])
    result["run_id"] = run.run_id
    return result
