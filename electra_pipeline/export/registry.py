"""An ONNX export in MLflow: logged as run artifacts, registered as a pyfunc model under an
alias, and downloaded back to a local export directory for serving.

    log_to_mlflow(export_dir, "electra-sst2")     -> models:/electra-sst2@challenger, and @champion when better
    download_model("models:/electra-sst2@champion") -> a directory `inference.Predictor` loads

The alias means best: every new version gets `challenger`; `champion` (or the alias asked for) moves
to it only when its dev score (the mean of the task's metrics saved with the fine-tuned model, the
GLUE convention) beats the current holder's; a tie or a missing score keeps the holder, unless
`force`. Each version carries a description, its score and metrics as tags.

The BentoML service imports this module (for ELECTRA_MODEL_URI) and ships without torch: nothing
heavy is imported at module level, mlflow only inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from electra_pipeline.errors import DataError

CHALLENGER = "challenger"  # every new version; MLflow reserves "latest" (models:/<name>/latest is built in)


def log_to_mlflow(export_dir: str | Path, registered_name: str | None = None, *, alias: str = "champion",
                  tracking_uri: str | None = None, run_id: str | None = None, force: bool = False) -> dict[str, Any]:
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
            return _log(mlflow, d, meta, run.info.run_id, registered_name, alias, force)
        finally:
            if own:
                mlflow.end_run()
    finally:
        mlflow.set_tracking_uri(previous_uri)


def dev_score(meta: dict[str, Any]) -> float | None:
    """The export's dev score: the mean of its task metrics (GLUE's per-task score), or None."""
    values = [float(v) for v in (meta.get("metrics") or {}).values() if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def _description(meta: dict[str, Any], score: float | None) -> str:
    m = meta.get("model") or {}
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (meta.get("metrics") or {}).items())
    return (f"{meta.get('task')} ({meta.get('kind')}): ELECTRA {m.get('num_layers')} layers x {m.get('hidden_size')}, "
            f"{m.get('vocab_size')}-token vocabulary, ONNX (opset {meta.get('opset')}, max |ONNX - PyTorch| "
            f"{meta.get('max_abs_diff', float('nan')):.2g}). Dev: {metrics or 'no metrics recorded'}"
            + (f"; score {score:.4g}." if score is not None else "."))


def promote(client: Any, name: str, alias: str, version: str, score: float | None, force: bool = False,
            evidence: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Point `alias` at `version` when it earned it (`earned`: above the majority class and its
    random-init twin) and its score beats the current holder's; (moved, why)."""
    from mlflow.exceptions import MlflowException

    from electra_pipeline.evaluation.baselines import earned

    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        holder = None
    ok, gate = earned(evidence)
    if force:
        moved, why = True, "forced" + ("" if ok else f" ({gate})")
    elif not ok:
        moved, why = False, gate + (f"; @{alias} stays on version {holder.version}" if holder is not None else
                                    f"; no version holds @{alias}")
    elif holder is None:
        moved, why = True, f"{gate}; no version held @{alias}"
    elif score is None:
        moved, why = False, f"version {version} has no dev score; @{alias} stays on version {holder.version}"
    elif "score" not in holder.tags:
        moved, why = True, f"{gate}; version {holder.version} @{alias} had no dev score"
    elif score > float(holder.tags["score"]):
        moved, why = True, (f"{gate}; dev score {score:.4g} beats version {holder.version}'s "
                            f"{float(holder.tags['score']):.4g}")
    else:
        moved, why = False, (f"dev score {score:.4g} does not beat version {holder.version}'s "
                             f"{float(holder.tags['score']):.4g}; @{alias} stays")
    if moved:
        client.set_registered_model_alias(name, alias, version)
    return moved, why


def _log(mlflow: Any, d: Path, meta: dict[str, Any], run_id: str, registered_name: str | None,
         alias: str, force: bool) -> dict[str, Any]:
    mlflow.log_artifacts(str(d), artifact_path="onnx")
    mlflow.log_params({f"export.{k}": meta.get(k) for k in ("task", "kind", "exporter", "opset", "optimized",
                                                            "max_seq_length")})
    mlflow.log_metrics({f"export/{k}": float(meta[k]) for k in ("max_abs_diff", "int8_max_abs_diff",
                                                                "int8_agreement") if meta.get(k) is not None})
    result: dict[str, Any] = {"run_id": run_id, "artifact_uri": f"runs:/{run_id}/onnx"}
    if registered_name:
        # models from code: MLflow runs mlflow_model.py at load time instead of unpickling; the input
        # example gives the signature's inputs (predict() takes the example's type, TypeFromExample)
        from mlflow.models import infer_signature

        example = input_example(meta)
        info = mlflow.pyfunc.log_model(name="onnx_model", python_model=str(Path(__file__).with_name("mlflow_model.py")),
                                       artifacts={"export": str(d)}, registered_model_name=registered_name,
                                       input_example=example, signature=infer_signature(example),
                                       pip_requirements=["onnxruntime", "tokenizers", "numpy"])
        score = dev_score(meta)
        dev = {f"dev/{k}": float(v) for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        mlflow.log_metrics(dev | ({"dev/score": score} if score is not None else {}), model_id=info.model_id)
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        ev = meta.get("evaluation") or {}
        description = _description(meta, score) + _evidence_link(client, ev.get("run_id"))
        client.update_model_version(registered_name, version, description=description)
        tags = {"task": meta.get("task"), "kind": meta.get("kind"), "run_id": run_id,
                **({"evaluation_run_id": ev["run_id"]} if ev.get("run_id") else {}),
                **{f"baseline.{k}": f"{float(ev[k]):.6g}" for k in ("majority", "random_init", "bow")
                   if ev.get(k) is not None},
                **({"gain_ci": "[{low:.4g}, {high:.4g}]".format(**ev["gain"])} if ev.get("gain") else {}),
                **({"score": f"{score:.6g}"} if score is not None else {}),
                **{f"dev.{k}": f"{v:.6g}" for k, v in (meta.get("metrics") or {}).items()}}
        for k, v in tags.items():
            client.set_model_version_tag(registered_name, version, k, str(v))
        client.set_registered_model_alias(registered_name, CHALLENGER, version)
        evidence = meta.get("evaluation")
        moved, why = (True, "") if alias == CHALLENGER else promote(client, registered_name, alias, version, score,
                                                                    force, evidence)
        if why:
            client.set_model_version_tag(registered_name, version, "alias_reason", why[:4000])
            client.update_model_version(registered_name, version, description=description
                                        + f" {'@' + alias if moved else '@' + CHALLENGER + ' only'}: {why}.")
        uri_alias = alias if moved else CHALLENGER
        result.update(model_uri=f"models:/{registered_name}@{uri_alias}", version=version, alias=alias,
                      alias_moved=moved, alias_reason=why, score=score)
    return result


def input_example(meta: dict[str, Any]) -> Any:
    """Requests of the export's kind, as `predict` takes them: a list of texts, or a table of text
    pairs (text_a, text_b) or of (question, context). MLflow stores it with the model and derives
    the signature's inputs from it."""
    import pandas as pd

    from electra_pipeline.evaluation.tasks.glue import SPECS

    if meta.get("kind") == "qa":
        return pd.DataFrame({"question": ["What does the discriminator predict?"],
                             "context": ["The discriminator predicts which tokens the generator replaced."]})
    spec = SPECS.get(str(meta.get("task")))
    if spec is not None and spec.text_b is not None:
        return pd.DataFrame({"text_a": ["A man is playing a guitar.", "The cat sat on the mat."],
                             "text_b": ["A person plays an instrument.", "The stock market fell sharply."]})
    return ["a gripping, beautifully acted film", "a dull and lifeless script"]


def _evidence_link(client: Any, run_id: str | None) -> str:
    """` Evidence: <link to the evaluation run>` for a version's description, or '' when the run is
    not in this store (a relative UI route: it works wherever the MLflow UI serves the store)."""
    from mlflow.exceptions import MlflowException

    from electra_pipeline.tracking import run_path

    if not run_id:
        return ""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return ""
    return (f" Evidence: [evaluation run `{run.info.run_name}`]({run_path(run.info.experiment_id, run_id)}) "
            "(scores, baselines and the gain's interval).")


def check_model_uri(uri: str) -> dict[str, str] | None:
    """A `models:/<name>@<alias>` or `models:/<name>[/<version>]` URI names a version that exists
    in the current registry; else one DataError line (what a server checks before it starts
    workers). Returns that version as {"name", "version", "run_id", "uri"}, `uri` pinned to the
    version (`models:/<name>/<version>`), so that what is checked is what is loaded even if the
    alias moves meanwhile; None for other URIs (`runs:/...`)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not uri.startswith("models:/"):
        return None
    rest = uri[len("models:/"):]
    client = mlflow.MlflowClient()
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = rest.partition("/")
            if version and version != "latest":
                mv = client.get_model_version(name, version)
            else:
                client.get_registered_model(name)
                mv = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), default=None)
                if mv is None:
                    raise DataError(f"{uri}: registered model {name!r} has no versions")
    except MlflowException as e:
        raise DataError(f"{uri}: not in the MLflow registry at {mlflow.get_tracking_uri()} "
                        f"({str(e).splitlines()[0][:200]})") from None
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id or "",
            "uri": f"models:/{mv.name}/{mv.version}"}


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
