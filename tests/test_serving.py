"""The HTTP service end to end: real `bentoml serve` processes on free loopback ports.

Three servers start in parallel (a classifier, a SQuAD 2.0 model loaded from the MLflow
registry by `models:/<name>@champion`, and an int8 raw discriminator); every endpoint is
called over HTTP and must equal the in-process prediction, every bad request must get its
documented 4xx (never a 5xx) and log no traceback, and the OpenAPI document must describe each
server's model and endpoints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

httpx = pytest.importorskip("httpx")
pytest.importorskip("bentoml")

from electra_pipeline import __version__, inference  # noqa: E402
from electra_pipeline.evaluation.finetuned import load_finetuned  # noqa: E402
from electra_pipeline.export import onnx, registry  # noqa: E402

try:
    from tests.test_export import make_classifier, make_discriminator, make_qa, train_tokenizer
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_export import make_classifier, make_discriminator, make_qa, train_tokenizer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
NO_TELEMETRY = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true"}
READY_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `bentoml serve` process group on 127.0.0.1; stopped with SIGTERM to its group."""

    def __init__(self, env: dict[str, str], log: Path, host: str | None = "127.0.0.1"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, **NO_TELEMETRY, **env, "PYTHONPATH": str(REPO)}
        full_env.pop("ELECTRA_MODEL_DIR" if "ELECTRA_MODEL_URI" in env else "ELECTRA_MODEL_URI", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "serving.service:ElectraService", "--port", str(self.port),
             *(["--host", host] if host else [])],
            cwd=REPO, env=full_env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"server not ready after {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=30, **kw)


def _register_in_mlflow(export_dir: Path, root: Path) -> dict[str, str]:
    """Register the export in a throwaway SQLite registry; env for a server to load it by alias."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("serving-test", artifact_location=(root / "mlartifacts").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        # a QA model has no random-init twin here: the alias is forced (the gate is tested in test_export)
        res = registry.log_to_mlflow(export_dir, "electra-qa-test", alias="champion", force=True)
    finally:
        mlflow.set_tracking_uri(None)
    return {"ELECTRA_MODEL_URI": res["model_uri"], "MLFLOW_TRACKING_URI": uri}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("serving")
    tok = train_tokenizer(root / "tokenizer.json")
    cls_src, qa_src, disc_src = make_classifier(root, tok), make_qa(root, tok, answerability=True), \
        make_discriminator(root, tok)
    # what the evaluate flow writes beside a fine-tuned model: its dev score against its baselines
    from electra_pipeline.evaluation import baselines, stats

    ev = baselines.evidence("sst2", 50.0, 50.9, 51.5, stats.Interval(-1.5, -4.0, 1.0, n=872), bow=78.7)
    (cls_src / baselines.EVIDENCE_FILE).write_text(json.dumps(ev))
    onnx.export_onnx(cls_src, root / "x_cls", optimize=True)  # as the export flow writes it: ORT's fused attention
    # no --host: the service's own default must be loopback
    servers = {"cls": Server({"ELECTRA_MODEL_DIR": str(root / "x_cls")}, root / "cls.log", host=None)}
    onnx.export_onnx(disc_src, root / "x_disc", quantize=True)
    servers["disc"] = Server({"ELECTRA_MODEL_DIR": str(root / "x_disc"), "ELECTRA_QUANTIZED": "1"}, root / "disc.log")
    onnx.export_onnx(qa_src, root / "x_qa", optimize=True)
    registered = _register_in_mlflow(root / "x_qa", root)
    servers["qa"] = Server(registered, root / "qa.log")
    try:
        for s in servers.values():
            s.wait_ready()
        yield {"root": root, "servers": servers, "cls_src": cls_src, "registry": registered,
               "cls": inference.Predictor.load(root / "x_cls"), "qa": inference.Predictor.load(root / "x_qa"),
               "disc": inference.Predictor.load(root / "x_disc", quantized=True)}
    finally:
        for s in servers.values():
            s.stop()
    for name, s in servers.items():
        assert s.proc.returncode is not None, f"{name} server still running"


TEXTS = ["it 's a charming and often affecting journey .", "unflinchingly bleak and desperate",
         ("A man is playing a guitar.", "Someone performs music."), "the plot is thin " * 40]


# --- answers equal the in-process model --------------------------------------------------

def test_health_and_metadata(env: dict) -> None:
    s = env["servers"]["cls"]
    assert f"listening on http://127.0.0.1:{s.port}" in s.log.read_text()  # default bind, no --host given
    assert httpx.get(f"{s.url}/livez").status_code == 200 and httpx.get(f"{s.url}/readyz").status_code == 200
    meta = httpx.get(f"{s.url}/metadata").json()
    assert meta["kind"] == "classification" and meta["labels"] == ["negative", "positive"]
    assert meta["endpoint"] == "/classify" and meta["limits"]["max_items"] == 64
    assert meta["model_file"] == "model.onnx" and "CPUExecutionProvider" in meta["providers"]
    assert "/" not in meta["source"]  # the server's paths stay on the server
    x_cls = env["root"] / "x_cls"  # the export records its files' checksums, which the server verified
    assert json.loads((x_cls / "metadata.json").read_text())["sha256"] == {
        n: inference.file_sha256(x_cls / n) for n in ("model.onnx", "tokenizer.json")}
    assert "Serving " in s.log.read_text() and "sha256 verified" in s.log.read_text()
    ev = meta["evaluation"]  # the dev score with its baselines and why it is no champion
    assert ev["majority"] == 50.9 and ev["random_init"] == 51.5 and ev["bow"] == 78.7 and ev["earned"] is False
    assert "not above the majority class" in ev["verdict"]


def test_classify_equals_in_process_and_pytorch(env: dict) -> None:
    r = env["servers"]["cls"].post("/classify", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    got = r.json()
    want = env["cls"].classify([t if isinstance(t, str) else tuple(t) for t in TEXTS])
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert np.allclose([g["scores"]["positive"] for g in got], [w["scores"]["positive"] for w in want], atol=1e-6)
    assert [g["truncated"] for g in got] == [False, False, False, True]
    # PyTorch on the same tokenisation agrees with what the server said
    model, _ = load_finetuned(env["cls_src"])
    enc = inference.encode_texts(env["cls"].tokenizer, [t if isinstance(t, str) else tuple(t) for t in TEXTS], 64)
    with torch.inference_mode():
        logits = model(*(torch.from_numpy(enc.batch.feeds()[k]) for k in ("input_ids", "token_type_ids",
                                                                            "attention_mask")))
    assert [g["label"] for g in got] == [["negative", "positive"][i] for i in logits.argmax(-1).tolist()]
    assert np.allclose([g["scores"]["positive"] for g in got], logits.softmax(-1)[:, 1].numpy(), atol=1e-4)


def test_concurrent_classify_requests_are_batched_correctly(env: dict) -> None:
    s = env["servers"]["cls"]
    texts = [f"{w} film , {n} minutes" for n in range(4) for w in ("a moving", "a dull", "an odd", "a fine")]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: s.post("/classify", json={"texts": [t]}), texts))
    assert all(r.status_code == 200 for r in results)
    want = env["cls"].classify(texts)
    assert [r.json()[0]["label"] for r in results] == [w["label"] for w in want]
    assert np.allclose([r.json()[0]["score"] for r in results], [w["score"] for w in want], atol=1e-6)


def test_answer_from_registry_model_equals_in_process(env: dict) -> None:
    s = env["servers"]["qa"]
    meta = httpx.get(f"{s.url}/metadata").json()
    assert meta["source"] == "models:/electra-qa-test@champion" and meta["registry_version"] == "1"
    # the start-up log says which version the alias resolved to, and that its files were verified
    assert "Serving models:/electra-qa-test@champion = registry version 1: squad" in s.log.read_text()
    assert "sha256 verified" in s.log.read_text() and "Downloading artifacts" not in s.log.read_text()
    context = "The harbour closed in the winter of 1962 . " * 10 + "Her father repaired boats for forty years ."
    for question in ("How long did her father repair boats?", "when " * 30 + "?"):
        r = s.post("/answer", json={"question": question, "context": context})
        assert r.status_code == 200, r.text
        got, want = r.json(), env["qa"].answer(question, context, max_windows=32)
        assert got["answer"] == want["answer"] and got["start"] == want["start"] and got["end"] == want["end"]
        assert got["answer"] == context[got["start"]:got["end"]] and got["answerable_prob"] is not None
        assert got["truncated"] is (len(question) > 100)  # the long question exceeds max_query_length


def test_detect_int8_equals_in_process(env: dict) -> None:
    s = env["servers"]["disc"]
    assert httpx.get(f"{s.url}/metadata").json()["model_file"] == "model.int8.onnx"
    text = "the chef cooked the meal and the guests ate it"
    r = s.post("/detect", json={"text": text})
    assert r.status_code == 200, r.text
    got, want = r.json(), env["disc"].detect(text)
    assert [t["token"] for t in got["tokens"]] == [t["token"] for t in want["tokens"]]
    assert np.allclose([t["replaced_prob"] for t in got["tokens"]], [t["replaced_prob"] for t in want["tokens"]])
    assert got["tokens"][0]["start"] == 0 and got["truncated"] is False
    long = s.post("/detect", json={"text": "word " * 400}).json()
    assert long["truncated"] is True and len(long["tokens"]) == 126


# --- bad requests: documented 4xx, never 5xx ---------------------------------------------

BAD = [
    ("cls", "/classify", {"texts": []}, 400),
    ("cls", "/classify", {"texts": [""]}, 400),
    ("cls", "/classify", {"texts": ["   "]}, 400),
    ("cls", "/classify", {"texts": [1, 2]}, 400),
    ("cls", "/classify", {"texts": "not a list"}, 400),
    ("cls", "/classify", {"texts": [["only one"]]}, 400),
    ("cls", "/classify", {"texts": [["a", "b", "c"]]}, 400),
    ("cls", "/classify", {"text": "wrong field"}, 400),
    ("cls", "/classify", {"texts": ["x"] * 65}, 400),
    ("cls", "/classify", {"texts": ["x" * 20_001]}, 400),
    ("cls", "/classify", None, 400),
    ("cls", "/answer", {"question": "q?", "context": "c"}, 404),
    ("cls", "/detect", {"text": "a"}, 404),
    ("qa", "/answer", {"question": "q?"}, 400),
    ("qa", "/answer", {"question": "", "context": "c"}, 400),
    ("qa", "/answer", {"question": "q?", "context": 5}, 400),
    ("qa", "/classify", {"texts": ["a"]}, 404),
    ("disc", "/detect", {"text": ["a"]}, 400),
    ("disc", "/classify", {"texts": ["a"]}, 404),
    ("disc", "/nowhere", {"x": 1}, 404),
]


@pytest.mark.parametrize("server,path,body,status", BAD, ids=[f"{s}{p}-{i}" for i, (s, p, _, _) in enumerate(BAD)])
def test_bad_request_gets_documented_status(env: dict, server: str, path: str, body, status: int) -> None:
    s = env["servers"][server]
    r = s.post(path, json=body) if body is not None else s.post(path, content=b'{"texts": [',
                                                              headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert isinstance(r.json(), dict) and r.json()["error"]


def test_oversized_body_is_413_not_5xx(env: dict) -> None:
    s = env["servers"]["cls"]
    big = {"texts": ["word " * 4000] * 60}  # ~1.2 MB
    assert s.post("/classify", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed body is counted
        yield b'{"texts": ["'
        for _ in range(300):
            yield b"x" * 4096
        yield b'"]}'

    r = s.post("/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    # urllib sends the whole body before it reads the answer: the server reads (and drops) it
    # first, so the client sees the 413, not a broken pipe or a connection reset
    body = b'{"texts": ["' + b"x" * (4 << 20) + b'"]}'
    req = urllib.request.Request(f"{s.url}/classify", data=body, headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 413 and "bytes" in json.loads(err.value.read())["error"]
    assert s.post("/classify", json={"texts": ["still fine"]}).status_code == 200


def test_wrong_method_is_json_4xx(env: dict) -> None:
    r = httpx.get(f"{env['servers']['cls'].url}/classify")
    assert r.status_code == 405 and r.json()["error"]


def test_client_errors_log_one_line_without_traceback(env: dict) -> None:
    """A 4xx is the client's problem: one log line with its status and reason (besides the access
    log's line for every request), never a traceback."""
    s = env["servers"]["cls"]
    offset = s.log.stat().st_size
    json_headers = {"content-type": "application/json"}
    answers = [s.post("/classify", json={"texts": []}), s.post("/classify", json={"texts": ["x" * 20_001]}),
               s.post("/classify", content=b'{"texts": [', headers=json_headers),
               s.post("/answer", json={"question": "q?", "context": "c"}), s.post("/nowhere", json={"x": 1}),
               httpx.get(f"{s.url}/classify"), s.post("/classify", content=b"x" * (2 << 20), headers=json_headers)]
    assert [r.status_code for r in answers] == [400, 400, 400, 404, 404, 405, 413]
    assert httpx.get(f"{s.url}/metadata").status_code == 200  # its access line marks the end of this test's log
    deadline = time.monotonic() + 10
    while "path=/metadata" not in (log := s.log.read_bytes()[offset:].decode()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "path=/metadata" in log, log
    lines = [line for line in log.splitlines() if "(scheme=http," not in line]  # all but access-log lines
    assert "Traceback" not in log and "[ERROR]" not in log, log
    assert len(lines) <= len(answers), lines
    assert any("400 Bad Request on /classify [POST]: texts: List should have at least 1 item" in line
               for line in lines), lines
    assert any("404 Not Found on /answer [POST]: /answer needs a qa model" in line for line in lines), lines
    for name, server in env["servers"].items():  # nor after every bad request of the tests above
        assert "Traceback" not in server.log.read_text(), name


# --- overload and slow clients: a one-line JSON 503 with Retry-After, never a traceback ----

@pytest.fixture(scope="module")
def strained(env: dict) -> Iterator[Server]:
    """A classifier server with small limits, so that a test's load exceeds them: 4 requests in
    flight, a 300 ms batching budget, a 2 s body deadline."""
    s = Server({"ELECTRA_MODEL_DIR": str(env["root"] / "x_cls"), "ELECTRA_MAX_IN_FLIGHT": "4",
                "ELECTRA_MAX_LATENCY_MS": "300", "ELECTRA_BODY_TIMEOUT_S": "2"}, env["root"] / "strained.log")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def test_overload_is_a_json_503_with_retry_after_and_no_traceback(strained: Server) -> None:
    """12 clients each send two of the largest requests allowed (64 texts, just under 1 MiB):
    what the server cannot take is shed by its in-flight cap or by adaptive batching, each as a
    one-line JSON 503 with Retry-After and one log line; it answers again once the load is gone."""
    limits = httpx.get(f"{strained.url}/metadata").json()["limits"]
    assert limits["max_in_flight"] == 4 and limits["body_timeout_s"] == 2 and limits["max_latency_ms"] == 300
    words = "the film is a gripping , beautifully acted story of a family in trouble".split()
    text = " ".join(words[i % len(words)] for i in range(3000))[:16_000]
    body = json.dumps({"texts": [text] * 64}).encode()
    assert len(body) <= limits["max_body_bytes"]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: strained.post("/classify", content=body,
                                                         headers={"content-type": "application/json"}), range(24)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    for r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "2" and "\n" not in r.text, r.text
            assert r.json()["error"].endswith("retry after 2 s"), r.text
    assert strained.post("/classify", json={"texts": ["still fine"]}).status_code == 200
    log = strained.log.read_text()
    assert "Traceback" not in log and "[ERROR]" not in log, log[-3000:]
    assert log.count("503 Service Unavailable on /classify [POST]") == statuses.count(503)


def test_a_half_sent_body_gets_408_and_its_connection_closed(strained: Server) -> None:
    """A client that announces 1,000 bytes and sends 11 holds its connection only until the body
    deadline: then a JSON 408 and the server closes the connection."""
    with socket.create_connection(("127.0.0.1", strained.port), timeout=30) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"texts\": [")
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the connection (or the 30 s timeout)
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), answer
    assert json.loads(body) == {"error": "request body not received within 2 s"}
    assert strained.post("/classify", json={"texts": ["still fine"]}).status_code == 200


# --- the OpenAPI document (/docs.json, the Swagger UI at / and /docs) --------------------------------

@pytest.mark.parametrize("server,served", [("cls", "/classify"), ("qa", "/answer"), ("disc", "/detect")])
def test_openapi_describes_the_service_and_its_model(env: dict, server: str, served: str) -> None:
    s = env["servers"][server]
    doc = httpx.get(f"{s.url}/docs.json").json()
    meta = httpx.get(f"{s.url}/metadata").json()
    assert doc["info"]["title"] == "ELECTRA inference" and doc["info"]["version"] == __version__
    assert f"This server loaded **{meta['task']}**" in doc["info"]["description"]
    assert f"`POST {served}`" in doc["info"]["description"]
    assert {"/classify", "/answer", "/detect", "/metadata", "/playground", "/livez", "/readyz"} <= set(doc["paths"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert len(op.get("summary", "")) > 5 and len(op.get("description", "")) > 20, (method, path)
    assert "limits" in doc["paths"]["/metadata"]["get"]["description"]
    for path in ("/classify", "/answer", "/detect"):
        op = doc["paths"][path]["post"]
        assert "Takes " in op["description"] and "Returns " in op["description"]  # what it takes and gives
        assert "another kind answers 404" in op["description"] and "413" in op["responses"]
        # the endpoints this model does not serve say so, in the summary too
        assert ("this endpoint answers 404" in op["description"]) is (path != served), path
        assert ("404 here" in op["summary"]) is (path != served), path


def test_docs_leads_to_the_swagger_ui(env: dict) -> None:
    s = env["servers"]["cls"]
    assert httpx.get(f"{s.url}/docs").status_code == 307
    page = httpx.get(f"{s.url}/docs", follow_redirects=True)
    assert page.status_code == 200 and str(page.url) == f"{s.url}/" and "swagger" in page.text.lower()
    assert "307" in httpx.get(f"{s.url}/docs.json").json()["paths"]["/docs"]["get"]["responses"]


def test_unknown_registry_alias_stops_serve_at_once(env: dict, tmp_path: Path) -> None:
    """A wrong alias exits `bentoml serve` before any worker starts (no restart loop), leaving
    no download directory behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    bad = {**env["registry"], "ELECTRA_MODEL_URI": "models:/electra-qa-test@nope", "TMPDIR": str(tmp)}
    s = Server(bad, tmp_path / "alias.log")
    try:
        assert s.proc.wait(timeout=60) != 0
    finally:
        s.stop()
    assert "models:/electra-qa-test@nope: not in the MLflow registry" in one_line_error(tmp_path / "alias.log")
    assert list(tmp.glob("electra-model-*")) == []


def test_a_registry_download_lives_as_long_as_the_server(env: dict, tmp_path: Path) -> None:
    """models:/NAME@ALIAS is downloaded into a temporary directory while the server runs and
    removed when it stops."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    s = Server({**env["registry"], "TMPDIR": str(tmp)}, tmp_path / "download.log")
    try:
        s.wait_ready()
        held = list(tmp.glob("electra-model-*"))
        assert held and any(held[0].rglob("metadata.json"))
    finally:
        s.stop()
    assert list(tmp.glob("electra-model-*")) == [], (tmp_path / "download.log").read_text()[-2000:]


def test_missing_model_stops_serve_with_clear_error(tmp_path: Path) -> None:
    s = Server({"ELECTRA_MODEL_DIR": str(tmp_path / "nope")}, tmp_path / "fail.log")
    try:
        assert s.proc.wait(timeout=60) != 0
    finally:
        s.stop()
    assert "metadata.json: missing" in one_line_error(tmp_path / "fail.log")


def one_line_error(log: Path) -> str:
    """The log of a server that refused to start: one line, no traceback."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in log.read_text(), lines
    return lines[0]


@pytest.mark.parametrize("checksums", [True, False])
def test_damaged_model_stops_serve_at_once_naming_the_file(env: dict, tmp_path: Path, checksums: bool) -> None:
    """A truncated model.onnx stops `bentoml serve` before any worker starts: a non-zero exit
    within 30 s and one line naming the file (by its checksum, or, for an export that records
    none, because ONNX Runtime cannot load it), instead of workers restarting forever."""
    bad = tmp_path / "x_cls"
    shutil.copytree(env["root"] / "x_cls", bad)
    with open(bad / "model.onnx", "r+b") as f:
        f.truncate(1000)
    if not checksums:
        meta = json.loads((bad / "metadata.json").read_text())
        (bad / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    s = Server({"ELECTRA_MODEL_DIR": str(bad)}, tmp_path / "damaged.log")
    try:
        assert s.proc.wait(timeout=30) != 0
    finally:
        s.stop()
    line = one_line_error(tmp_path / "damaged.log")
    assert f"{bad / 'model.onnx'}: " + ("sha256" if checksums else "ONNX Runtime cannot load it") in line, line


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("server", ["cls", "disc", "qa"])
def test_playground_shows_what_the_endpoint_answers(env: dict, tmp_path: Path, server: str) -> None:
    """Headless Chromium opens /playground with a filled-in form (the page runs it), and the page
    shows the endpoint's answer: the label, the answer span, or one shaded span per token."""
    import urllib.parse

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package when it can)")
    s = env["servers"][server]
    if server == "qa":
        question, context = "Who wrote the letter?", "The letter was written by Jane Austen in 1811."
        query = {"question": question, "context": context}
        answer = s.post("/answer", json=query).json()
        expected = f'<b id="answer">{answer["answer"]}</b>' if answer["has_answer"] else "no answer in the context"
    elif server == "disc":
        query = {"text": "the chef cooked the meal and the guests ate the car"}
        n = len(s.post("/detect", json=query).json()["tokens"])
        expected = None
    else:
        query = {"text": "a warm, funny and beautifully acted film"}
        expected = f'<b id="answer">{s.post("/classify", json={"texts": [query["text"]]}).json()[0]["label"]}</b>'
    url = f"{s.url}/playground?{urllib.parse.urlencode(query)}"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    page = dom[dom.find("<body"):dom.find("<script")]  # what the page shows, not its script's text
    if expected is None:
        assert page.count('class="tok"') == n, page
    else:
        assert expected in page, page
    if server == "cls":  # the model's evidence: a warning naming the baselines when it earned nothing
        assert 'id="evidence" class="warn"' in page and "Not a champion" in page and "random init 51.5" in page
    shot = tmp_path / f"playground-{server}.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,700", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 5000
