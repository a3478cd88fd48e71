"""The layers stay visible: the library imports no orchestration, serving or CLI layer above it."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import electra_pipeline

REPO = Path(__file__).resolve().parents[1]
ABOVE = ("prefect", "bentoml", "flows", "serving", "electra_cli")


def test_library_imports_nothing_above_it() -> None:
    """Import every module of `electra_pipeline` in a fresh interpreter; none of the layers above
    (nor Prefect or BentoML) may appear in sys.modules."""
    modules = sorted(m.name for m in pkgutil.walk_packages(electra_pipeline.__path__, "electra_pipeline.")
                     if not m.name.endswith("__main__"))
    assert "electra_pipeline.warmstart" in modules and "electra_pipeline.corpus.ingest" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {ABOVE!r})\n"
            "print(' '.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"the library imported {out.stdout.strip()}"


def test_every_library_and_flow_file_holds_one_concept() -> None:
    """No module of `electra_pipeline/` or `flows/` grows past 500 lines: a file that long holds
    more than one concept and is split (config machinery vs the run config, say)."""
    long = {str(p.relative_to(REPO)): n for p in [*REPO.glob("electra_pipeline/**/*.py"), *REPO.glob("flows/*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, f"over 500 lines: {long}"
