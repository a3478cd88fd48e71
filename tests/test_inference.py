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


# --- texts are cut to a bounded number of characters before tokenizing --------------------

def test_cut_text_keeps_whole_words_and_says_what_it_dropped() -> None:
    assert inference.cut_text("short text", 20) == ("short text", False)
    assert inference.cut_text("one two three four", 10) == ("one two", True)  # "thr" is not kept
    assert inference.cut_text("one two   ", 8) == ("one two ", False)  # only whitespace dropped
    assert inference.cut_text("a" * 30, 10) == ("a" * 10, True)  # one long word: cut inside it
    assert inference.cut_text(" " + "a" * 30, 10) == (" " + "a" * 9, True)


class CountingTokenizer:
    """A tokenizer that records how many characters it was given."""

    def __init__(self, tok) -> None:
        self.tok, self.chars = tok, []

    def encode_batch(self, texts, **kw):
        self.chars += [len(t) for t in texts]
        return self.tok.encode_batch(texts, **kw)

    def token_to_id(self, t):
        return self.tok.token_to_id(t)


@pytest.fixture(scope="module")
def tokenizer(tok_file: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tok_file))


def test_long_texts_are_cut_before_tokenizing_with_the_same_tokens(tokenizer) -> None:
    words = "the film is a gripping , beautifully acted story of a family in trouble".split()
    long = " ".join(words[i % len(words)] for i in range(4000))  # ~20,000 characters
    tok = CountingTokenizer(tokenizer)
    got = inference.encode_texts(tok, [long, (long, "a short second text")], 32)
    assert max(tok.chars) <= inference.MAX_CHARS_PER_TOKEN * 32 < len(long)
    assert got.truncated == [True, True]
    # the same rows as tokenizing the whole texts, then truncating
    cls, sep, _ = inference.special_ids(tokenizer)
    full_a, full_b = tokenizer.encode_batch([long, "a short second text"], add_special_tokens=False)
    want = [inference.text_row(full_a.ids, None, 32, cls, sep)[0],
            inference.text_row(full_a.ids, full_b.ids, 32, cls, sep)[0]]
    assert [row[:len(w)].tolist() for row, w in zip(got.batch.input_ids, want)] == want


def test_text_dropped_by_the_cut_is_flagged_even_when_the_tokens_fit(tokenizer) -> None:
    spaced = "good" + " " * 2000 + "bad"  # two tokens, but "bad" lies past the cut
    only_space = "good" + " " * 2000
    got = inference.encode_texts(tokenizer, [spaced, only_space, "good bad"], 32)
    assert got.truncated == [True, False, False]
    assert got.tokens[0] == got.tokens[1] == ["[CLS]", "good", "[SEP]"]


def test_qa_question_and_context_are_cut_and_flagged(tokenizer) -> None:
    ctx = "her father repaired boats for forty years . " * 2000  # ~88,000 characters
    tok = CountingTokenizer(tokenizer)
    win = inference.qa_windows(tok, "who repaired boats ?", ctx, max_seq_length=64, doc_stride=24,
                               max_query_length=16, max_windows=4)
    assert win.truncated and len(win.batch) == 4
    assert tok.chars[1] <= inference.MAX_CHARS_PER_TOKEN * (3 * 24 + 64) < len(ctx)
    short = inference.qa_windows(tokenizer, "who repaired boats ?", "her father repaired boats .",
                                 max_seq_length=64, doc_stride=24, max_query_length=16, max_windows=4)
    assert not short.truncated
    long_q = inference.qa_windows(tokenizer, "who " * 100 + "?", "her father repaired boats .", max_seq_length=64,
                                  doc_stride=24, max_query_length=16, max_windows=4)
    assert long_q.truncated


def test_the_served_flag_reaches_the_answer(tmp_path: Path, tok_file: Path) -> None:
    pred = inference.Predictor.load(write_export(tmp_path / "x", tok_file))
    out = pred.classify(["good" + " " * 2000 + "bad", "good" + " " * 2000, "good bad"])
    assert [r["truncated"] for r in out] == [True, False, False]
