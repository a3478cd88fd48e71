"""Atomic output directories: a directory is either the previous complete result or the new one.

Every stage that writes a directory (corpus, tokenizer, examples, checkpoints, HF exports,
fine-tuned models, ONNX exports) builds it in a hidden sibling and renames it into place, so an
interrupted run never leaves a half-written output and a failed one leaves the old one intact.
Before the rename every file and the directory are fsynced and given the modes the umask allows
(libraries such as safetensors create 0600 files, unreadable to a serving container's user);
after it the parent directory is fsynced, so a power cut cannot leave the rename without its data.
A build killed outright leaves its hidden sibling behind; the next build of the same output
removes those whose process is gone.
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
    _remove_stale(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        yield tmp
        _finish(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-{os.getpid()}-", dir=out_dir.parent))
            os.replace(out_dir, old)  # rename onto an empty dir is allowed
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
        _fsync(out_dir.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a file whole or not at all: a temp sibling, fsync, rename, fsync the directory."""
    return write_bytes(path, text.encode("utf-8"))


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy `src` to `dst` whole or not at all (as `write_bytes`)."""
    return write_bytes(dst, Path(src).read_bytes())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file whole or not at all: a temp sibling, fsync, rename, fsync the directory; the
    file gets the mode the umask allows."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp: Path) -> None:
    """Modes as the umask allows (mkdtemp makes 0700, safetensors 0600 files) and every byte on disk."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(tmp):
        for name in files:
            f = Path(root) / name
            os.chmod(f, 0o666 & ~umask)
            _fsync(f)
        for name in dirs:
            os.chmod(Path(root) / name, 0o777 & ~umask)
        _fsync(Path(root))
    os.chmod(tmp, 0o777 & ~umask)


def _remove_stale(out_dir: Path) -> None:
    """Hidden directories of `out_dir` left by a process that is gone (a kill -9): build
    directories are removed; a previous result moved aside for the swap is put back when the kill
    came between the two renames and left no `out_dir`, else removed."""
    for kind in ("old", "tmp"):
        prefix = f".{out_dir.name}.{kind}-"
        for p in out_dir.parent.glob(f"{prefix}*"):
            pid = p.name[len(prefix):].split("-")[0]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                if kind == "old" and not out_dir.exists():
                    os.replace(p, out_dir)
                else:
                    shutil.rmtree(p, ignore_errors=True)
            except PermissionError:  # another user's live process
                pass
