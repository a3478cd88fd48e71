"""An ONNX export in MLflow: logged as run artifacts, registered as a pyfunc model under an
alias, and downloaded back to a local export directory for serving.

    log_to_mlflow(export_dir, "electra-sst2")     -> models:/electra-sst2@champion
    download_model("models:/electra-sst2@champion") -> a directory `inference.Predictor` loads

The BentoML service imports this module (for ELECTRA_MODEL_URI) and ships without torch: nothing
heavy is imported at module level, mlflow only inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from electra_pipeline.errors import DataError


def log_to_mlflow(export_dir: str | Path, registered_name: str | None = None, *,
                  alias: str = "champion") -> dict[str, Any]:
    """Log the export directory as artifacts (`onnx/`) of the active run (one is started if
    none is active) and, with a name, register it as a pyfunc model and point `alias` at the
    new version, so a server can load `models:/<name>@<alias>`."""
    import mlflow

    from electra_pipeline.inference import read_metadata

    d = Path(export_dir)
    meta = read_metadata(d)
    own = mlflow.active_run() is None
    run = mlflow.start_run(run_name=f"export-{meta['task']}") if own else mlflow.active_run()
    try:
        mlflow.log_artifacts(str(d), artifact_path="onnx")
        mlflow.log_params({f"export.{k}": meta.get(k) for k in ("task", "kind", "exporter", "opset", "optimized",
                                                                "max_seq_length")})
        mlflow.log_metrics({f"export/{k}": float(meta[k]) for k in ("max_abs_diff", "int8_max_abs_diff",
                                                                    "int8_agreement") if meta.get(k) is not None})
        result: dict[str, Any] = {"run_id": run.info.run_id, "artifact_uri": f"runs:/{run.info.run_id}/onnx"}
        if registered_name:
            # models from code: MLflow runs mlflow_model.py at load time instead of unpickling
            info = mlflow.pyfunc.log_model(name="onnx_model", python_model=str(Path(__file__).with_name("mlflow_model.py")),
                                           artifacts={"export": str(d)}, registered_model_name=registered_name,
                                           pip_requirements=["onnxruntime", "tokenizers", "numpy"])
            version = str(info.registered_model_version)
            mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)
            result.update(model_uri=f"models:/{registered_name}@{alias}", version=version)
    finally:
        if own:
            mlflow.end_run()
    return result


def download_model(uri: str, dst: str | Path | None = None) -> Path:
    """A registered or logged export (`models:/<name>@<alias>`, `runs:/<id>/onnx`) as a local
    export directory (the one holding metadata.json)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
    except (MlflowException, OSError) as e:
        raise DataError(f"{uri}: cannot download from MLflow ({str(e).splitlines()[0]})") from None
    found = sorted(local.rglob("metadata.json"), key=lambda p: len(p.parts))
    if not found:
        raise DataError(f"{uri}: downloaded to {local} but it holds no metadata.json; not an ONNX export")
    return found[0].parent
