"""Checksums on what the project loads back: one flipped exponent bit in a weights file's data
region (the part safetensors does not check) stops `--resume`, `--init-from` and `export` with
one line naming the file; checkpoints and directories from before checksums load with a warning."""

import json
import logging
import shutil
import struct
from pathlib import Path

import pytest

from electra_cli import main
from electra_pipeline import integrity


def _argv(tiny_data, out: Path, steps: int) -> list[str]:
    tok_dir, ex_dir, vocab = tiny_data
    return ["pretrain", "--preset", "tiny", "--data", str(ex_dir), "--tokenizer", str(tok_dir),
            "--output-dir", str(out), "--model.vocab_size", str(vocab), "--train.seq_len", "64",
            "--train.batch_size", "4", "--train.log_every", "1", "--train.save_every", "2",
            "--train.max_steps", str(steps), "--train.precision", "fp32", "--train.device", "cpu",
            "--tracking.enabled", "false", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("integrity") / "run"
    assert main(_argv(tiny_data, run, 2)) == 0
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def flip_exponent_bit(weights: Path) -> None:
    """Flip a high exponent bit of the first float32 value of the data region, header untouched."""
    data = bytearray(weights.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    begin = min(v["data_offsets"][0] for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    data[8 + n + begin + 3] ^= 0x20  # little-endian: byte 3 holds the sign and the top 7 exponent bits
    weights.write_bytes(bytes(data))


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): integrity.sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_checkpoint_lists_the_sha256_of_its_weights(trained: Path) -> None:
    ckpt = trained / "checkpoints" / "step-00000002"
    files = json.loads((ckpt / "state.json").read_text())["files"]
    assert files == {n: integrity.sha256_file(ckpt / n) for n in ("model.safetensors", "optimizer.safetensors")}
    for kind in ("discriminator", "generator"):  # sha256sum-compatible, over what the loaders read
        sums = integrity.read_sums(trained / kind / integrity.SUMS_FILE)
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(sums) and "README.md" not in sums
        assert integrity.verify_dir(trained / kind)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_resume_refuses_a_flipped_bit_naming_the_file(tiny_data, run: Path, name: str, capsys) -> None:
    weights = run / "checkpoints" / "step-00000002" / name
    flip_exponent_bit(weights)
    damaged = weights.read_bytes()
    before = _snapshot(run)
    code = main(_argv(tiny_data, run, 4) + ["--resume", "--resume-with-changes"])
    err = _one_line(capsys)
    assert code == 2 and err.startswith(f"error: {weights}: sha256") and "state.json" in err
    assert weights.read_bytes() == damaged and _snapshot(run) == before  # nothing written


def test_init_from_and_export_refuse_a_damaged_model_dir(tiny_data, run: Path, tmp_path: Path, capsys) -> None:
    weights = run / "discriminator" / "model.safetensors"
    flip_exponent_bit(weights)
    assert main(["export", str(run / "discriminator"), str(tmp_path / "onnx")]) == 2
    assert _one_line(capsys).startswith(f"error: {weights}: sha256")
    assert main(_argv(tiny_data, tmp_path / "next", 2) + ["--init-from", str(run)]) == 2
    assert _one_line(capsys).startswith(f"error: {weights}: sha256")
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "next" / "checkpoints").exists()


def test_fine_tuned_model_dir_is_verified(run: Path, tmp_path: Path) -> None:
    from electra_pipeline.errors import DataError
    from electra_pipeline.evaluation import finetuned

    model = finetuned.build_model(finetuned.hf.read_hf(run / "discriminator")[0],
                                  finetuned.TaskMeta(task="sst2", kind="classification", labels=["0", "1"]))
    d = finetuned.save_finetuned(model, finetuned.TaskMeta(task="sst2", kind="classification", labels=["0", "1"]),
                                 run / "tokenizer.json", tmp_path / "ft")
    assert set(integrity.read_sums(d / integrity.SUMS_FILE)) == {"config.json", "model.safetensors", "task.json",
                                                                  "tokenizer.json"}
    finetuned.load_finetuned(d)
    (d / "task.json").write_text((d / "task.json").read_text().replace('"sst2"', '"cola"'))
    with pytest.raises(DataError, match="task.json: sha256"):
        finetuned.load_finetuned(d)


def test_checkpoint_from_before_checksums_resumes_with_one_warning(tiny_data, run: Path, capsys, caplog) -> None:
    state_file = run / "checkpoints" / "step-00000002" / "state.json"
    state = json.loads(state_file.read_text())
    del state["files"]
    state_file.write_text(json.dumps(state))
    for kind in ("discriminator", "generator"):
        (run / kind / integrity.SUMS_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        assert main(_argv(tiny_data, run, 4) + ["--resume", "--resume-with-changes"]) == 0
    unverified = [r.getMessage() for r in caplog.records if "unverified" in r.getMessage()]
    assert unverified == [f"{state_file}: no checksums (a checkpoint from before them); its weights are loaded "
                          "unverified"]
    assert "files" in json.loads((run / "checkpoints" / "step-00000004" / "state.json").read_text())


def test_a_hub_directory_without_sums_loads_silently(run: Path, tmp_path: Path, caplog) -> None:
    hub = tmp_path / "hub"
    hub.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / "discriminator" / name, hub / name)
    with caplog.at_level(logging.WARNING):
        assert integrity.verify_dir(hub) is False
    assert not caplog.records
