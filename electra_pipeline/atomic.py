"""Atomic output directories: a directory is either the previous complete result or the new one.

Every stage that writes a directory (corpus, tokenizer, examples, checkpoints, HF exports,
fine-tuned models, ONNX exports) builds it in a hidden sibling and renames it into place, so an
interrupted run never leaves a half-written output and a failed one leaves the old one intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from electra_pipeline.errors import DataError


def ensure_dir(path: Path) -> Path:
    """mkdir -p, or a DataError naming the path when it (or a parent) is a regular file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise DataError(f"{p}: exists and is not a directory (cannot create {path} under it)")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def staged_dir(out_dir: Path, marker: str) -> Iterator[Path]:
    """Yield an empty sibling temp dir; on success it replaces `out_dir` in one rename.

    So an output directory is either the previous complete result or the new complete one,
    never half-written, and a failed build leaves `out_dir` untouched. `marker` is the file
    that proves an existing `out_dir` is ours: a non-empty directory without it is refused
    rather than deleted."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a directory")
        if not (out_dir / marker).exists() and any(out_dir.iterdir()):
            raise DataError(f"{out_dir}: exists, is not empty and has no {marker}; refusing to overwrite it")
    ensure_dir(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old)  # rename onto an empty dir is allowed
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
