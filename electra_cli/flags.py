"""Flags built from the config dataclasses: type, default and help come from the dataclass, so no
command repeats them.

The docstring under each dataclass field (`electra_pipeline.modeling.settings.field_docs`) is the one
source of a flag's `--help`. Two builders:

- `add_config_flags`: one `--section.field` flag per leaf of a nested config (`electra pretrain`);
  values stay strings, and `overrides_from_args` hands them to `presets.resolve`, which coerces
  and validates them.
- `add_field_flags`: `--field-name` flags for plain fields of a flat config (corpus, tokenizer,
  examples), typed by argparse; `fields_from_args` reads them back as keyword arguments.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any

from electra_pipeline.modeling.config import PretrainConfig
from electra_pipeline.modeling.presets import DEFAULT, preset
from electra_pipeline.modeling.settings import field_docs, leaf_fields


def unset(value: Any) -> bool:
    """None or an empty string or collection: a default that `--help` does not print (the field's
    docstring says what leaving it empty means)."""
    return value is None or value is argparse.SUPPRESS or (isinstance(value, (str, list, tuple, dict)) and not value)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`(default: X)` after a flag's help only where X says something: not for an unset default,
    not for an on/off switch, and not where the help already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if unset(action.default) or action.nargs == 0 or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_field_flags(parser: argparse.ArgumentParser, cls: type, names: list[str]) -> None:
    """`--field-name` flags for plain (int, float, str) fields of a config dataclass. Fields whose
    flag reads differently (`--cased` for `lowercase`) stay written out at the command."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    docs = field_docs(cls)
    for name in names:
        kinds = {hints[name], *typing.get_args(hints[name])} - {type(None)}
        kind = next(t for t in (int, float, str) if t in kinds)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=getattr(defaults, name),
                            help=docs.get(name, ""))


def fields_from_args(args: argparse.Namespace, cls: type, names: list[str]) -> dict[str, Any]:
    """The values of `add_field_flags` flags, as keyword arguments of `cls`."""
    return {name: getattr(args, name) for name in names}


def add_config_flags(parser: argparse.ArgumentParser, cls: type = PretrainConfig) -> None:
    """One `--a.b` flag per leaf field; values stay strings until `presets.resolve` coerces them.
    The help shows the default preset's value."""
    group = parser.add_argument_group("config fields (override the preset and --config file)")
    defaults = preset(DEFAULT)
    for name, tp, helptext in leaf_fields(cls):
        if name == "preset":
            continue
        default = defaults
        for part in name.split("."):
            default = getattr(default, part)
        kinds = {tp, *typing.get_args(tp)}  # `float | None` -> {float, None}
        metavar = next((m for t, m in ((bool, "BOOL"), (int, "INT"), (float, "FLOAT"), (str, "STR")) if t in kinds),
                       "VALUE")
        flags = [f"--{name}"]
        if "." not in name and "_" in name:
            flags.append(f"--{name.replace('_', '-')}")
        preset_value = "" if unset(default) else f"({defaults.preset} preset: {default})"
        group.add_argument(*flags, dest=f"cfg:{name}", metavar=metavar, default=None,
                           help=" ".join(part for part in (helptext, preset_value) if part))


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `add_config_flags` flags that were given, as nested overrides (`{"train": {"lr": "1e-3"}}`)."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith("cfg:") or value is None:
            continue
        node = out
        parts = key[4:].split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
