"""SQuAD v1.1 and v2.0 extractive question answering.

Contexts longer than the model's window are cut into overlapping doc-stride windows (as in
BERT/ELECTRA): [CLS] question [SEP] window [SEP]. The tokenizer's character offsets map tokens
back to the original context, so predicted spans are exact substrings of it (what the official
evaluation compares). Each token is scored only in the window where it has the most context.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from tokenizers import Tokenizer

from electra_pipeline import atomic
from electra_pipeline.errors import ConfigError, DataError
from electra_pipeline.evaluation import metrics
from electra_pipeline.evaluation.finetuned import TaskMeta
from electra_pipeline.evaluation.tasks.base import Feature, Predictions, Task
from electra_pipeline.inference import N_BEST, question_windows, special_ids, window_spans

HF_PREFIX = "hf:"
ANSWERABLE_WEIGHT = 0.5  # weight of the v2 has-answer loss (reference code's answerable_weight)
THRESHOLD_CLAMP = 1e9  # a threshold of +-inf (always/never answer) is stored as this, JSON-safe

# split -> file names tried in order; the reconstructed files are what shared/data holds
FILES = {
    ("v1", "train"): ("train-v1.1.json", "train-v1.1.json.gz", "train-v1.1.reconstructed.json.gz",
                      "train-v1.1.reconstructed.json"),
    ("v1", "dev"): ("dev-v1.1.json", "dev-v1.1.json.gz"),
    ("v2", "train"): ("train-v2.0.json", "train-v2.0.json.gz"),
    ("v2", "dev"): ("dev-v2.0.json", "dev-v2.0.json.gz", "dev-v2.0.reconstructed.json"),
}


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[str]  # all gold texts (dev has several); empty = unanswerable (v2)
    answer_start: int  # char offset of answers[0] in context; -1 when unanswerable


def find_file(data_dir: str | Path, version: str, split: str) -> Path:
    """First existing candidate in `<data_dir>` or `<data_dir>/squad`; else a DataError naming them."""
    root = Path(data_dir)
    names = FILES[(version, split)]
    for d in (root, root / "squad"):
        for n in names:
            if (d / n).is_file():
                return d / n
    raise DataError(f"{root / names[0]}: missing SQuAD {version} {split} split "
                    f"(looked for {', '.join(names)} in {root} and {root / 'squad'})")


def parse_squad(data: dict, source: str, training: bool) -> list[QAExample]:
    """Examples from the official JSON layout; a training answer must sit at its answer_start."""
    out = []
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                context = para["context"]
                for qa in para["qas"]:
                    answers = [a["text"] for a in qa.get("answers", [])]
                    if qa.get("is_impossible", False):
                        answers = []
                    start = int(qa["answers"][0]["answer_start"]) if answers else -1
                    if training and answers and context[start:start + len(answers[0])] != answers[0]:
                        found = context.find(answers[0])
                        if found < 0:
                            raise DataError(f"{source}: question {qa['id']}: answer {answers[0]!r} "
                                            "is not in its context")
                        start = found
                    out.append(QAExample(qid=str(qa["id"]), question=qa["question"], context=context,
                                         answers=answers, answer_start=start))
    except (KeyError, TypeError, IndexError) as e:
        raise DataError(f"{source}: not in the SQuAD JSON layout ({type(e).__name__}: {e})") from None
    return out


class SquadTask(Task):
    """Span extraction; v2 adds a has-answer head and a no-answer threshold tuned on dev."""

    kind = "qa"
    default_epochs = 2
    default_max_seq_length = 512

    def __init__(self, version: str = "v1", doc_stride: int = 128, max_query_length: int = 64,
                 max_answer_length: int = 30, n_best_size: int = N_BEST):
        if version not in ("v1", "v2"):
            raise ConfigError(f"version: must be v1 or v2, got {version!r}")
        self.version = version
        self.name = f"squad_{version}"
        self.doc_stride = doc_stride
        self.max_query_length = max_query_length
        self.max_answer_length = max_answer_length
        self.n_best_size = n_best_size
        self.eval_splits = {"dev": ""}
        self.test_splits = {}
        self.metric_names = (("exact_match", "f1") if version == "v1" else
                             ("exact_match", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact"))

    @property
    def answerability(self) -> bool:
        return self.version == "v2"

    def with_options(self, **options: int) -> SquadTask:
        """A copy with other window/decoding settings (from FinetuneConfig)."""
        kw = {k: getattr(self, k) for k in ("doc_stride", "max_query_length", "max_answer_length", "n_best_size")}
        kw.update(options)
        return SquadTask(self.version, **kw)

    # --- data ----------------------------------------------------------------------------

    def read(self, data_dir: str | Path, split: str) -> list[QAExample]:
        if split not in ("train", "dev"):
            raise ConfigError(f"split: {self.name} has no split {split!r} (known: ['train', 'dev'])")
        if str(data_dir).startswith(HF_PREFIX):
            return self._read_hf(split)
        path = find_file(data_dir, self.version, split)
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError, EOFError) as e:
            raise DataError(f"{path}: unreadable SQuAD JSON ({e})") from None
        return parse_squad(data, str(path), training=split == "train")

    def _read_hf(self, split: str) -> list[QAExample]:
        from datasets import load_dataset  # heavy import, only on this path

        name = "rajpurkar/squad" if self.version == "v1" else "rajpurkar/squad_v2"
        ds = load_dataset(name, split="train" if split == "train" else "validation")
        return [QAExample(qid=r["id"], question=r["question"], context=r["context"], answers=list(r["answers"]["text"]),
                          answer_start=int(r["answers"]["answer_start"][0]) if r["answers"]["text"] else -1)
                for r in ds]

    def split_file(self, data_dir: str | Path, split: str) -> Path:
        return find_file(data_dir, self.version, split)

    def example_id(self, example: QAExample) -> str:
        return example.qid

    # --- features ------------------------------------------------------------------------

    def featurize(self, examples: Sequence[QAExample], tokenizer: Tokenizer, max_seq_length: int,
                  training: bool) -> list[Feature]:
        """Windows built by `inference.question_windows`, the function serving builds them with."""
        cls, sep, _ = special_ids(tokenizer)
        contexts = list(dict.fromkeys(e.context for e in examples))  # questions share paragraphs
        ctx_enc = dict(zip(contexts, tokenizer.encode_batch(contexts, add_special_tokens=False)))
        q_enc = tokenizer.encode_batch([e.question for e in examples], add_special_tokens=False)
        feats = []
        for ei, ex in enumerate(examples):
            enc = ctx_enc[ex.context]
            wins, _ = question_windows(q_enc[ei], enc, cls=cls, sep=sep, max_seq_length=max_seq_length,
                                       doc_stride=self.doc_stride, max_query_length=self.max_query_length)
            tok_s, tok_e = (self._answer_tokens(ex, np.asarray(enc.offsets, np.int64).reshape(-1, 2))
                            if training else (-1, -1))
            for w in wins:
                f = Feature(example_index=ei, input_ids=np.asarray(w.input_ids, np.int32),
                            token_type_ids=np.asarray(w.token_type_ids, np.int32))
                if training:
                    inside = tok_s >= w.start and tok_e >= 0 and tok_e < w.start + w.length
                    f.answerable = int(inside)
                    if inside:
                        f.start_position, f.end_position = tok_s - w.start + w.first, tok_e - w.start + w.first
                else:
                    f.offsets, f.max_context = w.offsets, w.max_context
                feats.append(f)
        return feats

    @staticmethod
    def _answer_tokens(ex: QAExample, offsets: np.ndarray) -> tuple[int, int]:
        """Token span of the first gold answer in the context; (-1, -1) when there is none."""
        if not ex.answers or ex.answer_start < 0 or len(offsets) == 0:
            return -1, -1
        cs, ce = ex.answer_start, ex.answer_start + len(ex.answers[0])
        s = int(np.searchsorted(offsets[:, 1], cs, side="right"))  # first token ending after cs
        e = int(np.searchsorted(offsets[:, 0], ce, side="left")) - 1  # last token starting before ce
        return (s, e) if 0 <= s <= e < len(offsets) else (-1, -1)

    def targets(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        return {"start_positions": torch.tensor([f.start_position for f in features]),
                "end_positions": torch.tensor([f.end_position for f in features]),
                "answerable": torch.tensor([f.answerable for f in features], dtype=torch.float32)}

    # --- head ----------------------------------------------------------------------------

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pad = batch["attention_mask"] == 0
        start = outputs["start_logits"].float().masked_fill(pad, -1e4)
        end = outputs["end_logits"].float().masked_fill(pad, -1e4)
        loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
        if self.answerability:
            loss = loss + ANSWERABLE_WEIGHT * F.binary_cross_entropy_with_logits(
                outputs["answerable_logits"].float(), batch["answerable"])
        return loss

    def predict(self, examples: Sequence[QAExample], features: Sequence[Feature],
                outputs: Sequence[dict[str, np.ndarray]]) -> Predictions:
        """Best span per question (n-best kept) and, for v2, its no-answer score."""
        by_example: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            by_example.setdefault(f.example_index, []).append(i)
        preds: Predictions = {}
        for ei, idxs in by_example.items():
            ex = examples[ei]
            cands, answerable = [], -np.inf
            for i in idxs:
                f, out = features[i], outputs[i]
                n = len(f)
                cands += window_spans(f.offsets, f.max_context, out["start_logits"][:n], out["end_logits"][:n],
                                      n_best=self.n_best_size, max_answer_length=self.max_answer_length)
                if "answerable_logits" in out:
                    answerable = max(answerable, float(out["answerable_logits"]))
            cands.sort(key=lambda c: -c[0])
            nbest, seen = [], set()
            for score, cs, ce in cands:
                text = ex.context[cs:ce]
                if text not in seen:
                    seen.add(text)
                    nbest.append({"text": text, "score": score})
                if len(nbest) == self.n_best_size:
                    break
            pred = {"text": nbest[0]["text"] if nbest else "", "nbest": nbest}
            if self.answerability:
                pred["answerable_logit"] = answerable
            preds[ex.qid] = pred
        return preds

    def score(self, examples: Sequence[QAExample], predictions: Predictions) -> dict[str, float]:
        gold = {e.qid: e.answers for e in examples}
        texts = {q: p["text"] for q, p in predictions.items()}
        if not self.answerability:
            return metrics.squad_v1(gold, texts)
        na = {q: -p["answerable_logit"] for q, p in predictions.items()}
        out = metrics.squad_v2(gold, texts, na)
        logits = [p["answerable_logit"] for p in predictions.values()]
        out["answerable_threshold"] = self._logit_threshold(out["threshold"], logits)
        return out

    @staticmethod
    def _logit_threshold(na_thresh: float, logits: list[float]) -> float:
        """The tuned rule `na <= t` (na = -logit) as serving's `logit > threshold`: the midpoint
        between the lowest answered logit and the highest abstaining one, so both agree exactly."""
        answered = [x for x in logits if -x <= na_thresh]
        abstained = [x for x in logits if -x > na_thresh]
        if not answered:
            return THRESHOLD_CLAMP
        if not abstained:
            return -THRESHOLD_CLAMP
        return float((min(answered) + max(abstained)) / 2)

    def meta(self, max_seq_length: int, metrics_: dict[str, float]) -> TaskMeta:
        base = super().meta(max_seq_length, metrics_)
        return dataclasses.replace(base, answerability=self.answerability, doc_stride=self.doc_stride,
                                   max_query_length=self.max_query_length, max_answer_length=self.max_answer_length,
                                   no_answer_threshold=metrics_.get("answerable_threshold", 0.0))

    def write_predictions(self, examples: Sequence[QAExample], predictions: Predictions, path: Path) -> Path:
        """Official layout: `{qid: text}` (for v2 also `<stem>_na_prob.json` for the eval script)
        plus the n-best lists beside it."""
        path = path.with_suffix(".json")
        atomic.write_text(path, json.dumps({q: p["text"] for q, p in predictions.items()}, indent=1) + "\n")
        atomic.write_text(path.with_name(path.stem + "_nbest.json"),
                          json.dumps({q: p["nbest"] for q, p in predictions.items()}) + "\n")
        if self.answerability:
            atomic.write_text(path.with_name(path.stem + "_na_prob.json"),
                json.dumps({q: float(expit(-p["answerable_logit"])) for q, p in predictions.items()}) + "\n")
        return path
