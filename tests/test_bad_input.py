"""Binary or wrongly shaped files where JSON, YAML or TSV is expected: one DataError/ConfigError
line naming the file, never a UnicodeDecodeError or KeyError traceback."""

from pathlib import Path

import pytest

from electra_pipeline.data import batches
from electra_pipeline.errors import PipelineError
from electra_pipeline.evaluation import finetuned
from electra_pipeline.modeling import config, hf, presets
from electra_pipeline.training import preflight

NOISE = bytes(range(256)) * 2


@pytest.mark.parametrize("name, read", [
    ("meta.json", batches.ExampleShards),
    ("config.json", hf.read_hf),
    ("task.json", finetuned.read_meta),
])
@pytest.mark.parametrize("content", [NOISE, b"[]", b'"text"'])
def test_binary_or_wrongly_shaped_json_names_the_file(tmp_path: Path, name, read, content):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(PipelineError) as e:
        read(tmp_path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_binary_config_file_and_glue_tsv_name_the_file(tmp_path: Path):
    from electra_pipeline.evaluation.tasks import get_task

    (tmp_path / "run.yaml").write_bytes(NOISE)
    with pytest.raises(PipelineError, match="run.yaml: not UTF-8"):
        config.load_file(tmp_path / "run.yaml")
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_bytes(NOISE)
    with pytest.raises(PipelineError, match="train.tsv: not UTF-8"):
        get_task("sst2").read(tmp_path, "train")


def test_output_paths_under_a_regular_file_name_it(tmp_path: Path):
    import dataclasses

    from electra_pipeline import atomic

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = presets.tiny()
    cfg = dataclasses.replace(cfg, data=str(tmp_path / "examples"), output_dir=str(blocker / "run"))
    with pytest.raises(PipelineError, match="file: exists and is not a directory"):
        preflight.check_inputs(cfg)
    with pytest.raises(PipelineError, match="file: exists and is not a directory"):
        atomic.ensure_dir(blocker / "a" / "b")
    with pytest.raises(PipelineError, match="not a directory"):
        with atomic.staged_dir(blocker / "out", "meta.json"):
            pass
    assert blocker.read_text() == "not a directory"


def test_token_ids_beyond_the_vocabulary_name_the_shard(tmp_path: Path):
    import json

    import numpy as np

    from electra_pipeline.data.batches import FORMAT

    rows = np.full((4, 8), 7, dtype=np.uint16)
    rows[2, 3] = 5000
    np.save(tmp_path / "shard-00000.npy", rows)
    (tmp_path / "meta.json").write_text(json.dumps({
        "format": FORMAT, "seq_len": 8, "vocab_size": 1000, "num_examples": 4,
        "shards": [{"file": "shard-00000.npy", "num_examples": 4}],
        "special_ids": {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}}))
    with pytest.raises(PipelineError, match="shard-00000.npy: token id 5000 is outside the 1000-token"):
        batches.ExampleShards(tmp_path).check_ids(1000)


def test_outputs_are_readable_and_a_killed_builds_leftovers_go(tmp_path: Path):
    """Weights written through the atomic helper honour the umask (safetensors alone makes 0600),
    and a hidden build directory left by a dead process is removed by the next build."""
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import save_file

    from electra_pipeline import atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    alive = tmp_path / f".out.tmp-{os.getppid()}-def"  # a live process's build stays
    alive.mkdir()
    old = os.umask(0o022)
    try:
        with atomic.staged_dir(tmp_path / "out", "model.safetensors") as d:
            save_file({"w": torch.zeros(2)}, str(d / "model.safetensors"))
    finally:
        os.umask(old)
    assert oct((tmp_path / "out" / "model.safetensors").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == "0o755"
    assert not stale.exists() and alive.exists()

    # killed between the two renames of a rebuild: no `out`, the previous result aside, the new
    # one in a build directory; the next build starts from the previous result, nothing leaks
    (tmp_path / "out").rename(tmp_path / f".out.old-{dead.stdout.strip()}-ghi")
    stale.mkdir()
    with atomic.staged_dir(tmp_path / "out", "model.safetensors") as d:
        assert (tmp_path / "out" / "model.safetensors").is_file()  # put back before the build
        (d / "model.safetensors").write_bytes(b"new")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == [alive.name]


def test_single_files_are_written_whole_readable_and_without_leftovers(tmp_path: Path):
    """atomic.write_text / copy_file (summaries, results, tokenizer copies): the new content
    or the old one, mode from the umask, no temporary sibling left; a failed copy leaves the
    previous file as it was."""
    import os

    from electra_pipeline import atomic

    (tmp_path / "results.json").write_text("old")
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "results.json", '{"new": 1}')
        (tmp_path / "src.json").write_text("tokenizer")
        atomic.copy_file(tmp_path / "src.json", tmp_path / "run" / "tokenizer.json")
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").read_text() == '{"new": 1}'
    assert (tmp_path / "run" / "tokenizer.json").read_text() == "tokenizer"
    assert oct((tmp_path / "run" / "tokenizer.json").stat().st_mode & 0o777) == "0o644"
    with pytest.raises(FileNotFoundError):
        atomic.copy_file(tmp_path / "missing.json", tmp_path / "results.json")
    assert (tmp_path / "results.json").read_text() == '{"new": 1}'
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


@pytest.mark.parametrize("name", ["noise.txt", "noise.jsonl", "noise.csv", "noise.txt.gz"])
def test_binary_sources_are_refused_by_ingestion(tmp_path: Path, name: str):
    """Random bytes under a text extension: one line naming the file, nothing written."""
    import gzip
    import os

    from electra_pipeline.data import corpus

    raw = os.urandom(20000)
    (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    with pytest.raises(PipelineError, match=f"{name}: not text") as e:
        corpus.ingest([str(tmp_path / name)], tmp_path / "out", corpus.CorpusConfig(), progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()
