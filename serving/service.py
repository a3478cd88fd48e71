"""BentoML service for an exported ELECTRA model: classify, answer, detect, metadata.

    ELECTRA_MODEL_DIR=runs/export/sst2 bentoml serve serving.service:ElectraService --port 3000

The model is loaded once per worker in `__init__` from ELECTRA_MODEL_DIR (an `electra export`
directory) or ELECTRA_MODEL_URI (`models:/<name>@<alias>` in the MLflow registry at
MLFLOW_TRACKING_URI, downloaded to a local directory); ELECTRA_QUANTIZED=1 serves model.int8.onnx.
All pre/post-processing is `electra_pipeline.inference`, the same code the export was verified
with; this file only adds HTTP: typed request validation, limits, and error mapping.

Limits: at most MAX_ITEMS texts per /classify request, MAX_TEXT_CHARS per text, MAX_CONTEXT_CHARS
per QA context and MAX_BODY_BYTES per request body. Bad requests answer 400 (validation), 404
(endpoint not served by the loaded model's kind) or 413 (body too large; the body is read first, up
to MAX_DRAIN_BYTES, so that clients which send it whole see the 413), always with a JSON body
{"error": "..."} and one log line, no traceback; texts longer than the model's window are
truncated and flagged `truncated: true`. Binds 127.0.0.1 by default; pass `--host 0.0.0.0` to
listen on all interfaces. The OpenAPI document (/docs.json, Swagger UI at /) is `openapi.py`'s.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, ClassVar

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import AfterValidator, BaseModel, Field, PlainValidator, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from electra_pipeline.errors import DataError
from serving.openapi import DescribedService

MAX_ITEMS = 64  # texts per /classify request (also the adaptive batch cap)
MAX_TEXT_CHARS = 20_000  # per text; far beyond any model window, so truncation is the normal path
MAX_CONTEXT_CHARS = 100_000  # per QA context
MAX_QA_WINDOWS = 32  # doc-stride windows per question; beyond, the context is cut and flagged
MAX_BODY_BYTES = 1 << 20  # request body cap (1 MiB), enforced before parsing
MAX_DRAIN_BYTES = 16 << 20  # an over-cap body up to this size is read and dropped before the 413
BAKED_MODEL_DIR = Path(__file__).resolve().parent / "model"  # optional export shipped inside a Bento


def _not_blank(s: str) -> str:
    if not s.strip():
        raise ValueError("must contain non-whitespace text")
    return s


def _item(v: Any) -> str | tuple[str, str]:
    """One validator for "a text or a pair", so a bad item gets one error, not one per union arm."""
    texts = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) and len(v) == 2 else None
    if texts is None or not all(isinstance(t, str) for t in texts):
        raise ValueError("each item must be a text or a [text_a, text_b] pair of texts")
    for t in texts:
        if len(t) > MAX_TEXT_CHARS:
            raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
        _not_blank(t)
    return texts[0] if len(texts) == 1 else (texts[0], texts[1])


Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_not_blank)]
Context = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTEXT_CHARS), AfterValidator(_not_blank)]
# a text, or a [text_a, text_b] pair (NLI, paraphrase, STS)
Item = Annotated[str | tuple[str, str], PlainValidator(_item, json_schema_input_type=str | tuple[str, str])]


class ClassifyResult(BaseModel):
    label: str | None = Field(description="predicted class; null for regression")
    score: float = Field(description="probability of `label`; the predicted value for regression")
    scores: dict[str, float] = Field(description="probability of every label (empty for regression)")
    truncated: bool = Field(description="the input was cut to the model's max_seq_length tokens (or, before "
                                        "tokenizing, to 16 characters per token)")


class AnswerResult(BaseModel):
    answer: str = Field(description="exact substring of the context; empty when there is no answer")
    start: int | None = Field(description="character offset of the answer in the context")
    end: int | None = Field(description="character offset one past the answer's end")
    score: float | None = Field(description="start + end logit of the best span")
    has_answer: bool
    answerable_prob: float | None = Field(description="SQuAD 2.0 models: P(answerable); null otherwise")
    truncated: bool = Field(description="the question or the context was cut to the model's limits")


class TokenScore(BaseModel):
    token: str
    start: int = Field(description="character offset of the token in the text")
    end: int
    replaced_prob: float = Field(description="discriminator's P(this token was replaced)")


class DetectResult(BaseModel):
    tokens: list[TokenScore]
    truncated: bool


class WrongModelKind(InvalidArgument):
    """The endpoint exists but the loaded model cannot serve it (e.g. /answer on a classifier)."""

    error_code = HTTPStatus.NOT_FOUND


class HttpGuard:
    """ASGI middleware: caps the request body (Content-Length or streamed) and gives every 4xx
    the same JSON shape {"error": ...} (BentoML wraps errors raised in endpoints in a list).

    The body is read here, whole, before the app sees it. One over the cap is still read (and
    dropped) up to `max_drain_bytes` before the 413: a client that sends its whole body before
    reading the answer (Python's urllib, most simple clients) would otherwise get a broken pipe
    or a connection reset instead of the 413. A larger one, or one announced with
    `Expect: 100-continue`, is answered at once and the server closes the connection."""

    def __init__(self, app: Any, max_body_bytes: int = MAX_BODY_BYTES, max_drain_bytes: int = MAX_DRAIN_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max_drain_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = f"request body over {self.max_body_bytes} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            if length.isdigit() and int(length) <= self.max_drain_bytes and \
                    headers.get(b"expect", b"").lower() != b"100-continue":
                await self._drain(receive)
            return await self._reply(send, 413, too_large)
        try:
            body = await self._read_body(receive)
        except _ClientGone:
            return
        if body is None:  # over the cap: read and dropped
            return await self._reply(send, 413, too_large)
        replayed = False

        async def replay_receive() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # http.disconnect, for whoever listens for it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict | None = None
        body_out = b""

        async def reshaping_send(msg: dict) -> None:
            nonlocal start, body_out
            if msg["type"] == "http.response.start" and 400 <= msg["status"] < 500:
                start = msg
                return
            if start is None:
                return await send(msg)
            body_out += msg.get("body", b"")
            if msg.get("more_body"):
                return
            phrase = _phrase(start["status"])
            try:
                data = json.loads(body_out)
            except ValueError:  # Starlette's plain-text 404/405
                data = {"error": body_out.decode("utf-8", "replace").strip() or phrase}
            if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
                data = data[0]
            if not (isinstance(data, dict) and "error" in data):
                data = {"error": phrase, "detail": data}
            out = json.dumps(data).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
            await send({**start, "headers": [*headers, (b"content-type", b"application/json"),
                                             (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, replay_receive, reshaping_send)

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole request body, or None when it is over the cap (the rest is then drained)."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                raise _ClientGone
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_body_bytes:
                if msg.get("more_body"):
                    await self._drain(receive, seen)
                return None
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def _drain(self, receive: Any, seen: int = 0) -> None:
        """Read and drop the rest of the body, up to max_drain_bytes in all."""
        while seen <= self.max_drain_bytes:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body"):
                return

    @staticmethod
    async def _reply(send: Any, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class ClientErrorsInOneLine(logging.Filter):
    """BentoML logs every error an endpoint raises with its traceback, a client's bad request
    included; that traceback says nothing about the server and buries real failures. A 4xx
    (pydantic validation, or a BentoML error with a 4xx code) becomes one INFO line with the
    status and the reason; everything else (5xx) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            status, reason = 400, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                                            for e in exc.errors(include_url=False)[:3])
        elif isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
            status, reason = exc.error_code.value, str(exc)
        else:
            return True
        where = record.getMessage().removeprefix("Exception on ")
        record.msg, record.args = f"{status} {_phrase(status)} on {where}: {' '.join(reason.split())[:300]}", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def log_client_errors_in_one_line() -> None:
    """Put ClientErrorsInOneLine first on the handlers of BentoML's logger (a handler filter also
    sees records from its child loggers, where BentoML logs endpoint errors); idempotent."""
    for handler in logging.getLogger("bentoml").handlers:
        if not any(isinstance(f, ClientErrorsInOneLine) for f in handler.filters):
            handler.filters.insert(0, ClientErrorsInOneLine())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


@contextlib.contextmanager
def _as_bad_request() -> Iterator[None]:
    """The library's user-facing errors (PipelineError) are the client's problem: 400, not 500."""
    from electra_pipeline.errors import PipelineError

    try:
        yield
    except PipelineError as e:
        raise InvalidArgument(str(e)) from None


async def _metadata(_: Request) -> JSONResponse:
    """Describe the loaded model and this server's limits.

    Takes nothing. Returns JSON: `task`, `kind` (classification, regression, qa or discriminator),
    `labels`, `max_seq_length`, `endpoint` (the one this model serves), `answerability` (SQuAD
    2.0), dev `metrics`, `model_file`, ONNX Runtime `providers`, `source` (a registry URI, or an
    export directory's name), `opset`, `max_abs_diff` (ONNX vs PyTorch at export), `evaluation`
    (the dev score next to the majority class, the random-init twin and bag-of-words, the gain's
    95% interval, and whether the model earned the champion alias, with why; null when no
    baselines were recorded) and `limits` (max_items, max_text_chars, max_context_chars,
    max_qa_windows, max_body_bytes)."""
    return JSONResponse(bentoml.get_current_service().metadata())


PLAYGROUND = Path(__file__).with_name("playground.html")


async def _playground(_: Request) -> HTMLResponse:
    """An HTML page to try the model in a browser.

    Type a text (or a text pair; or a question and a context) and see the labels' probabilities,
    the answer span, or each token shaded by its replaced probability: plain HTML + JavaScript
    over this service's API. Query parameters fill the form and run it: `?text=...&text_b=...`
    or `?question=...&context=...`. Returns text/html."""
    return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))


_extra_routes = Starlette(routes=[Route("/metadata", _metadata, methods=["GET"]),
                                  Route("/playground", _playground, methods=["GET"])])


DOWNLOADS: list[str] = []  # temporary directories holding registry downloads of this process
CHECKED_DOWNLOAD = "ELECTRA_CHECKED_DOWNLOAD"  # set by `check_model` for the workers: {"uri", "dir", "version"}
# under BentoML's logger: `bentoml serve` configures that one (INFO), and leaves the root at WARNING
log = logging.getLogger("bentoml.electra")


def remove_downloads() -> None:
    while DOWNLOADS:
        shutil.rmtree(DOWNLOADS.pop(), ignore_errors=True)


def download(uri: str) -> tuple[Path, str | None]:
    """A registry model as a local export directory, and the registry version it resolved to
    (None for a `runs:/` URI). The version is pinned before the download, so the files are that
    version's even if the alias moves meanwhile. The directory is removed when this process
    stops (`remove_downloads`: atexit, and the workers' shutdown hook)."""
    from electra_pipeline.registry import check_model_uri, download_model

    version = check_model_uri(uri)  # a wrong name or alias: one DataError line
    dst = tempfile.mkdtemp(prefix="electra-model-")
    DOWNLOADS.append(dst)
    atexit.register(remove_downloads)
    return download_model(version["uri"] if version else uri, dst), version and version["version"]


def resolve_model_dir(env: dict[str, str] | os._Environ) -> tuple[Path, str, str | None]:
    """(local export directory, where it came from, registry version or None): ELECTRA_MODEL_DIR,
    else ELECTRA_MODEL_URI (the download `check_model` made and checked, or a new one), else an
    export baked into the Bento at serving/model (see bentofile.yaml)."""
    if env.get("ELECTRA_MODEL_DIR"):
        return Path(env["ELECTRA_MODEL_DIR"]), env["ELECTRA_MODEL_DIR"], None
    if uri := env.get("ELECTRA_MODEL_URI"):
        checked = json.loads(env.get(CHECKED_DOWNLOAD) or "{}")
        if checked.get("uri") == uri and Path(checked["dir"]).is_dir():
            return Path(checked["dir"]), uri, checked["version"]
        model_dir, version = download(uri)  # the service runs without `bentoml serve`'s deployment hook
        return model_dir, uri, version
    if (BAKED_MODEL_DIR / "metadata.json").is_file():
        return BAKED_MODEL_DIR, str(BAKED_MODEL_DIR), None
    raise DataError("set ELECTRA_MODEL_DIR (an `electra export` directory) or ELECTRA_MODEL_URI "
                    "(models:/<name>@<alias>) before starting the service")


@bentoml.asgi_app(_extra_routes, path="/")
@bentoml.service(
    service_class=DescribedService,  # the OpenAPI document's title, version and descriptions
    http={"host": "127.0.0.1", "port": 3000},  # loopback unless `--host` says otherwise
    traffic={"timeout": 60},
    workers=1,
)
class ElectraService:
    """An ELECTRA model, fine-tuned (or a raw replaced-token-detection discriminator), exported to
    ONNX and run by ONNX Runtime; which endpoint answers depends on the model's kind:
    `POST /classify` (classification, regression), `POST /answer` (extractive QA, SQuAD 1.1/2.0),
    `POST /detect` (replaced-token detection). Every error is JSON `{"error": ...}`: 400 for bad
    input, 404 for an endpoint of another model kind, 413 for a body over 1 MiB; inputs longer
    than the model's window are cut and flagged `truncated: true`."""

    # api name -> the model kinds it serves (a server loaded with another kind answers it 404)
    ENDPOINT_KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "classify": ("classification", "regression"), "answer": ("qa",), "detect": ("discriminator",)}

    def __init__(self) -> None:
        from electra_pipeline.inference import Predictor

        model_dir, self.source, self.registry_version = resolve_model_dir(os.environ)
        threads = int(os.environ.get("ELECTRA_THREADS", "0")) or None
        self.predictor = Predictor.load(model_dir, quantized=os.environ.get("ELECTRA_QUANTIZED") == "1",
                                        threads=threads, spin=os.environ.get("ELECTRA_ORT_SPIN") == "1")
        self.kind = self.predictor.kind
        log_client_errors_in_one_line()  # here, not at import: the worker has configured its logging by now

    @bentoml.on_deployment
    def check_model() -> None:
        """Once, in the `bentoml serve` process before any worker starts: load the model as a
        worker will (registry download, file names, sha256 of every file against metadata.json,
        the ONNX Runtime session, the tokenizer). A missing, damaged or wrong model stops the
        server with one line naming the file and a non-zero exit, instead of workers failing and
        restarting forever. A registry model is downloaded here, once, and handed to the
        workers (CHECKED_DOWNLOAD), and the log names the version its alias resolved to."""
        from electra_pipeline.errors import PipelineError
        from electra_pipeline.inference import Predictor

        try:
            uri = os.environ.get("ELECTRA_MODEL_URI") if not os.environ.get("ELECTRA_MODEL_DIR") else None
            if uri:
                model_dir, version = download(uri)
                os.environ[CHECKED_DOWNLOAD] = json.dumps({"uri": uri, "dir": str(model_dir), "version": version})
            model_dir, source, version = resolve_model_dir(os.environ)
            quantized = os.environ.get("ELECTRA_QUANTIZED") == "1"
            # CPU only: the check must not hold a GPU context in this process for the server's lifetime
            p = Predictor.load(model_dir, quantized=quantized, providers=["CPUExecutionProvider"])
        except PipelineError as e:
            raise BentoMLException(str(e)) from None
        verified = "sha256 verified" if p.meta.get("sha256") else "no sha256 in metadata.json: files not verified"
        log.info("Serving %s%s: %s (%s) from %s, %s", source, f" = registry version {version}" if version else "",
                 p.meta.get("task"), p.kind, p.model_file, verified)

    @bentoml.on_shutdown
    def remove_downloads(self) -> None:
        """A registry model was downloaded for this worker: remove it when the server stops (a
        worker stopped by a signal runs no atexit handlers)."""
        remove_downloads()

    def __is_ready__(self) -> bool:
        return self.predictor is not None

    def metadata(self) -> dict[str, Any]:
        m = self.predictor.meta
        endpoint = next(f"/{name}" for name, kinds in self.ENDPOINT_KINDS.items() if self.kind in kinds)
        return {
            "task": m.get("task"), "kind": self.kind, "labels": m.get("labels", []),
            "registry_version": self.registry_version,
            "max_seq_length": self.predictor.max_seq_length, "endpoint": endpoint,
            "answerability": m.get("answerability", False), "metrics": m.get("metrics", {}),
            # what the dev score means: its baselines, the gain over random init with its 95% interval,
            # and whether the model earned the champion alias (registry.earned); null without baselines
            "evaluation": m.get("evaluation"),
            # names, not the server's paths: a registry URI as given, a local model by its directory name
            "model_file": Path(self.predictor.model_file).name, "providers": self.predictor.session.get_providers(),
            "source": self.source if "://" in self.source or self.source.startswith("models:/")
            else Path(self.source).name, "opset": m.get("opset"), "max_abs_diff": m.get("max_abs_diff"),
            "limits": {"max_items": MAX_ITEMS, "max_text_chars": MAX_TEXT_CHARS,
                       "max_context_chars": MAX_CONTEXT_CHARS, "max_qa_windows": MAX_QA_WINDOWS,
                       "max_body_bytes": MAX_BODY_BYTES},
        }

    def _require(self, endpoint: str) -> None:
        kinds = self.ENDPOINT_KINDS[endpoint]
        if self.kind not in kinds:
            raise WrongModelKind(f"/{endpoint} needs a {' or '.join(kinds)} model, but this server loaded "
                                 f"{self.predictor.meta.get('task')!r} ({self.kind}); use "
                                 f"{self.metadata()['endpoint']}")

    @bentoml.api(batchable=True, max_batch_size=MAX_ITEMS, max_latency_ms=10_000)
    def classify(self, texts: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]) -> list[ClassifyResult]:
        """Classify texts or text pairs: a label and every label's probability for each.

        Takes `{"texts": [...]}`: 1 to 64 items, each a text or a `[text_a, text_b]` pair (NLI,
        paraphrase, STS), at most 20,000 characters a text. Returns a list in the same order, one
        `{"label", "score", "scores", "truncated"}` per item: `score` is the label's probability,
        or the predicted value for a regression model (STS-B; then `label` is null and `scores`
        empty); `truncated` says the input was cut to the model's max_seq_length tokens.
        Concurrent requests are batched adaptively (up to 64 texts per model call)."""
        self._require("classify")
        with _as_bad_request():
            return [ClassifyResult(**r) for r in self.predictor.classify(texts)]

    @bentoml.api
    def answer(self, question: Text, context: Context) -> AnswerResult:
        """Answer a question with a span of the context.

        Takes `{"question": "...", "context": "..."}` (a context of at most 100,000 characters,
        read in doc-stride windows, 32 at most). Returns `{"answer", "start", "end", "score",
        "has_answer", "answerable_prob", "truncated"}`: `context[start:end] == answer`; a SQuAD 2.0
        model answers only when its has-answer logit beats the threshold tuned on dev, otherwise
        `has_answer` is false and `answer` empty; `truncated` says the question or the context
        was cut to the model's limits."""
        self._require("answer")
        with _as_bad_request():
            return AnswerResult(**self.predictor.answer(question, context, max_windows=MAX_QA_WINDOWS))

    @bentoml.api
    def detect(self, text: Text) -> DetectResult:
        """Score each token of a text: the discriminator's probability that it was replaced.

        Takes `{"text": "..."}` (at most 20,000 characters). Returns `{"tokens": [{"token",
        "start", "end", "replaced_prob"}, ...], "truncated"}`, with character offsets into the
        text; a text longer than the model's window is cut (`truncated: true`)."""
        self._require("detect")
        with _as_bad_request():
            return DetectResult(**self.predictor.detect(text))


ElectraService.add_asgi_middleware(HttpGuard, max_body_bytes=MAX_BODY_BYTES)
