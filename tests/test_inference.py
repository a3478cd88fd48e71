"""Loading an exported model directory (`inference.Predictor.load`) trusts nothing it reads:
file names, checksums, the ONNX graph and the tokenizer are checked, and each fault is one
DataError naming the file. The export is hand-built here (a two-node ONNX graph and a tokenizer
trained in-process), so these tests take seconds and need no PyTorch export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from electra_pipeline import inference
from electra_pipeline.errors import DataError

try:
    from tests.test_export import train_tokenizer
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_export import train_tokenizer


def sum_of_ids_graph(path: Path) -> None:
    """A stand-in classifier: logits = [-s, s] with s the sum of a row's input ids (B, 2)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["B", "T"]) for n in inference.INPUT_NAMES]
    nodes = [helper.make_node("Add", ["input_ids", "attention_mask"], ["a"]),
             helper.make_node("Add", ["a", "token_type_ids"], ["b"]),
             helper.make_node("Cast", ["b"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
             helper.make_node("Mul", ["s", "signs"], ["logits"])]
    init = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("signs", TensorProto.FLOAT, [2], [-1.0, 1.0])]
    graph = helper.make_graph(nodes, "sum_of_ids", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def write_export(d: Path, tok_file: Path, max_seq_length: int = 16, checksums: bool = True) -> Path:
    """An export directory as `electra export` lays it out: model.onnx, tokenizer.json, metadata.json."""
    d.mkdir(parents=True)
    sum_of_ids_graph(d / "model.onnx")
    shutil.copyfile(tok_file, d / "tokenizer.json")
    files = {"model": "model.onnx", "tokenizer": "tokenizer.json", "metadata": "metadata.json"}
    meta = {"task": "sst2", "kind": "classification", "labels": ["negative", "positive"],
            "max_seq_length": max_seq_length, "outputs": ["logits"], "files": files}
    if checksums:
        meta["sha256"] = {n: inference.file_sha256(d / n) for n in ("model.onnx", "tokenizer.json")}
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


def _edit_meta(d: Path, **fields) -> None:
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps({**meta, **fields}))


def test_a_verified_export_loads_and_answers(tmp_path: Path, tok_file: Path) -> None:
    pred = inference.Predictor.load(write_export(tmp_path / "x", tok_file))
    out = pred.classify(["a fine film", ("a man plays", "someone plays")])
    assert [len(r["scores"]) for r in out] == [2, 2] and all(r["label"] == "positive" for r in out)


def test_a_flipped_byte_in_model_onnx_is_refused_by_its_checksum(tmp_path: Path, tok_file: Path) -> None:
    d = write_export(tmp_path / "x", tok_file)
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x40  # any byte: the checksum is compared before ONNX Runtime parses the file
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"model\.onnx: sha256 .* differs from .* in metadata\.json"):
        inference.Predictor.load(d)


def test_a_changed_tokenizer_is_refused_by_its_checksum(tmp_path: Path, tok_file: Path) -> None:
    d = write_export(tmp_path / "x", tok_file)
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zzzz"] = len(tok["model"]["vocab"])
    (d / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(DataError, match=r"tokenizer\.json: sha256"):
        inference.Predictor.load(d)


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:100]),
     r"model\.onnx: ONNX Runtime cannot load it"),
    (lambda d: (d / "tokenizer.json").write_text("{not json"), r"tokenizer\.json: not a tokenizers JSON file"),
    (lambda d: (d / "model.onnx").unlink(), r"model\.onnx: missing"),
    (lambda d: _edit_meta(d, outputs=["start_logits", "end_logits"]), r"model\.onnx: inputs .* outputs .* not the"),
    (lambda d: _edit_meta(d, kind="poetry"), r"metadata\.json: kind must be one of"),
    (lambda d: _edit_meta(d, max_seq_length="64"), r"metadata\.json: max_seq_length must be an integer"),
])
def test_damage_without_checksums_is_one_error_naming_the_file(tmp_path: Path, tok_file: Path, damage,
                                                                message: str) -> None:
    """Exports that record no checksums still fail on load, with the file named, not a traceback."""
    d = write_export(tmp_path / "x", tok_file, checksums=False)
    damage(d)
    with pytest.raises(DataError, match=message):
        inference.Predictor.load(d)


@pytest.mark.parametrize("name", ["../other/model.onnx", "/etc/hostname", "sub/model.onnx", "..", "", 7])
def test_file_names_in_metadata_must_be_plain(tmp_path: Path, tok_file: Path, name) -> None:
    d = write_export(tmp_path / "x", tok_file)
    _edit_meta(d, files={"model": name, "tokenizer": "tokenizer.json"})
    with pytest.raises(DataError, match=r"metadata\.json: files\.model must be a plain file name"):
        inference.Predictor.load(d)


def test_metadata_that_is_not_an_object_is_one_error(tmp_path: Path, tok_file: Path) -> None:
    d = write_export(tmp_path / "x", tok_file)
    (d / "metadata.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"metadata\.json: expected a JSON object"):
        inference.read_metadata(d)
