"""Help text of config fields: the docstring under each dataclass field (the convention of
torchtitan's and tyro's configs) is the one source for every flag's `--help`.

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
import textwrap


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
