"""Checksums on what the project loads back: a flipped bit in a weights file must stop a run, not
train on (the safetensors header is parsed, its data region is taken as it comes).

- A training checkpoint lists the sha256 of its `model.safetensors` and `optimizer.safetensors`
  under "files" in `state.json`, the manifest written last (`checkpoint.py`).
- A model directory the project writes (a run's `discriminator/` and `generator/`, snapshots,
  fine-tuned models, random-init baselines) carries `SHA256SUMS` in `sha256sum` format over
  every file but its model card, so `sha256sum -c SHA256SUMS` in the directory checks it by hand too.

Every loader verifies before it reads the weights; a mismatch is a DataError naming the file. A
checkpoint or directory from before checksums is loaded with one warning; a directory the project
did not write (a Hub download) has no sums to check and loads silently.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from electra_pipeline import atomic
from electra_pipeline.errors import DataError

log = logging.getLogger(__name__)

SUMS_FILE = "SHA256SUMS"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sums(directory: str | Path, names: list[str] | None = None) -> dict[str, str]:
    """{file name: sha256} of `names` in `directory`; by default every file a loader reads, which is
    every regular file but SHA256SUMS and the model card (README.md, meant to be edited)."""
    d = Path(directory)
    if names is None:
        names = sorted(p.name for p in d.iterdir()
                       if p.is_file() and p.name not in (SUMS_FILE, "README.md") and not p.name.startswith("."))
    return {n: sha256_file(d / n) for n in names}


def verify(directory: str | Path, sums: dict[str, str], manifest: str | Path) -> None:
    """Every file listed in `sums` is there with that sha256, else a DataError naming the file."""
    d = Path(directory)
    for name, want in sums.items():
        f = d / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise DataError(f"{manifest}: lists {name!r}, not a plain file name")
        if not f.is_file():
            raise DataError(f"{f}: missing, but listed in {manifest}")
        got = sha256_file(f)
        if got != want:
            raise DataError(f"{f}: sha256 {got[:16]}... does not match {want[:16]}... in {manifest}; the file is "
                            "damaged or was changed after it was written")


def write_sums(directory: str | Path) -> Path:
    """SHA256SUMS over every file now in `directory`, written atomically: call it after the last
    file of the directory is in place."""
    d = Path(directory)
    text = "".join(f"{h}  {n}\n" for n, h in file_sums(d).items())
    return atomic.write_text(d / SUMS_FILE, text)


def read_sums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        h, sep, name = line.partition("  ")
        if not sep or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise DataError(f"{path}:{i}: not a `sha256sum` line (64 hex digits, two spaces, a file name)")
        sums[name.lstrip("*")] = h
    return sums


def written_here(directory: Path) -> bool:
    """A model directory this project wrote, by its marks: a fine-tuned model's task.json, a run's
    model card, or a place in a run directory (beside checkpoints/)."""
    d = Path(directory)
    if (d / "task.json").is_file() or (d.parent / "checkpoints").is_dir():
        return True
    card = d / "README.md"
    try:
        return card.is_file() and "electra-pipeline" in card.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def verify_dir(directory: str | Path) -> bool:
    """Check a model directory against its SHA256SUMS; True when verified. Without the file it
    loads unverified: one warning when the project wrote it (before checksums), else silently."""
    d = Path(directory)
    sums_file = d / SUMS_FILE
    if sums_file.is_file():
        verify(d, read_sums(sums_file), sums_file)
        return True
    if written_here(d):
        log.warning("%s: no %s (written before checksums); its weights are loaded unverified", d, SUMS_FILE)
    return False
