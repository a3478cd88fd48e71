"""Shared test setup: offline, no telemetry, real data found beside the repo or skipped."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

# Offline and quiet before anything imports the stack (pytest loads conftest first).
for key, value in {
    "DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # where transformers copies a checkpoint's own modeling code (trust_remote_code): not the user's cache
    "HF_MODULES_CACHE": os.path.join(tempfile.gettempdir(), f"electra-pipeline-tests-{os.getuid()}", "hf_modules"),
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_CORPUS = REPO / "electra_pipeline" / "sample" / "corpus" / "sample.txt.gz"
CACHES = {"__pycache__", ".pytest_cache", ".ruff_cache"}  # what Python, pytest and ruff keep in a checkout


def checkout_paths() -> set[str] | None:
    """The untracked and ignored paths of the checkout as `git status` lists them (a new folder
    as one entry), caches and *.egg-info left out; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "-z"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    paths = (entry[3:] for entry in out.stdout.split("\0") if entry[:2] in ("??", "!!"))
    return {p for p in paths if not any(part in CACHES or part.endswith(".egg-info") for part in Path(p).parts)}


@pytest.fixture(scope="session", autouse=True)
def checkout_unchanged():
    """Tests write only under their temporary directories: a path that appears in the checkout
    during the session (an `mlruns/`, `outputs/` or `mlflow.db` a flow left behind) fails the run
    at its end, reported as an error in the last test's teardown."""
    before = checkout_paths()
    yield
    after = checkout_paths()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, f"the tests wrote into the checkout {REPO}: {', '.join(new)}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a clean skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A WordPiece vocabulary and packed examples built in-process from the shipped sample:
    (tokenizer dir, examples dir, vocabulary size)."""
    from electra_pipeline.data import corpus, examples, tokenizer

    root = tmp_path_factory.mktemp("data")
    corpus.ingest([str(SAMPLE_CORPUS)], root / "corpus", corpus.CorpusConfig(), progress=False)
    tok_dir = tokenizer.train_wordpiece(root / "corpus", root / "tokenizer",
                                        tokenizer.TokenizerConfig(vocab_size=4096), progress=False)
    ex_dir = root / "examples"
    examples.build_examples(root / "corpus", tok_dir, ex_dir, examples.ExamplesConfig(seq_len=64, num_proc=1),
                            progress=False)
    vocab = json.loads((ex_dir / "meta.json").read_text())["vocab_size"]
    return tok_dir, ex_dir, vocab
