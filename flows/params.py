"""The pipeline's parameters as a pydantic model: what `electra pipeline --help` lists and
what the CLI validates before it starts anything.

`PipelineParams` is read from the signature and docstring of `flows.pipeline.electra_pipeline`
(the Prefect UI form), so the parameters are written once. Each stage's config parameter
(`*_config`, and `config` of the stage flows) is a form generated from its config dataclass
(`overrides_model`). This module lives apart because importing Prefect costs seconds, and
`electra --help` builds every subcommand's parser.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from electra_pipeline.data.corpus.config import CorpusConfig
from electra_pipeline.data.examples_config import ExamplesConfig
from electra_pipeline.data.tokenizer import TokenizerConfig
from electra_pipeline.evaluation.finetune.recipe import FinetuneConfig
from electra_pipeline.modeling.config import PretrainConfig
from electra_pipeline.modeling.presets import DEFAULT as DEFAULT_PRESET  # noqa: F401 (a flow default, and the one default preset)
from electra_pipeline.modeling.settings import field_docs
from flows.base import SAMPLE  # noqa: F401 (a default of the flow signature read below)

Preset = Literal["tiny", "cpu", "small", "base", "large"]
Objective = Literal["electra", "electra_15", "mlm", "replace_mlm", "all_tokens_mlm", "mc_bert", "teams"]
Device = Literal["auto", "cpu", "cuda"]
# Constrained types shared with the flow signature, so the Prefect UI form and the server
# reject the same values the CLI does, before a run starts.
NonEmpty = Annotated[list[str], Field(min_length=1)]
Objectives = Annotated[list[Objective], Field(min_length=1)]
Steps = Annotated[int | None, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
Concurrency = Annotated[int, Field(ge=1, le=16)]


def overrides_model(cls: type) -> type[BaseModel]:
    """A pydantic model of a config dataclass's fields, every one optional: a value replaces the
    stage's default (the preset's, or one the pipeline derives), null or absent keeps it. The
    docstring under each dataclass field is its description, so a flow parameter of this type
    is a Prefect UI form with one documented input per field (a nested config is a nested form),
    and an unknown key or a wrongly typed value is refused with the field's dotted name."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = overrides_model(tp)
            fields[f.name] = (sub, Field(default_factory=sub, description=docs.get(f.name, "")))
        else:
            fields[f.name] = (tp | None, Field(None, description=docs.get(f.name, "")))
    return create_model(f"{cls.__name__}Overrides", __config__=ConfigDict(extra="forbid"),
                        __doc__=f"Overrides of `{cls.__name__}`; empty fields keep the stage's default.", **fields)


def overrides(value: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """The fields a user set, as the nested dict the config resolvers merge over the defaults
    (a plain dict passes through as it is)."""
    if not isinstance(value, BaseModel):
        return dict(value or {})

    def given(d: dict[str, Any]) -> dict[str, Any]:  # nested forms left empty are not overrides
        pruned = {k: given(v) if isinstance(v, dict) else v for k, v in d.items()}
        return {k: v for k, v in pruned.items() if v != {}}

    return given(value.model_dump(exclude_none=True))


CorpusOverrides = overrides_model(CorpusConfig)
TokenizerOverrides = overrides_model(TokenizerConfig)
ExamplesOverrides = overrides_model(ExamplesConfig)
PretrainOverrides = overrides_model(PretrainConfig)
FinetuneOverrides = overrides_model(FinetuneConfig)

# The GLUE tasks whose slices ship in the package: the main job probes them all and fine-tunes
# SST-2, whose model is the one exported and served.
SAMPLE_GLUE_TASKS: list[str] = ["sst2", "cola", "mrpc", "stsb", "rte"]
SERVED_TASKS: list[str] = ["sst2"]
# The CPU demo's fine-tuning: one seed on every shipped training example (SST-2: 8,000), and the
# recipe measured for 2-layer models (docs/experiments.md): lr 5e-4 without layer decay (the
# reference 1e-4 / 0.8 under-fits them) and the head on the mean of the token states (+1.5 to
# +5.2 SST-2 points over [CLS]).
DEMO_FINETUNE: dict[str, Any] = {"seeds": [1], "lr": 5e-4, "layer_decay": 1.0, "pooling": "mean"}


def _docstring_args(doc: str) -> dict[str, str]:
    """{parameter: its description} from the `Args:` section of a Google-style docstring, parsed
    by griffe as Prefect parses it for the UI form, so both show the same text."""
    import logging

    from griffe import Docstring, DocstringSectionKind, Parser, parse

    logging.getLogger("griffe").disabled = True  # it warns about a docstring without a signature
    sections = parse(Docstring(doc), Parser.google)
    return {p.name: p.description for s in sections if s.kind == DocstringSectionKind.parameters for p in s.value}


def _model_of_flow(source: Path, function: str) -> type[BaseModel]:
    """A pydantic model of `function`'s parameters (types, defaults, docstring descriptions), read
    from its source the way `prefect deploy` reads a flow's entrypoint: the flow signature is the
    one place the parameters are written, and the CLI gets them without importing Prefect. The
    annotations and defaults are names and literals of this module."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    docs = _docstring_args(ast.get_docstring(fn) or "")
    names = globals() | {"Any": Any}

    def value(node: ast.expr) -> Any:
        return eval(compile(ast.Expression(node), str(source), "eval"), names)  # noqa: S307 (our own source)

    args = fn.args.args
    defaults = [None] * (len(args) - len(fn.args.defaults)) + list(fn.args.defaults)
    fields = {a.arg: (value(a.annotation), Field(value(d), description=docs.get(a.arg, "")))
              for a, d in zip(args, defaults)}
    return create_model("PipelineParams", __config__=ConfigDict(extra="forbid"),
                        __doc__="Every parameter of the `electra-pipeline` flow, with its default and help.", **fields)


PipelineParams = _model_of_flow(Path(__file__).with_name("pipeline.py"), "electra_pipeline")


def validated(values: dict[str, Any]) -> PipelineParams:
    """The parameters, or a ConfigError naming the first bad one (the CLI prints it on one line)."""
    from electra_pipeline.errors import ConfigError

    try:
        return PipelineParams(**values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        msg = "unknown config key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{where}: {msg}") from None
