"""BentoML service for an exported ELECTRA model: classify, answer, detect, metadata.

    ELECTRA_MODEL_DIR=runs/export/sst2 bentoml serve serving.service:ElectraService --port 3000

The model is loaded once per worker in `__init__` from ELECTRA_MODEL_DIR (an `electra export`
directory) or ELECTRA_MODEL_URI (`models:/<name>@<alias>` in the MLflow registry at
MLFLOW_TRACKING_URI, downloaded to a local directory); ELECTRA_QUANTIZED=1 serves model.int8.onnx.
All pre/post-processing is `electra_pipeline.inference`, the same code the export was verified
with; this file only adds HTTP: typed request validation, limits, and error mapping.

Limits: at most MAX_ITEMS texts per /classify request, MAX_TEXT_CHARS per text, MAX_CONTEXT_CHARS
per QA context, and the body limits, read deadline and load shedding of `guard.py` (1 MiB, 30 s,
16 requests in flight, then 503 with Retry-After). Bad requests answer 400 (validation), 404
(endpoint not served by the loaded model's kind), 408 or 413 (body late or too large), always
with a JSON body {"error": "..."} and one log line, no traceback; texts longer than the model's
window are truncated and flagged `truncated: true`. Binds 127.0.0.1 by default; pass `--host 0.0.0.0` to
listen on all interfaces. The OpenAPI document (/docs.json, Swagger UI at / and /docs) is `openapi.py`'s.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, ClassVar

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument
from fastapi import FastAPI
from pydantic import AfterValidator, BaseModel, Field, PlainValidator, StringConstraints
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from electra_pipeline.errors import DataError
from serving.guard import HttpGuard, limits_from_env, log, log_expected_errors_in_one_line
from serving.openapi import DescribedService, get_routes

MAX_ITEMS = 64  # texts per /classify request (also the adaptive batch cap)
MAX_TEXT_CHARS = 20_000  # per text; far beyond any model window, so truncation is the normal path
MAX_CONTEXT_CHARS = 100_000  # per QA context
MAX_QA_WINDOWS = 32  # doc-stride windows per question; beyond, the context is cut and flagged
# how long a /classify request may wait for its batch before adaptive batching sheds it (503); read
# at import because BentoML takes it in the decorator
MAX_LATENCY_MS = int(os.environ.get("ELECTRA_MAX_LATENCY_MS") or 10_000)
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
    max_qa_windows, max_latency_ms, body_timeout_s, max_in_flight, max_body_bytes)."""
    return JSONResponse(bentoml.get_current_service().metadata())


PLAYGROUND = Path(__file__).with_name("playground.html")


async def _playground(_: Request) -> HTMLResponse:
    """An HTML page to try the model in a browser.

    Type a text (or a text pair; or a question and a context) and see the labels' probabilities,
    the answer span, or each token shaded by its replaced probability: plain HTML + JavaScript
    over this service's API. Query parameters fill the form and run it: `?text=...&text_b=...`
    or `?question=...&context=...`. Returns text/html."""
    return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))


async def _docs(_: Request) -> RedirectResponse:
    """The API documentation: redirects to the Swagger UI.

    BentoML serves the Swagger UI at `/` (with its own assets, so it works offline) over the
    OpenAPI document at `/docs.json`; `/docs` is where most web frameworks put it."""
    return RedirectResponse("./")  # relative: right behind a proxy that serves the app under a prefix


# A FastAPI app, so that BentoML puts its routes in the service's OpenAPI document; FastAPI's own
# /docs and /openapi.json are off (the service's are BentoML's).
_extra_routes = get_routes(FastAPI(openapi_url=None, docs_url=None, redoc_url=None),
                           {"/metadata": (_metadata, JSONResponse), "/playground": (_playground, HTMLResponse),
                            "/docs": (_docs, RedirectResponse)})


DOWNLOADS: list[str] = []  # temporary directories holding registry downloads of this process
PINNED = "ELECTRA_PINNED_VERSION"  # set by `check_model` for the workers: {"uri", "pinned", "version"}


def remove_downloads() -> None:
    while DOWNLOADS:
        shutil.rmtree(DOWNLOADS.pop(), ignore_errors=True)


def pin(uri: str) -> dict[str, Any]:
    """{"uri", "pinned", "version"}: the registry version `uri`'s alias names now, and the URI of
    exactly that version (`models:/<name>/<version>`), so that what was checked is what the
    workers load even if the alias moves meanwhile; a wrong name or alias is one DataError."""
    from electra_pipeline.export.registry import check_model_uri

    version = check_model_uri(uri)
    return {"uri": uri, "pinned": version["uri"] if version else uri, "version": version and version["version"]}


def download(uri: str, env: dict[str, str] | os._Environ) -> tuple[Path, str | None]:
    """A registry model as a local export directory of this worker, and its registry version
    (None for a `runs:/` URI): the version `check_model` pinned, else the one the alias names
    now. The directory lives as long as the worker (see `remove_downloads`)."""
    from electra_pipeline.export.registry import download_model

    pinned = json.loads(env.get(PINNED) or "{}")
    if pinned.get("uri") != uri:  # the service runs without `bentoml serve`'s deployment hook
        pinned = pin(uri)
    dst = tempfile.mkdtemp(prefix="electra-model-")
    DOWNLOADS.append(dst)
    atexit.register(remove_downloads)
    return download_model(pinned["pinned"], dst), pinned["version"]


def resolve_model_dir(env: dict[str, str] | os._Environ) -> tuple[Path, str, str | None]:
    """(local export directory, where it came from, registry version or None): ELECTRA_MODEL_DIR,
    else ELECTRA_MODEL_URI (downloaded), else an export baked into the Bento at serving/model
    (see bentofile.yaml)."""
    if env.get("ELECTRA_MODEL_DIR"):
        return Path(env["ELECTRA_MODEL_DIR"]), env["ELECTRA_MODEL_DIR"], None
    if uri := env.get("ELECTRA_MODEL_URI"):
        model_dir, version = download(uri, env)
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
    input, 404 for an endpoint of another model kind, 408 for a body not sent within its
    deadline, 413 for a body over 1 MiB, 503 with `Retry-After` when the server is overloaded;
    inputs longer than the model's window are cut and flagged `truncated: true`."""

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
        log_expected_errors_in_one_line()  # here, not at import: the worker has configured its logging by now

    @bentoml.on_deployment
    def check_model() -> None:
        """Once, in the `bentoml serve` process before any worker starts: load the model as a
        worker will (registry download, file names, sha256 of every file against metadata.json,
        the ONNX Runtime session, the tokenizer; on the CPU, so that this process holds no GPU
        context). A missing, damaged or wrong model stops the server with one line naming the
        file and a non-zero exit, instead of workers failing and restarting forever. A registry
        alias is pinned to the version it names now (PINNED, which the workers download), and the
        log says which."""
        from electra_pipeline.errors import PipelineError
        from electra_pipeline.export.registry import download_model
        from electra_pipeline.inference import Predictor

        quantized = os.environ.get("ELECTRA_QUANTIZED") == "1"
        try:
            uri = os.environ.get("ELECTRA_MODEL_URI") if not os.environ.get("ELECTRA_MODEL_DIR") else None
            if uri:  # checked in a download of its own, removed at once; the workers download the pinned version
                # a server log is no terminal: no progress bar per download (the workers inherit this)
                os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
                pinned = pin(uri)
                os.environ[PINNED] = json.dumps(pinned)
                with tempfile.TemporaryDirectory(prefix="electra-check-") as tmp:
                    model_dir = download_model(pinned["pinned"], tmp)
                    p = Predictor.load(model_dir, quantized=quantized, providers=["CPUExecutionProvider"])
                source, version = uri, pinned["version"]
            else:
                model_dir, source, version = resolve_model_dir(os.environ)
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
            # and whether the model earned the champion alias (baselines.earned); null without baselines
            "evaluation": m.get("evaluation"),
            # names, not the server's paths: a registry URI as given, a local model by its directory name
            "model_file": Path(self.predictor.model_file).name, "providers": self.predictor.session.get_providers(),
            "source": self.source if "://" in self.source or self.source.startswith("models:/")
            else Path(self.source).name, "opset": m.get("opset"), "max_abs_diff": m.get("max_abs_diff"),
            "limits": {"max_items": MAX_ITEMS, "max_text_chars": MAX_TEXT_CHARS,
                       "max_context_chars": MAX_CONTEXT_CHARS, "max_qa_windows": MAX_QA_WINDOWS,
                       "max_latency_ms": MAX_LATENCY_MS, **limits_from_env()},
        }

    def _require(self, endpoint: str) -> None:
        kinds = self.ENDPOINT_KINDS[endpoint]
        if self.kind not in kinds:
            raise WrongModelKind(f"/{endpoint} needs a {' or '.join(kinds)} model, but this server loaded "
                                 f"{self.predictor.meta.get('task')!r} ({self.kind}); use "
                                 f"{self.metadata()['endpoint']}")

    @bentoml.api(batchable=True, max_batch_size=MAX_ITEMS, max_latency_ms=MAX_LATENCY_MS)
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


ElectraService.add_asgi_middleware(HttpGuard)
