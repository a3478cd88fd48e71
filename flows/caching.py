"""Stage fingerprints: what makes a rerun skip finished work, and only finished work.

Each deterministic stage gets a key = hash(its inputs' fingerprints, its resolved config, the
library code that computes it). The key names the stage's output directory
(`outputs/<stage>/<key>`) and is a task input, so Prefect's `INPUTS + TASK_SOURCE` cache policy
keys on it. Keys chain: the tokenizer's key includes the corpus key, so editing one source file
invalidates the corpus, the tokenizer and everything after them, like a Merkle tree, without
re-hashing large intermediate outputs. Raw inputs (corpus files) are hashed by content, so a
renamed copy of the same file still hits the cache and an edited file in place does not.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

# A stage's cache: the task's own code plus its inputs, one of which is the stage key. The
# MLflow run a task logs to is an input too, but a new one each run: it must not miss the cache.
STAGE_CACHE: CachePolicy = (INPUTS - "run_id" - "tracking_uri") + TASK_SOURCE

KEY_LENGTH = 12  # hex digits of a stage key used in directory names
DONE_FILE = "stage.json"  # written last by a stage task: its presence means the output is whole


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class DigestMemo:
    """File digests remembered by (path, size, mtime): a 100 GB corpus is hashed once, not on
    every run. Stored beside the cache records, so it goes when the outputs go."""

    def __init__(self, path: Path | None):
        self.path = path
        self._data: dict[str, list[Any]] = {}
        if path is not None and path.is_file():
            try:
                self._data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                self._data = {}

    def digest(self, f: Path) -> str:
        st = f.stat()
        key = str(f.resolve())
        hit = self._data.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
        value = file_digest(f)
        self._data[key] = [st.st_size, st.st_mtime_ns, value]
        return value

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data))
            tmp.replace(self.path)


def path_fingerprint(source: str, memo: DigestMemo | None = None) -> str:
    """Content hash of a file or directory tree; other strings (`hf:...` dataset ids) hash as text."""
    digest = memo.digest if memo is not None else file_digest
    p = Path(source)
    if p.is_file():
        return digest(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(digest(f).encode())
        return h.hexdigest()
    return hashlib.sha256(f"name:{source}".encode()).hexdigest()


def input_key(path: str, memo: DigestMemo | None = None) -> str:
    """An upstream output's identity: the key its stage recorded, else its content hash
    (a directory made outside these flows)."""
    p = Path(path)
    d = p if p.is_dir() else p.parent
    if is_complete(d):
        return str(read_record(d)["key"])
    return path_fingerprint(path, memo)


def code_fingerprint(*modules: ModuleType) -> str:
    """Hash of the library source that computes a stage: a fixed bug re-runs the stage."""
    h = hashlib.sha256()
    for module in modules:
        src = Path(inspect.getfile(module))
        files = sorted(src.parent.rglob("*.py")) if src.name == "__init__.py" else [src]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()


def stage_key(stage: str, *, inputs: list[str], config: dict[str, Any], code: str) -> str:
    """One stage's key from its input fingerprints (or upstream keys), config and code hash."""
    blob = json.dumps({"stage": stage, "inputs": inputs, "config": config, "code": code},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]


def is_complete(out_dir: Path) -> bool:
    """A stage output is usable only when its task finished writing it."""
    return (out_dir / DONE_FILE).is_file()


def mark_complete(out_dir: Path, record: dict[str, Any]) -> None:
    """Written last, atomically: a crash mid-stage leaves no marker, so the stage re-runs."""
    tmp = out_dir / (DONE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(out_dir / DONE_FILE)


def read_record(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / DONE_FILE).read_text())
