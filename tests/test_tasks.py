"""Task readers on real rows, bad input, featurisation, and the SQuAD window round trip."""

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from electra_pipeline.data.tokenizer import TokenizerConfig, fit_wordpiece
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.evaluation.tasks import TASK_NAMES, canonical_name, get_task, glue_tasks_present
from electra_pipeline.inference import longest_first as truncate_pair

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue_small"
SAMPLE = REPO / "electra_pipeline" / "sample"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    return SHARED


def wordpiece(texts: list[str], vocab_size: int) -> Tokenizer:
    """A throwaway BERT-style WordPiece trained in-process on real text."""
    return fit_wordpiece(texts, TokenizerConfig(vocab_size=vocab_size, min_frequency=0))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """Trained on the shipped real slices (GLUE sentences and SQuAD paragraphs)."""
    texts = []
    for task in ("sst2", "mrpc", "rte", "stsb", "cola"):
        for e in get_task(task).read(SAMPLE, "train"):
            texts += [e.text_a, e.text_b or ""]
    for e in get_task("squad_v1").read(SAMPLE, "train") + get_task("squad_v1").read(SAMPLE, "dev"):
        texts += [e.context, e.question]
    return wordpiece(texts, 3000)


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_aliases():
    assert len(TASK_NAMES) == 11
    assert canonical_name("SST-2") == "sst2" and canonical_name("STS-B") == "stsb"
    assert canonical_name("squad") == "squad_v1" and canonical_name("squad_v2") == "squad_v2"
    for name in TASK_NAMES:
        assert get_task(name).name == name


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"task: unknown task 'sst3'.*cola, sst2, mrpc"):
        get_task("sst3")


# --- readers on real rows -------------------------------------------------------------------


def test_glue_readers_on_real_files(shared):
    glue = shared / "glue"
    cola = get_task("cola").read(glue, "train")  # no header
    assert len(cola) == 8551 and cola[0].label == 1
    assert cola[0].text_a.startswith("Our friends won't buy this analysis")
    assert get_task("cola").read(glue, "test")[0].guid == "0"
    sst = get_task("sst2").read(glue, "dev")
    assert len(sst) == 872 and sst[1].text_a.startswith("unflinchingly bleak") and sst[1].label == 0
    mrpc = get_task("mrpc").read(glue, "train")  # header starts with a BOM
    assert len(mrpc) == 3668 and mrpc[0].label == 1 and mrpc[0].text_b.startswith("Referring to him")
    stsb = get_task("stsb").read(glue, "dev")
    assert len(stsb) == 1500 and stsb[0].label == 5.0 and stsb[1].label == 4.75
    rte = get_task("rte").read(glue, "dev")
    assert len(rte) == 277 and rte[0].label == get_task("rte").labels.index("not_entailment")
    assert len(get_task("wnli").read(glue, "train")) == 635
    qnli = get_task("qnli").read(shared, "dev")  # <root>/glue/<Task> also works
    assert len(qnli) == 5463 and qnli[0].text_a.startswith("What came into force")
    assert glue_tasks_present(shared) == ["cola", "sst2", "mrpc", "stsb", "rte", "wnli"]


def test_mnli_qqp_qnli_readers_on_fixtures():
    mnli = get_task("mnli")
    assert set(mnli.eval_splits) == {"dev_matched", "dev_mismatched"}
    train = mnli.read(FIXTURES, "train")
    assert [e.label for e in train[:3]] == [2, 0, 1]  # contradiction, entailment, neutral
    assert '"new"' in train[4].text_a  # bare quotes are text, not CSV quoting
    assert mnli.read(FIXTURES, "dev_mismatched")[0].text_b == "The library received a gift."
    assert mnli.read(FIXTURES, "test_matched")[2].label is None
    qqp = get_task("qqp").read(FIXTURES, "dev")
    assert qqp[0].guid == "100" and qqp[1].label == 0
    qnli = get_task("qnli").read(FIXTURES, "train")
    assert [e.label for e in qnli] == [0, 1, 0, 1]
    assert glue_tasks_present(FIXTURES) == ["qqp", "mnli", "qnli"]


def test_squad_readers_on_real_files(shared):
    v1 = get_task("squad_v1").read(shared, "dev")
    assert len(v1) == 10570 and v1[0].answers[0] == "Denver Broncos" and v1[0].answer_start == 177
    v2 = get_task("squad_v2").read(shared, "dev")
    impossible = [e for e in v2 if not e.answers]
    assert len(v2) == 11873 and len(impossible) == 5945 and impossible[0].answer_start == -1
    train = get_task("squad_v1").read(shared, "train")  # the reconstructed .json.gz
    assert len(train) == 87599
    assert all(e.context[e.answer_start:e.answer_start + len(e.answers[0])] == e.answers[0] for e in train[:500])


# --- bad input ------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_wrong_column_count_names_file_and_line(tmp_path):
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tA.\tB.\n")
    with pytest.raises(DataError, match=r"RTE/train\.tsv:3: expected 4 tab-separated fields, found 3"):
        get_task("rte").read(tmp_path, "train")


def test_unknown_label_names_file_and_line(tmp_path):
    _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\ngood .\t1\nbad .\tpositive\n")
    with pytest.raises(DataError, match=r"SST-2/dev\.tsv:3: unknown label 'positive'"):
        get_task("sst2").read(tmp_path, "dev")
    _write(tmp_path / "STS-B" / "train.tsv", "index\tsentence1\tsentence2\tscore\n0\ta\tb\tfive\n")
    with pytest.raises(DataError, match=r"STS-B/train\.tsv:2: score 'five'"):
        get_task("stsb").read(tmp_path, "train")


def test_missing_split_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"MNLI/dev_matched\.tsv: missing dev_matched split"):
        get_task("mnli").read(tmp_path, "dev_matched")
    with pytest.raises(DataError, match=r"dev-v2\.0\.json: missing SQuAD v2 dev split"):
        get_task("squad_v2").read(tmp_path, "dev")
    with pytest.raises(ConfigError, match="has no split 'validation'"):
        get_task("cola").read(tmp_path, "validation")


def test_malformed_squad_json_is_a_data_error(tmp_path):
    _write(tmp_path / "dev-v1.1.json", "{not json")
    with pytest.raises(DataError, match="dev-v1.1.json: unreadable SQuAD JSON"):
        get_task("squad_v1").read(tmp_path, "dev")
    _write(tmp_path / "dev-v1.1.json", json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(DataError, match="not in the SQuAD JSON layout"):
        get_task("squad_v1").read(tmp_path, "dev")


# --- GLUE features --------------------------------------------------------------------------


def test_truncate_pair_matches_berts_pop_loop():
    for la in range(0, 12):
        for lb in range(0, 12):
            for budget in range(0, 20):
                a, b = la, lb
                while a + b > budget:
                    if a > b:
                        a -= 1
                    else:
                        b -= 1
                assert truncate_pair(la, lb, budget) == (a, b)


def test_pair_features_match_the_tokenizer_template(tok):
    task = get_task("mrpc")
    examples = task.read(SAMPLE, "dev")[:20]
    feats = task.featurize(examples, tok, 512, training=False)
    for e, f in zip(examples, feats):
        enc = tok.encode(e.text_a, e.text_b)
        assert f.input_ids.tolist() == enc.ids
        assert f.token_type_ids.tolist() == enc.type_ids


def test_truncation_and_swap_augmentation(tok):
    task = get_task("mrpc")
    examples = task.read(SAMPLE, "train")[:10]
    feats = task.featurize(examples, tok, 24, training=True)
    assert len(feats) == 20  # both sentence orders for MRPC
    for f in feats:
        ids = f.input_ids.tolist()
        assert len(ids) <= 24 and ids[0] == 2 and ids.count(3) == 2 and ids[-1] == 3
        assert f.token_type_ids.tolist() == [0] * (ids.index(3) + 1) + [1] * (len(ids) - ids.index(3) - 1)
    full = task.featurize(examples, tok, 512, training=True)
    for i, e in enumerate(examples):  # the second copy is the swapped pair, same label
        assert full[10 + i].input_ids.tolist() == tok.encode(e.text_b, e.text_a).ids
        assert full[10 + i].label == full[i].label == e.label and full[10 + i].example_index == i
    assert len(get_task("sst2").featurize(get_task("sst2").read(SAMPLE, "train")[:10], tok, 64, True)) == 10


def test_submission_format(tmp_path):
    mnli = get_task("mnli")
    ex = mnli.read(FIXTURES, "test_mismatched")
    path = mnli.write_submission(ex, {e.guid: i % 3 for i, e in enumerate(ex)}, tmp_path / "MNLI-mm.tsv")
    assert path.read_text().splitlines() == ["index\tprediction", "0\tentailment", "1\tneutral", "2\tcontradiction"]
    stsb = get_task("stsb")
    ex = stsb.read(SAMPLE, "test")[:3]
    lines = stsb.write_submission(ex, dict(zip([e.guid for e in ex], [-0.3, 2.71828, 6.0])), tmp_path / "STS-B.tsv")
    expected = [f"{ex[0].guid}\t0.000", f"{ex[1].guid}\t2.718", f"{ex[2].guid}\t5.000"]  # clipped to [0, 5]
    assert lines.read_text().splitlines()[1:] == expected


# --- SQuAD windows --------------------------------------------------------------------------


def _gold_outputs(task, train_feats, eval_feats):
    """Logits that put all mass on the labelled span of each window (and the has-answer bit)."""
    outs = []
    for tf, ef in zip(train_feats, eval_feats):
        n = len(ef)
        s, e = np.full(n, -10.0), np.full(n, -10.0)
        if tf.answerable:
            s[tf.start_position], e[tf.end_position] = 10.0, 10.0
        out = {"start_logits": s, "end_logits": e}
        if task.answerability:
            out["answerable_logits"] = np.array(4.0 if tf.answerable else -4.0)
        outs.append(out)
    return outs


def _recoverable(tok, ex) -> bool:
    """Whether decoding can reproduce the gold answer exactly: it starts and ends on token
    boundaries (answers inside a word cannot be) and is at most max_answer_length tokens."""
    offs = tok.encode(ex.context, add_special_tokens=False).offsets
    s, e = ex.answer_start, ex.answer_start + len(ex.answers[0])
    starts, ends = [o[0] for o in offs], [o[1] for o in offs]
    return s in starts and e in ends and ends.index(e) - starts.index(s) < 30


def test_squad_round_trip_recovers_gold_spans_across_windows(tok):
    task = get_task("squad_v1").with_options(doc_stride=32)
    examples = task.read(SAMPLE, "train")
    train = task.featurize(examples, tok, 96, training=True)
    evals = task.featurize(examples, tok, 96, training=False)
    assert len(train) == len(evals) > 2 * len(examples)  # long contexts -> several windows each
    assert all(len(f) <= 96 for f in evals)
    preds = task.predict(examples, evals, _gold_outputs(task, train, evals))
    recoverable = [e for e in examples if _recoverable(tok, e)]
    assert len(recoverable) > 0.9 * len(examples)
    for e in recoverable:
        assert preds[e.qid]["text"] == e.answers[0], e.qid
    assert task.score(examples, preds)["exact_match"] > 95.0


def test_squad_question_truncation_and_window_layout(tok):
    task = get_task("squad_v1").with_options(max_query_length=5, doc_stride=16)
    ex = task.read(SAMPLE, "dev")[:3]
    feats = task.featurize(ex, tok, 48, training=False)
    for f in feats:
        ids = f.input_ids.tolist()
        assert ids[0] == 2 and ids.index(3) <= 6  # question kept to 5 tokens
        ctx = f.offsets[:, 0] >= 0
        assert not ctx[: ids.index(3) + 1].any() and not ctx[-1]  # question and [SEP]s are not context
        assert (f.token_type_ids[ctx] == 1).all()
        assert f.max_context[~ctx].sum() == 0


def test_squad_v2_round_trip_and_threshold(tok, tmp_path):
    src = json.loads((SAMPLE / "squad" / "dev-v1.1.json").read_text())
    for art in src["data"]:  # every other question becomes unanswerable
        for para in art["paragraphs"]:
            for i, qa in enumerate(para["qas"]):
                if i % 2:
                    qa["answers"], qa["is_impossible"] = [], True
    _write(tmp_path / "dev-v2.0.json", json.dumps(src))
    task = get_task("squad_v2").with_options(doc_stride=32)  # overlapping windows
    examples = task.read(tmp_path, "dev")
    assert sum(not e.answers for e in examples) > 10
    train = task.featurize(examples, tok, 128, training=True)
    evals = task.featurize(examples, tok, 128, training=False)
    preds = task.predict(examples, evals, _gold_outputs(task, train, evals))
    out = task.score(examples, preds)
    assert out["NoAns_exact"] == 100.0
    assert out["HasAns_exact"] > 90.0
    assert -4.0 < out["answerable_threshold"] < 4.0  # between the two logit levels
    meta = task.meta(128, out)
    assert meta.answerability and meta.no_answer_threshold == out["answerable_threshold"]
    path = task.write_predictions(examples, preds, tmp_path / "pred" / "dev.jsonl")
    assert set(json.loads(path.read_text())) == {e.qid for e in examples}
    assert (tmp_path / "pred" / "dev_na_prob.json").is_file()
    for e in examples:  # serving's rule (logit > stored threshold) gives the scored answers
        final = preds[e.qid]["text"] if preds[e.qid]["answerable_logit"] > meta.no_answer_threshold else ""
        if not e.answers:
            assert final == ""
        elif _recoverable(tok, e):
            assert final == e.answers[0]


def test_hub_datasets_map_to_the_same_examples(monkeypatch):
    """`hf:` data dirs read the Hub copies (never downloaded in tests: load_dataset is faked)."""
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "nyu-mll/glue":
            return [{"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2, "idx": 7},
                    {"premise": "P.", "hypothesis": "H.", "label": -1, "idx": 8}]
        return [{"id": "q1", "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
                 "answers": {"text": ["France"], "answer_start": [12]}},
                {"id": "q2", "title": "T", "context": "Paris is in France.", "question": "Why?",
                 "answers": {"text": [], "answer_start": []}}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    mnli = get_task("mnli").read("hf:glue", "dev_mismatched")
    assert calls[-1] == ("nyu-mll/glue", "mnli", "validation_mismatched")
    assert (mnli[0].guid, mnli[0].text_a, mnli[0].label, mnli[1].label) == ("7", "A man sleeps.", 2, None)
    squad = get_task("squad_v2").read("hf:squad", "dev")
    assert calls[-1] == ("rajpurkar/squad_v2", None, "validation")
    assert (squad[0].answers, squad[0].answer_start, squad[1].answers) == (["France"], 12, [])
