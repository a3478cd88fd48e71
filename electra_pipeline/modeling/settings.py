"""Typed config dataclasses to and from dicts and files, and their field docstrings.

The docstring under each dataclass field (the convention of torchtitan's and tyro's configs) is
the one source for every flag's `--help` (`electra_cli.flags` builds the flags). Unknown keys
and wrongly typed values raise `ConfigError` naming the field.

    @dataclass
    class TrainConfig:
        lr: float = 5e-4
        \"\"\"Peak learning rate.\"\"\"
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from electra_pipeline import atomic
from electra_pipeline.errors import ConfigError

T = TypeVar("T")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its docstring, on one line} for a dataclass, inherited fields included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (built in a REPL): no help text
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def undocumented(cls: type) -> list[str]:
    """Fields of `cls` (and of nested config dataclasses, dotted) without a docstring."""
    missing = []
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
            missing += [f"{f.name}.{m}" for m in undocumented(f.type)]
        elif not docs.get(f.name):
            missing.append(f.name)
    return missing


# --- dict / file conversion --------------------------------------------------------

def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], name)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{name}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{name}: expected a string, got {type(value).__name__}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build `cls` from a plain dict; unknown keys and wrongly typed values are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown config key (known: {', '.join(sorted(names))})")
    kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a dataclass built from an incomplete dict
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a nested dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p}: not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    return data


def save(cfg: Any, path: str | Path) -> None:
    atomic.write_text(path, json.dumps(to_dict(cfg), indent=2, sort_keys=False) + "\n")


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, type, docstring) for every leaf field of a nested config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", tp, docs.get(f.name, "")))
    return out
