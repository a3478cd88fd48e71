"""The pipeline's parameters as a pydantic model: what `electra pipeline --help` lists and
what the CLI validates before it starts anything.

`PipelineParams` is read from the signature and docstring of `flows.pipeline.electra_pipeline`
(the Prefect UI form), so the parameters are written once. It lives apart because importing
Prefect costs seconds, and `electra --help` builds every subcommand's parser.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

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

# The GLUE tasks whose slices ship in the package; SST-2 first: its model is the one exported.
SAMPLE_GLUE_TASKS: list[str] = ["sst2", "cola", "mrpc", "stsb", "rte"]
# The CPU demo's fine-tuning: one seed, up to 2,000 examples, and the recipe measured for 2-layer
# models (docs/experiments.md): lr 5e-4 without layer decay (the reference 1e-4 / 0.8 under-fits
# them) and the head on the mean of the token states (+1.5 to +5.2 SST-2 points over [CLS]).
DEMO_FINETUNE: dict[str, Any] = {"seeds": [1], "max_train_examples": 2000, "lr": 5e-4, "layer_decay": 1.0,
                                 "pooling": "mean"}


def _docstring_args(doc: str) -> dict[str, str]:
    """{parameter: its description, on one line} from the `Args:` section of a Google-style docstring."""
    out: dict[str, str] = {}
    lines = doc.split("Args:", 1)[1].splitlines() if "Args:" in doc else []
    name = None
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 4 and ":" in line:
            name, text = line.strip().split(":", 1)
            out[name] = text.strip()
        elif indent > 4 and name is not None:
            out[name] += " " + line.strip()
        else:
            break
    return out


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
        raise ConfigError(f"{where}: {first['msg']}") from None
