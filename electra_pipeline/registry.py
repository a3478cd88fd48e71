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


def log_to_mlflow(export_dir: str | Path, registered_name: str | None = None, *, alias: str = "champion",
                  tracking_uri: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Log the export directory as artifacts (`onnx/`) of run `run_id` in `tracking_uri` (default:
    the active run, else a new one, in the current store) and, with a name, register it as a
    pyfunc model and point `alias` at the new version, so a server can load
    `models:/<name>@<alias>`. MLflow's global tracking URI and active run are restored after."""
    import mlflow

    from electra_pipeline.inference import read_metadata

    d = Path(export_dir)
    meta = read_metadata(d)
    previous_uri = mlflow.get_tracking_uri()
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    outer = mlflow.active_run()
    if run_id and outer is not None and outer.info.run_id != run_id:
        raise DataError(f"run_id {run_id}: another MLflow run ({outer.info.run_id}) is active in this process")
    own = outer is None
    try:
        run = (mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=f"export-{meta['task']}")) \
            if own else outer
        try:
            return _log(mlflow, d, meta, run.info.run_id, registered_name, alias)
        finally:
            if own:
                mlflow.end_run()
    finally:
        mlflow.set_tracking_uri(previous_uri)


def _log(mlflow: Any, d: Path, meta: dict[str, Any], run_id: str, registered_name: str | None,
         alias: str) -> dict[str, Any]:
    mlflow.log_artifacts(str(d), artifact_path="onnx")
    mlflow.log_params({f"export.{k}": meta.get(k) for k in ("task", "kind", "exporter", "opset", "optimized",
                                                            "max_seq_length")})
    mlflow.log_metrics({f"export/{k}": float(meta[k]) for k in ("max_abs_diff", "int8_max_abs_diff",
                                                                "int8_agreement") if meta.get(k) is not None})
    result: dict[str, Any] = {"run_id": run_id, "artifact_uri": f"runs:/{run_id}/onnx"}
    if registered_name:
        # models from code: MLflow runs mlflow_model.py at load time instead of unpickling
        info = mlflow.pyfunc.log_model(name="onnx_model", python_model=str(Path(__file__).with_name("mlflow_model.py")),
                                       artifacts={"export": str(d)}, registered_model_name=registered_name,
                                       pip_requirements=["onnxruntime", "tokenizers", "numpy"])
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)
        result.update(model_uri=f"models:/{registered_name}@{alias}", version=version)
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
