"""The service's OpenAPI document (GET /docs.json, the Swagger UI at / and /docs, a Bento's openapi.yaml).

BentoML 1.4 has no option for the document's title or version: it takes the title from the
service name, the version from a built Bento's tag ("None" under `bentoml serve`), the
description from the Bento's README (BentoML's own under `bentoml serve`), and each API's
description from its method's docstring; it describes the routes of a mounted app only when the
app is FastAPI's (`get_routes` builds /metadata, /playground and /docs so). `DescribedService`
(passed as `@bentoml.service(service_class=...)`) overrides the `openapi_spec` property BentoML
builds the document from, and completes it: title, package version, what the loaded model is, a
summary (a docstring's first line) and a description for every endpoint, and, on endpoints for
other model kinds, that they answer 404 here.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import bentoml
from bentoml.exceptions import BentoMLException

from electra_pipeline import __version__

TITLE = "ELECTRA inference"
INFRA_SUMMARIES = {"/livez": "Liveness: 200 while the server runs", "/readyz": "Readiness: 200 once the model is loaded",
                   "/healthz": "Liveness (deprecated: use /livez)", "/metrics": "Prometheus metrics, text format"}


def split_doc(doc: str | None) -> tuple[str, str]:
    """(summary, description) from a docstring: its first paragraph as one line, and the whole text."""
    text = inspect.cleandoc(doc or "")
    first = text.split("\n\n", 1)[0]
    return " ".join(first.split()).rstrip("."), text


def describe_model(meta: dict[str, Any]) -> str:
    """What the loaded model is, in Markdown, from the service's `metadata()`."""
    kind = meta["kind"]
    what = {"classification": f"a classifier over {len(meta['labels'])} labels ({', '.join(meta['labels'])})",
            "regression": "a regression model (one predicted value per text or pair)",
            "qa": "an extractive question-answering model"
                  + (" that may answer 'no answer' (SQuAD 2.0)" if meta.get("answerability") else " (SQuAD 1.1)"),
            "discriminator": "a raw replaced-token-detection discriminator"}[kind]
    lines = [f"This server loaded **{meta.get('task') or kind}**, {what}, with a {meta['max_seq_length']}-token "
             f"window: `{meta['model_file']}` from `{meta['source']}` on {', '.join(meta['providers'])}.",
             f"Its endpoint is `POST {meta['endpoint']}`; the endpoints of other model kinds answer 404."]
    if meta.get("metrics"):
        lines.append("Dev metrics: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in meta["metrics"].items()) + ".")
    lines.append("`GET /metadata` gives this as JSON; `GET /playground` is a page to try the model.")
    return "\n\n".join(lines)


def kind_note(kinds: tuple[str, ...], loaded_kind: str | None, use: str | None) -> tuple[str, str]:
    """(summary suffix, description paragraph) for an endpoint served only by some model kinds."""
    note = (f"Served by {' and '.join(kinds)} models; a server that loaded another kind answers 404 with the "
            "endpoint to use (GET /metadata says which).")
    if loaded_kind is None or loaded_kind in kinds:
        return "", note
    return (f" (404 here: {loaded_kind} model)",
            f"{note}\n\n**This server loaded a {loaded_kind} model: this endpoint answers 404; use `{use}`.**")


def _loaded_service() -> Any | None:
    """The service instance in a serving worker; None where no model is loaded (`bentoml build`)."""
    try:
        return bentoml.get_current_service()
    except BentoMLException:
        return None


class DescribedService(bentoml.Service):
    """A `bentoml.Service` whose OpenAPI document describes this service and its loaded model.

    The inner class gives `ENDPOINT_KINDS` ({api name: model kinds it serves}) and its
    docstring; the instance, once loaded, gives `metadata()`."""

    @property
    def openapi_spec(self) -> Any:

        spec = super().openapi_spec
        instance = _loaded_service()
        meta = instance.metadata() if instance is not None else None
        endpoint_kinds: dict[str, tuple[str, ...]] = getattr(self.inner, "ENDPOINT_KINDS", {})
        too_large = {"description": "Payload Too Large: a request body over "
                     + (f"{meta['limits']['max_body_bytes']} bytes" if meta else "the cap (GET /metadata: limits)")}
        paths = dict(spec.paths)
        for name, api in self.apis.items():
            op = paths[api.route].post
            summary, description = split_doc(api.doc)
            responses = {**op["responses"], 413: too_large}
            if name in endpoint_kinds:
                suffix, note = kind_note(endpoint_kinds[name], meta and meta["kind"], meta and meta["endpoint"])
                summary, description = summary + suffix, f"{description}\n\n{note}"
                responses[404] = _with(responses[404], description="Not Found: the loaded model's kind does "
                                                                    "not serve this endpoint")
            post = _with(op, summary=summary, description=description,
                         responses=dict(sorted(responses.items(), key=lambda kv: int(kv[0]))))
            paths[api.route] = attrs.evolve(paths[api.route], post=post)
        for path, summary in INFRA_SUMMARIES.items():
            if path in paths and paths[path].get is not None:
                paths[path] = attrs.evolve(paths[path], get=_with(paths[path].get, summary=summary))
        model = describe_model(meta) if meta else "The model is loaded when the server starts; GET /metadata says which."
        info = attrs.evolve(spec.info, title=TITLE, version=__version__, contact=None,
                            description=f"{inspect.cleandoc(self.inner.__doc__ or '')}\n\n{model}")
        return attrs.evolve(spec, info=info, paths=paths)


def _with(op: Any, **fields: Any) -> Any:
    """An OpenAPI operation (BentoML builds some as dicts, some as attrs objects) with fields set."""
    return {**op, **fields} if isinstance(op, dict) else attrs.evolve(op, **fields)


def get_routes(app: Any, routes: dict[str, tuple[Any, type]]) -> Any:
    """`app` (FastAPI) with GET routes {path: (endpoint, response class)}, each summarised and
    described by its endpoint's docstring, in the service's tag: BentoML merges a mounted FastAPI
    app's paths into the service's document."""
    from bentoml._internal.service.openapi import APP_TAG
    from starlette.responses import RedirectResponse

    for path, (endpoint, response_class) in routes.items():
        summary, description = split_doc(endpoint.__doc__)
        app.add_api_route(path, endpoint, methods=["GET"], summary=summary, description=description,
                          response_class=response_class, tags=[APP_TAG.name], include_in_schema=True,
                          status_code=307 if issubclass(response_class, RedirectResponse) else 200)
    return app
