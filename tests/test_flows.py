"""The pipeline as Prefect flows, against a real local Prefect API and a real MLflow store.

One Prefect test server (prefect_test_harness, its own SQLite database) and one MLflow SQLite
store serve the whole module; the pipeline runs on a tiny slice of the shipped corpus, a
5-step tiny model and one small GLUE task. The first run fills the caches that the later
tests (second run, compare, deployment, failures) rely on, so they are ordered.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TELEMETRY_OFF = {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
STAGE_FLOWS = {"ingest-corpus", "train-tokenizer", "build-examples", "pretrain", "intrinsic", "probe", "evaluate",
               "export-onnx"}


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's working directory: a corpus slice, outputs, the MLflow store."""
    d = tmp_path_factory.mktemp("flows")
    from flows.base import sample_path

    with gzip.open(sample_path("corpus"), "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(1200)]
    (d / "corpus.txt").write_text("".join(lines), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def prefect_api(work: Path) -> Any:
    """A real Prefect API (temporary SQLite database, PREFECT_HOME in tmp) for this module."""
    for k, v in TELEMETRY_OFF.items():
        os.environ.setdefault(k, v)
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = work / "prefect-home"
    home.mkdir()
    with temporary_settings({PREFECT_HOME: str(home)}), prefect_test_harness(server_startup_timeout=None):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def params(work: Path) -> dict[str, Any]:
    """Tiny everything: 1,200 corpus lines, 1,000-token vocabulary, 5 steps, 64 SST-2 examples."""
    return {
        "preset": "tiny",
        "corpus": [str(work / "corpus.txt")],
        "eval_tasks": ["sst2"],
        "objectives": ["electra", "mlm"],
        "max_steps": 5,
        "device": "cpu",
        "output_dir": str(work / "outputs"),
        "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
        "experiment": "flows-test",
        "eval_concurrency": 1,
        "pretrain_config": {"model": {"vocab_size": 1000}},
        "examples_config": {"num_proc": 1},
        "finetune_config": {"seeds": [1], "epochs": 1, "max_train_examples": 64, "max_eval_examples": 64,
                            "batch_size": 16, "predict_test": False},
        "probe_tasks": ["rte"],
    }


@pytest.fixture(scope="module")
def first_run(prefect_api: str, params: dict[str, Any]) -> Any:
    from flows.pipeline import electra_pipeline

    state = electra_pipeline(**params, return_state=True)
    assert state.is_completed(), state.message
    return state


def _mlflow(params: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=params["tracking_uri"])


def _runs(params: dict[str, Any]) -> list[Any]:
    client = _mlflow(params)
    exp = client.get_experiment_by_name(params["experiment"])
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def _child_flow_runs(parent_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, TaskRunFilter, TaskRunFilterFlowRunId

    client = get_client(sync_client=True)
    tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[parent_id])))
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_task_run_id={"any_": [t.id for t in tasks]}))
    return runs


def _flow_name(flow_run: Any) -> str:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True).read_flow(flow_run.flow_id).name


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    return get_client(sync_client=True).read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])))


def _pretrain_dir(output_dir: str, max_steps: int) -> Path | None:
    """The ELECTRA pre-training run directory whose config trains `max_steps` steps."""
    for d in Path(output_dir).glob("pretrain/electra-tiny-*"):
        cfg = d / "config.json"
        if cfg.is_file() and json.loads(cfg.read_text())["train"]["max_steps"] == max_steps:
            return d
    return None


# --- fast: parameters and CLI ------------------------------------------------------------------

def test_cli_params_match_the_flow_signature() -> None:
    """The CLI's model, read from the flow's source, and the UI form Prefect builds from the flow list the
    same parameters, defaults and constraints."""
    from flows.params import PipelineParams
    from flows.pipeline import electra_pipeline

    sig = inspect.signature(electra_pipeline.fn)
    assert list(sig.parameters) == list(PipelineParams.model_fields)
    for name, p in sig.parameters.items():
        assert p.default == PipelineParams.model_fields[name].default, name
    schema = electra_pipeline.parameters.model_dump()["properties"]
    assert schema["preset"]["default"] == "cpu" and "description" in schema["max_steps"]
    for name, prop in schema.items():  # the same help text, read from the same docstring
        assert prop["description"] == PipelineParams.model_fields[name].description, name
    # the same constraints: the UI form and the server reject what the CLI rejects
    model = json.loads(json.dumps(PipelineParams.model_json_schema()["properties"]).replace("#/$defs/", "#/definitions/"))
    drop = {"title", "description", "position", "default"}
    for name, prop in schema.items():
        assert {k: v for k, v in prop.items() if k not in drop} == {k: v for k, v in model[name].items()
                                                                    if k not in drop}, name
    assert schema["max_steps"]["anyOf"][0]["exclusiveMinimum"] == 0


def test_stage_configs_are_typed_forms_generated_from_the_dataclasses() -> None:
    """Each flow's config parameter is generated from its config dataclass: one input per field,
    described by the field's docstring, a nested config as a nested form. The UI sends the whole
    form with untouched fields as null: they keep the preset's values."""
    import dataclasses

    from electra_pipeline.data.corpus.config import CorpusConfig
    from electra_pipeline.data.examples import ExamplesConfig
    from electra_pipeline.data.tokenizer import TokenizerConfig
    from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig
    from electra_pipeline.modeling.config import PretrainConfig, TrainConfig
    from electra_pipeline.modeling.settings import field_docs
    from flows.evaluate import evaluate
    from flows.examples import build_examples
    from flows.ingest import ingest_corpus
    from flows.pipeline import electra_pipeline
    from flows.pretrain import pretrain, pretrain_config
    from flows.study import efficiency_study
    from flows.tokenizer import train_tokenizer

    def form(flow: Any, param: str) -> dict[str, Any]:
        schema = flow.parameters.model_dump()
        ref = schema["properties"][param]["$ref"].rsplit("/", 1)[1]
        return schema["definitions"][ref]["properties"]

    cases = [(ingest_corpus, "config", CorpusConfig), (train_tokenizer, "config", TokenizerConfig),
             (build_examples, "config", ExamplesConfig), (pretrain, "config", PretrainConfig),
             (evaluate, "config", FinetuneConfig), (electra_pipeline, "pretrain_config", PretrainConfig),
             (electra_pipeline, "finetune_config", FinetuneConfig), (efficiency_study, "pretrain_config", PretrainConfig)]
    for flow, param, cls in cases:
        props, docs = form(flow, param), field_docs(cls)
        assert set(props) == {f.name for f in dataclasses.fields(cls) if f.init}, (flow.name, param)
        for name, prop in props.items():
            assert prop["description"] == docs[name] and prop["description"], (flow.name, param, name)
    schema = electra_pipeline.parameters.model_dump()
    assert schema["definitions"]["PretrainConfigOverrides"]["properties"]["train"]["$ref"].endswith(
        "TrainConfigOverrides")
    assert set(schema["definitions"]["TrainConfigOverrides"]["properties"]) == set(field_docs(TrainConfig))
    # the whole form as the UI sends it, null everywhere but the one field set, validated as the
    # server validates a flow run's parameters
    ui = json.loads(json.dumps(schema["properties"]["pretrain_config"]["default"]))
    ui["train"]["lr"] = 3e-4
    assert ui["model"]["hidden_size"] is None
    given = electra_pipeline.validate_parameters({"pretrain_config": ui})["pretrain_config"]
    assert pretrain_config("cpu", given) == pretrain_config("cpu", {"train": {"lr": 3e-4}})
    for bad in ({"train": {"lr": "fast"}}, {"train": {"learning_rate": 1e-3}}):
        with pytest.raises(Exception, match="train"):
            electra_pipeline.validate_parameters({"pretrain_config": bad})


def test_cli_help_lists_parameters() -> None:
    out = subprocess.run([sys.executable, "-m", "electra_cli", "pipeline", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0
    for flag in ("--preset", "--max-steps", "--eval-tasks", "--objectives", "--tracking-uri", "--set"):
        assert flag in out.stdout
    from electra_cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "pipeline" in sub.choices  # `electra pipeline` exists


@pytest.mark.parametrize("argv, field", [
    (["--max-steps", "0"], "max_steps"),
    (["--set", "pretrain.train.lr=-1"], "train.lr"),
    (["--eval-tasks", "nosuchtask"], "task"),
    (["--corpus", "does/not/exist.txt"], "does/not/exist.txt"),
    (["--set", "finetune.max_seq_length=4"], "max_seq_length"),
    (["--register-as", "electra-{model}"], "register_as"),
])
def test_bad_parameters_are_rejected_before_any_work(argv: list[str], field: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """One line naming the field, exit 2, and nothing written: no outputs, no MLflow store."""
    from electra_cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and field in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_stage_keys_follow_content_not_paths(tmp_path: Path) -> None:
    """Same bytes under another name: same corpus key; one changed byte: another key."""
    from flows.ingest import corpus_config, corpus_plan

    cfg = corpus_config({})
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("One paragraph of text that is long enough.\n")
    b.write_text("One paragraph of text that is long enough.\n")
    key_a = corpus_plan([str(a)], str(tmp_path / "out"), cfg)[1]
    assert corpus_plan([str(b)], str(tmp_path / "out"), cfg)[1] == key_a
    b.write_text("One paragraph of text that is long enough!\n")
    assert corpus_plan([str(b)], str(tmp_path / "out"), cfg)[1] != key_a
    assert corpus_plan([str(a)], str(tmp_path / "out"), corpus_config({"min_line_chars": 3}))[1] != key_a


# --- slow: the real thing --------------------------------------------------------------------

@pytest.mark.slow
def test_pipeline_completes_every_stage(first_run: Any, params: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client

    result = first_run.result()
    children = _child_flow_runs(first_run.state_details.flow_run_id)
    names = {_flow_name(r) for r in children}
    assert names == STAGE_FLOWS
    assert all(r.state.is_completed() for r in children), [(r.name, r.state.name) for r in children]
    assert all(t.state.is_completed() for r in children for t in _task_runs(r.id))
    assert [s.stage for s in result.stages] == ["corpus", "tokenizer", "examples", "pretrain-electra",
                                               "intrinsic-electra", "pretrain-mlm", "intrinsic-mlm",
                                               "probe-electra", "probe-mlm", "evaluate-electra", "evaluate-mlm",
                                               "export"]
    assert not any(s.cached for s in result.stages)
    assert sorted(r.name for r in children) == sorted(s.stage for s in result.stages)  # runs named after stages
    assert set(result.summaries) == {"electra", "mlm"} and "sst2" in result.summaries["mlm"]["tasks"]
    # one resolution: the flow logs its plan once, and each pre-training stage trains the plan's config as it
    # is (the compute-matched MLM steps included), with only its inputs bound to it
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from electra_pipeline.modeling import config as config_mod
    from flows.params import validated
    from flows.pipeline import plan

    logs = get_client(sync_client=True).read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[first_run.state_details.flow_run_id])))
    assert sum(log.message.startswith("plan:") for log in logs) == 1, [log.message for log in logs]
    planned = plan(validated(params)).pretrain
    for objective, cfg in planned.items():
        trained = json.loads((Path(next(s.path for s in result.stages if s.stage == f"pretrain-{objective}")).parent
                              / "config.json").read_text())
        want = config_mod.to_dict(cfg)
        for bound in ("data", "tokenizer", "output_dir"):
            trained.pop(bound), want.pop(bound)
        trained["model"].pop("vocab_size"), want["model"].pop("vocab_size")
        assert trained == want, objective
    assert planned["mlm"].train.max_steps > planned["electra"].train.max_steps == 5  # matched training FLOPs
    run_dir = Path(result.run_dir)
    for name in ("report.md", "results.json", "glue_scores.png", "loss_curves.png"):
        assert (run_dir / name).is_file(), name
    # Every results table carries its baselines: random init (same config, recipe, seeds) and majority class.
    results = json.loads((run_dir / "results.json").read_text())
    per_model = json.loads((run_dir / "evaluate" / "electra" / "results.json").read_text())
    assert {"label", "checkpoint", "glue_score", "tasks", "failed", "baselines"} <= set(per_model)  # electra_pipeline.evaluation.results
    assert {"metrics", "score", "seeds", "model_dir"} <= set(per_model["tasks"]["sst2"])
    for objective in ("electra", "mlm"):
        base = results["summaries"][objective]["baselines"]
        assert base["random_init"]["sst2"]["score"] >= 0 and base["majority"]["sst2"]["accuracy"] > 40
        assert "gain" in base["comparison"]["tasks"]["sst2"]
    assert (base["random_init"]["sst2"]["metrics"]
            == results["summaries"]["electra"]["baselines"]["random_init"]["sst2"]["metrics"])  # one cached baseline
    report_md = (run_dir / "report.md").read_text()
    assert "random init" in report_md and "majority class" in report_md and "What pre-training learned" in report_md
    assert set(result.intrinsic) == {"electra", "mlm"} and all("verdict" in r for r in result.intrinsic.values())
    # the probe table opens the report: every baseline, the MLM arm beside ELECTRA, intervals, and a verdict per
    # baseline that never says "better" without an interval above 0
    assert report_md.index("linear probes") < report_md.index("Fine-tuned dev scores")
    assert "bag-of-words" in report_md and "| rte |" in report_md and "vs random init (95% CI)" in report_md
    assert set(result.probes["electra"]["mean"]["scores"]) == {"encoder", "random_init", "bow", "majority", "compare"}
    for line in result.probes["electra"]["verdict"]:
        assert "not resolved" in line or "CI [" in line
    assert "bow" in base["comparison"]["tasks"]["sst2"] and "gain_ci" in base["comparison"]["tasks"]["sst2"]
    assert (Path(results["summaries"]["electra"]["tasks"]["sst2"]["model_dir"]) / "evaluation.json").is_file()
    # The Prefect UI: the results table with the MLflow link, and pre-training progress.
    client = get_client(sync_client=True)
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = ArtifactFilterKey(any_=["electra-pipeline-report"])
    report = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert report and "| sst2 |" in report[0].data and result.run_id in report[0].data
    progress = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pretrain-progress-electra"])))
    assert progress and progress[0].type == "progress" and float(progress[0].data) == 100.0
    assert "step 5 (100%)" in progress[0].description
    tuned = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["finetune-progress-electra-sst2"])))
    assert tuned and float(tuned[0].data) == 100.0 and "fine-tuning sst2 (electra), seed 1/1" in tuned[0].description


@pytest.mark.slow
def test_mlflow_holds_parent_nested_runs_metrics_artifacts_and_model(first_run: Any, params: dict[str, Any]) -> None:
    result = first_run.result()
    client = _mlflow(params)
    runs = _runs(params)
    by_id = {r.info.run_id: r for r in runs}
    parent = by_id[result.run_id]
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    assert parent.data.params["pretrain.model.hidden_size"] == "128"  # the full resolved config
    assert parent.data.params["tokenizer.vocab_size"] == "1000"
    assert parent.data.params["pretrain.train.max_steps"] == "5"  # the steps trained, resolved
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id}
    assert set(children) == {"corpus", "tokenizer", "examples", "pretrain-electra", "pretrain-mlm",
                             "intrinsic-electra", "intrinsic-mlm", "probe-electra", "probe-mlm", "evaluate-electra",
                             "evaluate-mlm", "export"}
    assert all(r.info.status == "FINISHED" for r in runs)
    finetune = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == children["evaluate-electra"].info.run_id]
    assert sorted(r.info.run_name for r in finetune) == ["finetune-electra-random-init-sst2", "finetune-electra-sst2"]
    # every run of the pipeline has its own name: arm, task and seed in the seed runs
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert {"electra-sst2-seed1", "electra-random-init-sst2-seed1", "mlm-sst2-seed1"} <= set(names)
    assert "sst2/score_random" in children["evaluate-electra"].data.metrics
    assert children["evaluate-mlm"].data.params["pretrain.objective"] == "mlm"  # comparable by what was evaluated
    assert children["evaluate-electra"].data.params["pretrain.steps"] == "5"
    assert "electra/glue/gain" in parent.data.metrics
    # the parent carries the headline figures under the stage runs' names, and the report's verdicts
    evaluation, probe_run = children["evaluate-electra"].data.metrics, children["probe-electra"].data.metrics
    for key in ("sst2/score", "sst2/score_random", "sst2/score_majority", "sst2/gain", "sst2/gain_low",
                "sst2/gain_high"):
        assert parent.data.metrics[f"electra/{key}"] == evaluation[key], key
    assert evaluation["sst2/gain_low"] <= evaluation["sst2/gain"] <= evaluation["sst2/gain_high"]
    for key in ("probe/mean/encoder", "probe/mean/random_init", "probe/mean/bow", "probe/mean/majority"):
        assert parent.data.metrics[f"electra/{key}"] == probe_run[key], key
    if "skipped" not in result.intrinsic["electra"]:  # five tiny steps leave too little held-out text to score
        auc = result.intrinsic["electra"]["unigram"]["pretrained"]["auc"]
        assert parent.data.metrics["electra/intrinsic/unigram/auc"] == auc
    note = parent.data.tags["mlflow.note.content"]
    assert result.intrinsic["electra"]["verdict"] in note and result.probes["electra"]["verdict"][0] in note
    assert result.exported["model_uri"] in note
    # the runs list opens on a saved view with those columns (MLflow's Share-button mechanism)
    exp = client.get_experiment(parent.info.experiment_id)
    view = json.loads(exp.tags["mlflow.sharedViewState.headline"])
    columns = json.loads(view["state"])["selectedColumns"]
    assert "metrics.`electra/sst2/gain_low`" in columns and "metrics.`mlm/probe/mean/encoder`" in columns
    assert all(c[len("metrics.`"):-1] in parent.data.metrics for c in columns if c.startswith("metrics."))
    assert result.mlflow_runs_url.endswith(f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
                                           "&viewStateShareKey=headline")
    assert "dev/accuracy" in finetune[0].data.metrics
    history = client.get_metric_history(children["pretrain-electra"].info.run_id, "loss/disc")
    assert [m.step for m in history][-1] == 5
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"report.md", "results.json", "glue_scores.png", "loss_curves.png"} <= artifacts
    assert "loss_curves.png" in {a.path for a in client.list_artifacts(children["pretrain-electra"].info.run_id)}
    assert client.list_artifacts(children["tokenizer"].info.run_id, "tokenizer")
    # five tiny steps earn nothing: the version stays @challenger, and the registry says why, with the baselines
    version = client.get_model_version_by_alias("electra-sst2", "challenger")
    assert str(version.version) == result.exported["version"] and version.run_id == children["export"].info.run_id
    assert not result.exported["alias_moved"] and "random init" in version.tags["alias_reason"]
    assert "baseline.majority" in version.tags and "baseline.random_init" in version.tags
    assert "@challenger only" in version.description
    # the version's evidence: the evaluation run that scored it against its baselines, tagged and linked
    evaluation_run = children["evaluate-electra"]
    assert version.tags["evaluation_run_id"] == evaluation_run.info.run_id
    assert (f"(#/experiments/{evaluation_run.info.experiment_id}/runs/{evaluation_run.info.run_id}"
            "?workflowType=machine_learning)") in version.description


@pytest.mark.slow
def test_second_run_hits_the_caches(first_run: Any, params: dict[str, Any]) -> None:
    from flows.pipeline import electra_pipeline

    state = electra_pipeline(**{**params, "export": False}, return_state=True)
    assert state.is_completed(), state.message
    stages = {s.stage: s for s in state.result().stages}
    for name in ("corpus", "tokenizer", "examples", "pretrain-electra", "pretrain-mlm"):
        assert stages[name].cached, name
    cached_tasks = [t for r in _child_flow_runs(state.state_details.flow_run_id) for t in _task_runs(r.id)
                    if t.state.name == "Cached"]
    assert len(cached_tasks) == 5
    first = first_run.result().summaries["electra"]["tasks"]["sst2"]["score"]
    assert state.result().summaries["electra"]["tasks"]["sst2"]["score"] == first  # same model, same seed


@pytest.mark.slow
def test_lost_output_is_rebuilt_not_served_from_cache(first_run: Any, params: dict[str, Any]) -> None:
    """A cache hit must never hand a deleted directory to the next stage."""
    from flows.tokenizer import train_tokenizer

    result = first_run.result()
    tok_dir = Path(next(s.path for s in result.stages if s.stage == "tokenizer")).parent
    corpus = next(s.path for s in result.stages if s.stage == "corpus")
    shutil.rmtree(tok_dir)
    out = train_tokenizer(corpus=corpus, output_dir=params["output_dir"], config={"vocab_size": 1000},
                          tracking={"tracking_uri": params["tracking_uri"], "experiment": params["experiment"]})
    assert not out.cached and Path(out.path).is_file() and Path(out.path).parent == tok_dir


@pytest.mark.slow
def test_pipeline_continues_pretraining_from_a_checkpoint(first_run: Any, params: dict[str, Any]) -> None:
    """init_from: the checkpoint's vocabulary instead of a WordPiece stage, its sizes, the weights
    it started from in summary.json, and the lineage on the MLflow runs."""
    from flows.pipeline import electra_pipeline

    source = Path(next(s.path for s in first_run.result().stages if s.stage == "pretrain-electra")).parent
    state = electra_pipeline(**{**params, "objectives": ["electra"], "export": False, "max_steps": 3,
                                "init_from": str(source), "pretrain_config": {}}, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    names = {_flow_name(r) for r in _child_flow_runs(state.state_details.flow_run_id)}
    assert "checkpoint-tokenizer" in names and "train-tokenizer" not in names
    stages = {s.stage: s for s in result.stages}
    tok = json.loads(Path(stages["tokenizer"].path).read_text())["model"]["vocab"]
    assert tok == json.loads((source / "tokenizer.json").read_text())["model"]["vocab"]
    run = Path(stages["pretrain-electra"].path).parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["init"]["from"] == str(source) and summary["steps"] == 3
    assert json.loads((run / "config.json").read_text())["model"]["vocab_size"] == 1000
    intrinsic = result.intrinsic["electra"]  # this test's corpus is too small for a held-out slice
    assert "skipped" in intrinsic or "start" in intrinsic["unigram"]
    runs = {r.info.run_id: r for r in _runs(params)}
    assert runs[result.run_id].data.tags["init_from"] == str(source)
    pre = next(r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == result.run_id
               and r.info.run_name == "pretrain-electra")
    assert pre.data.tags["init_from.sha256"] == summary["init"]["sha256"]
    assert f"continued from `{source}`" in (Path(result.run_dir) / "report.md").read_text()


@pytest.mark.slow
def test_compare_flow_puts_both_models_side_by_side(first_run: Any, params: dict[str, Any]) -> None:
    from flows.compare import electra_vs_mlm

    keep = {k: params[k] for k in ("preset", "corpus", "eval_tasks", "probe_tasks", "max_steps", "device", "output_dir",
                                   "tracking_uri", "pretrain_config", "finetune_config", "eval_concurrency")}
    state = electra_vs_mlm(**keep, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert set(result.summaries) == {"electra", "mlm"} and result.exported is None
    steps = {s.stage: s.cached for s in result.stages}
    assert steps["pretrain-electra"] and steps["pretrain-mlm"]  # the pipeline's runs, reused
    assert set(result.probes) == {"electra", "mlm"} and "| rte |" in result.probes["electra"]["table"]
    mlm = json.loads((Path(next(s.path for s in result.stages if s.stage == "pretrain-mlm")).parent
                      / "summary.json").read_text())
    assert mlm["steps"] == 7  # compute-matched: 5 ELECTRA steps cost as much as 7 cheaper MLM steps
    assert "| task | electra | mlm |" in result.table


@pytest.mark.slow
def test_study_flow_gives_the_table_curves_and_cheaper_line(prefect_api: str, params: dict[str, Any]) -> None:
    """Two objectives and a named arm (with an underscore in its name) at equal compute, each fine-tuned at half
    and all of its budget: study.md
    with the table and the "x cheaper" sentence, the plot, study.json with a curve per arm, an
    MLflow parent with a child per arm and checkpoint, and the Prefect artifact. A rerun resumes:
    every pre-training and evaluation is reused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.study import efficiency_study

    kw = dict(objectives=["electra", "mlm"], arms={"two_stage": {"train": {"schedule": "two_stage"}}},
              preset="tiny", snapshots=1, corpus=params["corpus"],
              eval_tasks=["sst2"], device="cpu", output_dir=params["output_dir"], tracking_uri=params["tracking_uri"],
              experiment="study-test", eval_concurrency=1,
              pretrain_config={"model": {"vocab_size": 1000}, "train": {"max_steps": 4}},
              finetune_config=params["finetune_config"])
    state = efficiency_study(**kw, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    study_dir = Path(result.study_dir)
    doc = json.loads((study_dir / "study.json").read_text())
    assert set(doc["curves"]) == {"electra", "mlm", "two_stage"}  # a named arm beside the objectives
    assert all([p["fraction"] for p in c] == [0.5, 1.0] for c in doc["curves"].values())
    assert doc["steps"]["mlm"] == doc["steps"]["electra"] == doc["steps"]["two_stage"] == 4  # the same steps
    md = (study_dir / "study.md").read_text()
    assert "| objective | sst2 | GLUE | vs random init | held-out AUC | steps | paper (base) |" in md
    assert "| random init |" in md and set(doc["versus_random_init"]) == set(doc["curves"])
    assert result.cheaper in md and ("cheaper" in result.cheaper) and result.learned in md
    assert "above random init" in result.learned
    assert (study_dir / "study_curves.png").stat().st_size > 10_000
    assert result.line.startswith("study objectives=3 best=") and "budget_flops=preset" in result.line
    client = _mlflow(params)
    exp = client.get_experiment_by_name("study-test")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    children = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id}
    assert {"evaluate-electra@0.5", "evaluate-electra@1", "evaluate-mlm@0.5", "evaluate-two_stage@1",
            "intrinsic-electra", "intrinsic-electra@0.5", "pretrain-two_stage",
            "intrinsic-two_stage@0.5"} <= children  # AUC at each checkpoint
    assert "intrinsic-mlm@0.5" not in children  # no RTD head
    parent = next(r for r in runs if r.info.run_id == result.run_id)
    assert {"electra/glue", "mlm/glue", "two_stage/glue"} <= set(parent.data.metrics)
    client = get_client(sync_client=True)
    art = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["efficiency-study"])))
    assert art and "| objective |" in art[0].data
    # an arm's underscore is no artifact key character: its progress artifact is still there
    keys = {"finetune-progress-two-stage-0-5-sst2"}
    found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=sorted(keys))))
    assert {a.key for a in found} == keys
    again = efficiency_study(**kw, return_state=True).result()  # resumes: nothing is trained again
    assert json.loads((Path(again.study_dir) / "study.json").read_text())["curves"] == doc["curves"]


@pytest.mark.slow
def test_study_flow_refuses_bad_arms_before_any_runs(prefect_api: str, params: dict[str, Any]) -> None:
    from flows.study import efficiency_study

    for config, field in (({"train": {"candidates": 1}}, "train.candidates"),
                          ({"model": {"embedding_sharing": "gdes"}}, "model.embedding_sharing")):
        state = efficiency_study(objectives=["electra", "mlm"], preset="tiny", corpus=params["corpus"],
                                 output_dir=params["output_dir"], tracking_uri=params["tracking_uri"],
                                 experiment="study-bad", pretrain_config=config, return_state=True)
        assert state.is_failed() and state.message.startswith(field), state.message
    for arms, message in (({"x": {"train": {"lr": -1}}}, "arms.x.train.lr: must be > 0"),
                          ({"mlm": {}}, "arms.mlm: an arm name is")):
        state = efficiency_study(objectives=["electra", "mlm"], arms=arms, preset="tiny", corpus=params["corpus"],
                                 output_dir=params["output_dir"], tracking_uri=params["tracking_uri"],
                                 experiment="study-bad", return_state=True)
        assert state.is_failed() and state.message.startswith(message), state.message
    state = efficiency_study(objectives=["electra"], preset="tiny", budget_flops=1e6, corpus=params["corpus"],
                             output_dir=params["output_dir"], tracking_uri=params["tracking_uri"],
                             experiment="study-bad", return_state=True)
    assert state.is_failed() and "less than one electra step" in state.message
    assert _mlflow(params).get_experiment_by_name("study-bad") is None  # nothing started


@pytest.mark.slow
def test_failed_task_keeps_the_others_and_fails_the_run_with_the_library_message(
        first_run: Any, params: dict[str, Any], work: Path) -> None:
    from flows.base import sample_path
    from flows.pipeline import electra_pipeline

    glue = work / "glue-broken"
    shutil.copytree(sample_path("glue") / "SST-2", glue / "SST-2")
    shutil.copytree(sample_path("glue") / "RTE", glue / "RTE")
    with (glue / "RTE" / "train.tsv").open("a") as f:
        f.write("9999\tonly two fields\n")
    state = electra_pipeline(**{**params, "objectives": ["electra"], "eval_tasks": ["sst2", "rte"], "probe_tasks": [],
                                "glue_dir": str(glue), "export": False}, return_state=True)
    assert state.is_failed()
    assert state.message.startswith("evaluation failed for electra/rte: ") and "train.tsv" in state.message
    assert "Traceback" not in state.message
    runs = _runs(params)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_name = {}
    for r in sorted(runs, key=lambda r: r.info.start_time):
        by_name[r.info.run_name] = r
    assert by_name["finetune-electra-rte"].info.status == "FAILED"
    assert by_name["finetune-electra-sst2"].info.status == "FINISHED"
    evaluate = [r for r in _child_flow_runs(state.state_details.flow_run_id) if _flow_name(r) == "evaluate"][0]
    assert evaluate.state.is_completed()  # it finished and kept sst2's result
    tasks = {t.name: t.state for t in _task_runs(evaluate.id)}
    assert tasks["finetune-rte"].is_failed() and "train.tsv" in tasks["finetune-rte"].message
    assert tasks["finetune-sst2"].is_completed()


@pytest.mark.slow
def test_crash_hook_ends_runs_a_killed_process_left_running(first_run: Any, params: dict[str, Any]) -> None:
    """What on_crashed / on_cancellation do after the runner killed a run's process."""
    from electra_pipeline.tracking import MLflowTracker
    from flows.tracking import FLOW_RUN_TAG, end_orphaned_runs

    where = {"tracking_uri": params["tracking_uri"], "experiment": params["experiment"]}
    parent = MLflowTracker.start(**where, run_name="orphan", tags={FLOW_RUN_TAG: "killed-flow-run"})
    child = MLflowTracker.start(**where, run_name="orphan-seed", parent_run_id=parent.run_id)  # a library child
    other = MLflowTracker.start(**where, run_name="someone-else")
    assert end_orphaned_runs(params["tracking_uri"], params["experiment"], "killed-flow-run") == 2
    client = _mlflow(params)
    assert client.get_run(parent.run_id).info.status == "KILLED"
    assert client.get_run(child.run_id).info.status == "KILLED"
    assert client.get_run(other.run_id).info.status == "RUNNING"
    other.end()


@pytest.mark.slow
def test_flow_rejects_invalid_parameters_before_it_starts(prefect_api: str, params: dict[str, Any]) -> None:
    """Called with values the UI form would refuse, the flow fails before its body: no MLflow run."""
    from flows.pipeline import electra_pipeline

    before = len(_runs(params))
    for bad in ({"max_steps": 0}, {"eval_concurrency": 0}, {"corpus": []}, {"preset": "huge"}):
        state = electra_pipeline(**{**params, **bad}, return_state=True)
        assert state.is_failed() and next(iter(bad)) in state.message, state.message
    state = electra_pipeline(**{**params, "pretrain_config": {"train": {"lr": -1}}}, return_state=True)
    assert state.is_failed() and state.message.startswith("train.lr: must be > 0")
    assert len(_runs(params)) == before


@pytest.mark.slow
def test_stage_failure_marks_the_stage_flow_failed_with_the_message(prefect_api: str, params: dict[str, Any],
                                                                     work: Path) -> None:
    from flows.pretrain import pretrain

    empty = work / "not-examples"
    empty.mkdir()
    state = pretrain(examples=str(empty), tokenizer=str(empty / "tokenizer.json"), max_steps=5,
                     output_dir=params["output_dir"], return_state=True,
                     tracking={"tracking_uri": params["tracking_uri"], "experiment": params["experiment"]})
    assert state.is_failed()
    assert state.message.endswith("is not an examples directory (run `electra examples`)")


@pytest.mark.slow
def test_deployment_served_and_triggered_through_the_api(first_run: Any, prefect_api: str,
                                                         params: dict[str, Any], work: Path) -> None:
    """infra/serve.py in a subprocess; a run created through the API runs there and completes."""
    from prefect.deployments import run_deployment

    run_params = {**params, "objectives": ["electra"], "export": False}
    env = {**os.environ, **TELEMETRY_OFF, "PREFECT_API_URL": prefect_api,
           "PREFECT_HOME": str(work / "prefect-home")}
    log = (work / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, str(REPO / "infra" / "serve.py"), "--only", "cpu-demo",
                               "--params", json.dumps(run_params)], cwd=work, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        from prefect.client.orchestration import get_client

        client = get_client(sync_client=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                client.read_deployment_by_name("electra-pipeline/cpu-demo")
                break
            except Exception:
                assert server.poll() is None and time.monotonic() < deadline, (work / "serve.log").read_text()
                time.sleep(1)
        flow_run = run_deployment("electra-pipeline/cpu-demo", timeout=240)
        assert flow_run.state.is_completed(), (flow_run.state.message, (work / "serve.log").read_text()[-3000:])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_ctrl_c_ends_every_run_and_the_same_command_resumes(first_run: Any, prefect_api: str,
                                                          params: dict[str, Any], work: Path) -> None:
    """`python -m electra_cli pipeline`, Ctrl-C (SIGINT to its process group) during pre-training: exit 130,
    no MLflow run left RUNNING, a checkpoint kept; the same command then resumes and finishes."""
    import signal

    p = params
    argv = [sys.executable, "-m", "electra_cli", "pipeline", "--preset", "tiny", "--corpus", *p["corpus"],
            "--eval-tasks", "sst2", "--probe-tasks", *p["probe_tasks"], "--objectives", "electra", "--max-steps", "40",
            "--device", "cpu",
            "--output-dir", p["output_dir"], "--tracking-uri", p["tracking_uri"], "--experiment", "flows-ctrl-c",
            "--no-export",
            "--pretrain-config", json.dumps({**p["pretrain_config"], "train": {"log_every": 1}}),
            "--examples-config", json.dumps(p["examples_config"]),
            "--finetune-config", json.dumps(p["finetune_config"])]
    env = {**os.environ, **TELEMETRY_OFF, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(work / "prefect-home")}
    # A terminal's foreground job gets Ctrl-C. Started from a background job of a non-interactive shell
    # (CI runners, `cmd &` in a script), pytest itself ignores SIGINT, and an ignored signal stays
    # ignored across exec, so the run would too (Python keeps an inherited SIG_IGN). A handled signal
    # reverts to the default in the child: handle it here while the run starts.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, before)
    deadline = time.monotonic() + 120
    while True:  # until the 40-step run has logged 3 steps (a wide window on a loaded machine)
        d = _pretrain_dir(p["output_dir"], max_steps=40)
        if d is not None and (d / "metrics.jsonl").is_file() and len((d / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    out, err = run.communicate(timeout=240)  # checkpoint, mark runs ended, stop the server: slow on a loaded machine
    assert run.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err
    client = _mlflow(p)
    exp = client.get_experiment_by_name("flows-ctrl-c")
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([exp.experiment_id])}
    parent = next(n for n in statuses if n.startswith("pipeline-tiny-electra-40steps-"))
    assert statuses[parent] == "KILLED" and statuses["pretrain-electra"] == "KILLED"
    assert "RUNNING" not in statuses.values()

    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sst2" in done.stdout and "pretrain-electra   ran" in done.stdout
    assert "corpus             cached" in done.stdout
    assert f"MLflow UI:   mlflow ui --backend-store-uri {p['tracking_uri']}" in done.stdout
    assert f"Prefect UI:  {prefect_api.removesuffix('/api')}/runs/flow-run/" in done.stdout
    record = json.loads((_pretrain_dir(p["output_dir"], max_steps=40) / "stage.json").read_text())
    assert record["summary"]["steps"] == 40 and record["summary"]["resumed_from"]  # from the kept checkpoint


def test_deployments_are_declared_once() -> None:
    """infra/prefect.yaml is what infra/serve.py renders from the deployments it serves."""
    sys.path.insert(0, str(REPO / "infra"))
    try:
        import serve
    finally:
        sys.path.remove(str(REPO / "infra"))
    assert (REPO / "infra" / "prefect.yaml").read_text() == serve.prefect_yaml(), \
        "infra/prefect.yaml is stale: python infra/serve.py --write-prefect-yaml"
    served = {(d.name, d.entrypoint) for d in serve.deployments()}
    assert served == {(d["name"], d["entrypoint"].replace(":", ".")) for d in serve.DEPLOYMENTS.values()}


@pytest.mark.slow
def test_prefect_yaml_deploys_to_work_pools(prefect_api: str, work: Path) -> None:
    """`prefect deploy --all --prefect-file infra/prefect.yaml` registers every deployment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    client = get_client(sync_client=True)
    for pool in ("electra-cpu", "electra-gpu"):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    env = {**os.environ, **TELEMETRY_OFF, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(work / "prefect-home")}
    out = subprocess.run(["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    demo = client.read_deployment_by_name("electra-pipeline/cpu-demo")
    assert demo.work_pool_name == "electra-cpu" and demo.parameters == {}
    gpu = client.read_deployment_by_name("electra-pipeline/small-gpu")
    assert gpu.work_pool_name == "electra-gpu" and gpu.parameters["preset"] == "small"
    nightly = client.read_deployment_by_name("electra-pipeline/cpu-nightly")
    assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 3 * * *"
    assert client.read_deployment_by_name("electra-vs-mlm/cpu").work_pool_name == "electra-cpu"
    assert client.read_deployment_by_name("efficiency-study/cpu").work_pool_name == "electra-cpu"


def test_mlflow_links_open_the_training_view(tmp_path: Path) -> None:
    """MLflow 3 opens an experiment in its GenAI view unless told: every link asks for the training
    view, and an experiment the project creates (or adopts) is tagged as one of training runs."""
    import mlflow

    from electra_pipeline.tracking import MLflowTracker
    from flows.tracking import run_url

    for uri in ("sqlite:///x/mlflow.db", "http://mlflow.internal:5000/"):
        url = run_url(uri, "3", "abc")
        assert url.endswith("/#/experiments/3/runs/abc?workflowType=machine_learning"), url
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_experiment("made-elsewhere", artifact_location=(tmp_path / "art").as_uri())
    for name in ("new", "made-elsewhere"):
        MLflowTracker.start(tracking_uri=uri, experiment=name, run_name="r").end()
        assert client.get_experiment_by_name(name).tags["mlflow.experimentKind"] == "custom_model_development"


def test_logged_params_are_the_step_counts_the_run_trains() -> None:
    """A FLOPs budget trains the steps it buys, warmed up over its share of them: MLflow gets those,
    not the preset's 1,000,000-step cap and 10,000 warm-up steps."""
    from electra_pipeline.training import flops
    from electra_pipeline.training.train import tracked_params
    from flows.params import validated
    from flows.pipeline import plan
    from flows.pretrain import pretrain_config

    cfg = pretrain_config("cpu", {}, objective="electra", max_steps=None, device="cpu")
    assert (cfg.train.max_steps, cfg.train.warmup_steps) == (1_000_000, 10_000) and cfg.train.budget_flops
    steps = int(cfg.train.budget_flops // flops.train_step_flops(cfg.model, cfg.train).total)
    logged = tracked_params(cfg)["train"]
    assert logged["max_steps"] == steps < 1_000_000
    assert logged["warmup_steps"] == round(cfg.train.warmup_fraction * steps)
    assert plan(validated({})).to_params()["pretrain"]["train"]["max_steps"] == steps  # the parent run's params


def test_progress_line_keeps_the_latest_held_out_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Prefect progress artifact's line shows share done, ETA, losses and the last held-out
    ROC-AUC, which arrives only every train.eval_every steps."""
    import prefect.artifacts

    from electra_pipeline.tracking import NullTracker
    from flows.tracking import PrefectProgress

    lines: list[str] = []
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", lambda **kw: "id")
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact",
                        lambda artifact_id, progress, description: lines.append(description))
    progress = PrefectProgress(NullTracker(), total_steps=100, key="k", label="pretrain", every_s=0.0,
                               log_every_s=1e9)
    progress.log_metrics({"loss/disc": 0.3, "progress": 0.2, "heldout/unigram_auc": 0.61234}, step=20)
    progress.log_metrics({"loss/disc": 0.25, "progress": 0.4}, step=40)
    assert "step 40 (40%, ETA" in lines[-1] and "loss/disc 0.25" in lines[-1]
    assert lines[-1].endswith("held-out ROC-AUC 0.612 (at step 20)")  # scored then, not now


def test_fine_tuning_progress_counts_every_seed(monkeypatch):
    """One artifact per fine-tuning task: each seed's steps as a share of all seeds, with the seed named."""
    import prefect.artifacts

    from electra_pipeline.tracking import NullTracker
    from flows.tracking import SeedProgress

    lines: list[str] = []
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", lambda **kw: "id")
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact",
                        lambda artifact_id, progress, description: lines.append(f"{progress:.0f} {description}"))
    progress = SeedProgress(NullTracker(), seeds=2, key="k", label="fine-tuning sst2 (electra)", every_s=0.0,
                            log_every_s=1e9, prefix="electra")
    with progress.child("sst2-seed1") as seed:
        seed.log_metrics({"train/loss": 0.61, "progress": 0.5}, step=10)
        assert lines[-1].startswith("25 fine-tuning sst2 (electra), seed 1/2: step 10 (25%, ETA")
        assert lines[-1].endswith("train/loss 0.61")
        seed.log_metrics({"dev/accuracy": 0.8}, step=1)  # an epoch's dev score: no progress of its own
        assert len(lines) == 1
    with progress.child("sst2-seed2") as seed:
        seed.log_metrics({"train/loss": 0.4, "progress": 1.0}, step=20)
    assert lines[-1].startswith("100 fine-tuning sst2 (electra), seed 2/2: step 20 (100%)")


@pytest.mark.parametrize("preset,flags,overrides", [
    ("cpu", ["--train.max_steps", "50"], {}),
    ("small", ["--train.max_steps", "50", "--train.lr", "3e-4"], {"train": {"lr": 3e-4}}),
    ("cpu", ["--train.max_steps", "400", "--train.warmup_steps", "7"], {"train": {"warmup_steps": 7}}),
    ("cpu", [], {}),
])
def test_the_cli_and_the_flow_resolve_one_request_to_one_config(preset, flags, overrides, capsys) -> None:
    """`electra pretrain` and the pipeline's pre-training stage go through the library's one
    resolver: the same request (preset, step count, overrides) gives the same config."""
    from electra_cli import main
    from electra_pipeline.modeling import config as config_mod
    from flows.pretrain import pretrain_config

    assert main(["pretrain", "--preset", preset, *flags, "--print-config"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    steps = int(flags[flags.index("--train.max_steps") + 1]) if flags else None
    from_flow = config_mod.to_dict(pretrain_config(preset, overrides, max_steps=steps))
    assert from_cli == from_flow
    if steps is not None:  # an explicit step count replaces the budget; warm-up and checkpoints fit in it
        t = from_cli["train"]
        assert t["budget_flops"] is None and t["max_steps"] == steps and t["save_every"] <= steps
        assert t["warmup_steps"] == (7 if "--train.warmup_steps" in flags else min(t["warmup_steps"], steps // 10))
