"""The service's HTTP guard: body limits and a read deadline, load shedding, and one JSON shape
and one log line for every error the client (or load) causes. No model code here.

`HttpGuard` is an ASGI middleware (`ElectraService.add_asgi_middleware`); `ExpectedErrorsInOneLine`
is a logging filter on BentoML's handlers. Per worker:

- a request body must arrive within ELECTRA_BODY_TIMEOUT_S (30 s) and fit MAX_BODY_BYTES (1 MiB),
  else 408 or 413 and the connection is closed: uvicorn (h11) has no body-read timeout, and
  BentoML's `traffic.timeout` answers 504 but leaves a half-sent body's connection open;
- at most ELECTRA_MAX_IN_FLIGHT (16) POST requests are admitted at a time; the next one gets 503
  at once. Within that, /classify's adaptive batching sheds a request that cannot be batched
  within its `max_latency_ms` (BentoML's ServiceUnavailable, also 503);
- every 503 is one line of JSON `{"error": ...}` with `Retry-After: 2`, and one WARNING log line,
  no traceback. BentoML's own cap, `traffic.max_concurrency`, is not used: it answers 429
  without Retry-After, from a middleware outside this one, so its answer cannot be shaped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError

MAX_BODY_BYTES = 1 << 20  # request body cap (1 MiB), enforced before parsing
MAX_DRAIN_BYTES = 16 << 20  # an over-cap body up to this size is read and dropped before the 413
BODY_TIMEOUT_S = 30.0  # the whole body must arrive within this; ELECTRA_BODY_TIMEOUT_S overrides
MAX_IN_FLIGHT = 16  # POST requests a worker takes at once; ELECTRA_MAX_IN_FLIGHT overrides
RETRY_AFTER_S = 2  # the Retry-After of every 503
# under BentoML's logger: `bentoml serve` configures that one (INFO), and leaves the root at WARNING
log = logging.getLogger("bentoml.electra")


def limits_from_env() -> dict[str, Any]:
    """The guard's limits: the defaults, or ELECTRA_BODY_TIMEOUT_S and ELECTRA_MAX_IN_FLIGHT."""
    return {"body_timeout_s": float(os.environ.get("ELECTRA_BODY_TIMEOUT_S") or BODY_TIMEOUT_S),
            "max_in_flight": int(os.environ.get("ELECTRA_MAX_IN_FLIGHT") or MAX_IN_FLIGHT),
            "max_body_bytes": MAX_BODY_BYTES}


class HttpGuard:
    """ASGI middleware: reads the request body (capped, with a deadline), sheds POST requests
    beyond `max_in_flight`, and gives every 4xx and 503 the same JSON shape {"error": ...}
    (BentoML wraps errors raised in endpoints in a list), a 503 with Retry-After.

    The body is read here, whole, before the app sees it. One over the cap is still read (and
    dropped) up to `max_drain_bytes` before the 413: a client that sends its whole body before
    reading the answer (Python's urllib, most simple clients) would otherwise get a broken pipe
    or a connection reset instead of the 413. A larger one, or one announced with
    `Expect: 100-continue`, is answered at once and the server closes the connection. A body
    that does not arrive within `body_timeout_s` gets 408 and the connection is closed."""

    def __init__(self, app: Any, max_body_bytes: int = MAX_BODY_BYTES, max_drain_bytes: int = MAX_DRAIN_BYTES,
                 body_timeout_s: float | None = None, max_in_flight: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max_drain_bytes
        self.body_timeout_s = body_timeout_s or limits_from_env()["body_timeout_s"]  # read as the worker builds its app
        self.max_in_flight = max_in_flight or limits_from_env()["max_in_flight"]
        self.in_flight = 0  # admitted POST requests not yet answered (one event loop: no lock needed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            body = await asyncio.wait_for(self._take_body(scope, receive), self.body_timeout_s)
        except asyncio.TimeoutError:
            return await _reply(send, 408, f"request body not received within {self.body_timeout_s:g} s", close=True)
        except _ClientGone:  # an answer nobody reads, but BentoML's timeout middleware waits for one
            return await _reply(send, 400, "the client disconnected before its request was complete")
        if isinstance(body, _TooLarge):
            return await _reply(send, 413, f"request body over {self.max_body_bytes} bytes", close=body.close)
        where = f"{scope.get('path')} [{scope.get('method')}]"
        if scope.get("method") == "POST" and self.in_flight >= self.max_in_flight:
            log.warning("503 Service Unavailable on %s: %d requests in flight (ELECTRA_MAX_IN_FLIGHT)",
                        where, self.in_flight)
            return await _reply(send, 503, _busy(f"the server is busy ({self.in_flight} requests in flight)"),
                                retry_after=True)
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
            if msg["type"] == "http.response.start" and (400 <= msg["status"] < 500 or msg["status"] == 503):
                start = msg
                return
            if start is None:
                return await send(msg)
            body_out += msg.get("body", b"")
            if msg.get("more_body"):
                return
            await _reply(send, start["status"], _error_of(start["status"], body_out),
                         retry_after=start["status"] == 503, headers=start["headers"])

        admitted = scope.get("method") == "POST"
        self.in_flight += admitted
        try:
            await self.app(scope, replay_receive, reshaping_send)
        finally:
            self.in_flight -= admitted

    async def _take_body(self, scope: dict, receive: Any) -> bytes | _TooLarge:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            if length.isdigit() and int(length) <= self.max_drain_bytes and \
                    headers.get(b"expect", b"").lower() != b"100-continue":
                await self._drain(receive)
                return _TooLarge(close=False)
            return _TooLarge(close=True)
        return await self._read_body(receive)

    async def _read_body(self, receive: Any) -> bytes | _TooLarge:
        """The whole request body, or _TooLarge when it is over the cap (the rest is then drained)."""
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
                return _TooLarge(close=False)
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


class _TooLarge:
    """The body is over the cap; `close`: answer at once and close (it was not read)."""

    def __init__(self, close: bool) -> None:
        self.close = close


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def _busy(reason: str) -> str:
    return f"{reason}; retry after {RETRY_AFTER_S} s"


def _error_of(status: int, body: bytes) -> dict[str, Any]:
    """{"error": ...} from an error response's body: BentoML's JSON (a dict, or a dict in a
    list), or Starlette's plain text (404, 405)."""
    phrase = _phrase(status)
    try:
        data = json.loads(body)
    except ValueError:
        data = {"error": body.decode("utf-8", "replace").strip() or phrase}
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not (isinstance(data, dict) and "error" in data):
        data = {"error": phrase, "detail": data}
    if status == 503:  # from adaptive batching, BentoML says "An unexpected error has occurred": it is load
        reason = str(data["error"])
        data = {"error": _busy("the server is overloaded (the request could not be batched within its latency "
                               "budget)" if reason.startswith("An unexpected error") else reason)}
    return data


async def _reply(send: Any, status: int, error: str | dict[str, Any], *, close: bool = False,
                 retry_after: bool = False, headers: list | None = None) -> None:
    """A whole JSON response; `close`: the server closes the connection after it (h11 does on
    `Connection: close`), for a request whose body was not read."""
    body = json.dumps(error if isinstance(error, dict) else {"error": error}).encode()
    keep = [(k, v) for k, v in headers or [] if k.lower() not in (b"content-length", b"content-type")]
    extra = [(b"connection", b"close")] * close + [(b"retry-after", str(RETRY_AFTER_S).encode())] * retry_after
    await send({"type": "http.response.start", "status": status,
                "headers": [*keep, (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


class ExpectedErrorsInOneLine(logging.Filter):
    """BentoML logs every error an endpoint raises with its traceback, a client's bad request and
    a shed request included; that traceback says nothing about the server and buries real
    failures. A 4xx (pydantic validation, or a BentoML error with a 4xx code) becomes one INFO
    line with the status and the reason, a 503 (ServiceUnavailable: adaptive batching shed the
    request) one WARNING line; everything else (a 500) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        level = logging.INFO
        if isinstance(exc, ValidationError):
            status, reason = 400, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                                            for e in exc.errors(include_url=False)[:3])
        elif isinstance(exc, ServiceUnavailable):
            status, reason, level = 503, str(exc) or "overloaded", logging.WARNING
        elif isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
            status, reason = exc.error_code.value, str(exc)
        else:
            return True
        where = record.getMessage().removeprefix("Exception on ")
        record.msg, record.args = f"{status} {_phrase(status)} on {where}: {' '.join(reason.split())[:300]}", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return True


def log_expected_errors_in_one_line() -> None:
    """Put ExpectedErrorsInOneLine first on the handlers of BentoML's logger (a handler filter
    also sees records from its child loggers, where BentoML logs endpoint errors); idempotent."""
    for handler in logging.getLogger("bentoml").handlers:
        if not any(isinstance(f, ExpectedErrorsInOneLine) for f in handler.filters):
            handler.filters.insert(0, ExpectedErrorsInOneLine())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
