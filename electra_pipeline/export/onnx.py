"""Export a fine-tuned model (or a raw RTD discriminator) to ONNX, verified against PyTorch.

An export is only written once ONNX Runtime reproduces PyTorch on real tokenised text (several
lengths, batch > 1 with padding, then other batch/sequence sizes through the dynamic axes) to
within `atol`; otherwise it raises and leaves no output directory (temp dir, then rename).

    <out>/model.onnx       inputs input_ids, attention_mask, token_type_ids: int64 (batch, seq)
    <out>/model.int8.onnx  with quantize=True: dynamic int8 weights (ORT quantize_dynamic)
    <out>/tokenizer.json   the model's tokenizer
    <out>/metadata.json    task, kind, labels, max_seq_length, QA settings, metrics, opset,
                           exporter, max_abs_diff, files and their sha256: what `inference.Predictor`
                           reads and verifies
    <out>/README.md        the source's model card for the ONNX model (`modelcard.onnx_card`)

Exporter: the TorchScript exporter (`dynamo=False`) is the default. Both handle the model's
SDPA attention with a boolean mask on torch 2.13 (max diff ~3e-7), but for ELECTRA-Small on
this project's 2-core CPU the TorchScript one exported in ~2 s vs ~12 s and its graph ran no
slower in ORT (16x128, one noisy measurement: fp32 0.62 s vs 0.88 s, int8 0.39 s vs 0.60 s);
`exporter="dynamo"` stays available for when the TorchScript exporter is removed. By default
the exported graph is `ort_graph.explicit_attention_twin(model)` (why: see there), checked
against the original model like any export.

Logging and registering an export in MLflow, and fetching it back, is `registry.py`; the
`electra export` command is `electra_cli/export.py`.

Heavy imports (torch, onnx, onnxruntime) happen inside functions: `electra --help`
imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from electra_pipeline import atomic
from electra_pipeline.atomic import staged_dir
from electra_pipeline.errors import ConfigError, DataError, PipelineError, read_json_object
from electra_pipeline.export.ort_graph import explicit_attention_twin
from electra_pipeline.modeling.modelcard import onnx_card

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
ATTENTIONS = ("explicit", "sdpa")  # see ort_graph.explicit_attention_twin
DEFAULT_OPSET = 17  # LayerNormalization is a single op from 17; dynamo needs >= 18 and uses that
# opsets an export may ask for: from 13 (a discriminator exports and matches PyTorch down to opset 9)
# to the newest each torch.onnx exporter writes (torch 2.x: 20 for torchscript, 23 for dynamo)
OPSETS = {"torchscript": (13, 20), "dynamo": (13, 23)}
ATOL = 1e-4

# Real text for the agreement check: short, long (truncated at any max length), pairs.
_PARAGRAPH = ("The film follows a young musician who returns to the small coastal town where she grew up, "
              "after her father falls ill. Over one long summer she repairs the family boat, reconnects with "
              "old friends, and slowly learns why her parents never spoke about the year the harbour closed. "
              "The performances are quiet and precise, the photography of the grey sea is often beautiful, "
              "and although the script sometimes leans on familiar turns, the final scenes are genuinely moving. ")
CHECK_TEXTS: tuple[str | tuple[str, str], ...] = (
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    ("A man is playing a guitar on stage.", "Someone performs music in front of an audience."),
    "the plot is thin and the jokes fall flat , but the cast keeps it watchable for most of its running time .",
    _PARAGRAPH * 6,
    ("How long did the repairs take?", _PARAGRAPH * 2),
)
CHECK_QA: tuple[tuple[str, str], ...] = (
    ("Why does the musician return to her town?", _PARAGRAPH * 3),
    ("What does she repair?", "Over one long summer she repairs the family boat."),
)


class ExportCheckError(PipelineError):
    """ONNX Runtime disagrees with PyTorch: the export is not written."""


@dataclass
class ExportReport:
    """What was written and how well it agrees; also stored in metadata.json."""

    out_dir: Path
    task: str
    kind: str  # classification | regression | qa | discriminator
    exporter: str
    attention: str  # explicit | sdpa
    opset: int
    optimized: bool
    max_abs_diff: float  # fp32 ONNX vs PyTorch over all check batches (valid positions)
    checked_shapes: list[tuple[int, int]]  # (batch, seq) of each check batch
    int8_max_abs_diff: float | None = None
    int8_agreement: float | None = None  # share of int8 predictions equal to PyTorch's
    dev_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # "fp32"/"int8" -> metrics
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# --- source model ------------------------------------------------------------------------

@dataclass
class _Source:
    model: Any  # torch.nn.Module in eval mode
    cfg: Any  # ModelConfig
    meta: dict[str, Any]  # task metadata (TaskMeta fields, or the discriminator's)
    tokenizer_file: Path
    model_dir: Path


def load_source(model_dir: str | Path, tokenizer: str | Path | None = None) -> _Source:
    """A fine-tuned directory (task.json) or an HF ELECTRA discriminator (config.json whose
    architecture is ElectraForPreTraining; its tokenizer.json beside it or `tokenizer`)."""
    from electra_pipeline import integrity
    from electra_pipeline.evaluation import finetuned
    from electra_pipeline.modeling import hf

    d = Path(model_dir)
    if not d.is_dir():
        raise DataError(f"{d}: model directory not found")
    if (d / "task.json").is_file():
        model, meta = finetuned.load_finetuned(d)
        tok = Path(tokenizer) if tokenizer else d / "tokenizer.json"
        return _Source(model, model.config, dataclasses.asdict(meta), tok, d)
    cfg_file = d / "config.json"
    arch = []
    if cfg_file.is_file():
        try:
            arch = json.loads(cfg_file.read_text()).get("architectures") or []
        except (json.JSONDecodeError, AttributeError) as e:
            raise DataError(f"{cfg_file}: invalid ({e})") from None
    if "ElectraForPreTraining" not in arch:
        raise DataError(f"{d}: neither a fine-tuned model directory (task.json) nor an HF ELECTRA "
                        "discriminator (config.json with architectures [ElectraForPreTraining])")
    integrity.verify_dir(d)
    model = hf.load_discriminator(d).eval()
    tok = Path(tokenizer) if tokenizer else d / "tokenizer.json"
    if not tok.is_file():
        raise DataError(f"{tok}: missing; pass the pre-training tokenizer with --tokenizer")
    cfg = model.electra.config
    meta = {"task": "replaced_token_detection", "kind": "discriminator", "labels": ["original", "replaced"],
            "max_seq_length": cfg.max_position_embeddings, "metrics": {}}
    return _Source(model, cfg, meta, tok, d)


def _output_names(meta: dict[str, Any]) -> tuple[str, ...]:
    from electra_pipeline.inference import OUTPUT_NAMES

    key = "qa_v2" if meta["kind"] == "qa" and meta.get("answerability") else meta["kind"]
    return OUTPUT_NAMES[key]


def _wrap(model: Any, names: tuple[str, ...]) -> Any:
    """ONNX input order (ids, mask, types) and a tuple of named outputs."""
    import torch

    class OnnxModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
            out = self.model(input_ids, token_type_ids, attention_mask)
            return tuple(out[n] for n in names) if isinstance(out, dict) else (out,)

    return OnnxModule().eval()


# --- check inputs ------------------------------------------------------------------------

def check_batch(src_meta: dict[str, Any], tok: Any, inputs: Sequence[Any] | None) -> Any:
    """One padded batch of real tokenised text (QA: every window of every question)."""
    from electra_pipeline import inference as inf

    n = int(src_meta["max_seq_length"])
    if src_meta["kind"] == "qa":
        rows_ids, rows_types = [], []
        for q, c in inputs or CHECK_QA:
            w = inf.qa_windows(tok, q, c, max_seq_length=n, doc_stride=src_meta["doc_stride"],
                               max_query_length=src_meta["max_query_length"])
            for i in range(len(w.batch)):
                k = int(w.batch.attention_mask[i].sum())
                rows_ids.append(w.batch.input_ids[i, :k].tolist())
                rows_types.append(w.batch.token_type_ids[i, :k].tolist())
        return inf.pad_rows(rows_ids, rows_types, inf.special_ids(tok)[2])
    items = list(inputs or CHECK_TEXTS)
    if src_meta["kind"] == "discriminator":
        items = [it if isinstance(it, str) else it[0] for it in items]
    return inf.encode_texts(tok, items, n).batch


def _check_batches(full: Any) -> list[Any]:
    """The full padded batch, then other batch and sequence sizes through the dynamic axes."""
    order = list(full.attention_mask.sum(1).argsort())
    out = [full, full.select([order[0]])]  # batch 1, the shortest row
    if len(full) > 2:
        out.append(full.select(order[: len(full) // 2 + 1]))  # a shorter width, batch > 1
    return out


def _torch_outputs(wrapper: Any, batch: Any) -> list[Any]:
    import torch

    with torch.inference_mode():
        outs = wrapper(*(torch.from_numpy(batch.feeds()[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
    return [o.float().numpy() for o in outs]


def _max_diff(ref: Sequence[Any], got: Sequence[Any], mask: Any) -> float:
    """Max |ref - got| over outputs; per-token outputs only at real (unpadded) tokens."""
    import numpy as np

    worst = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            raise ExportCheckError(f"output shape {g.shape} from ONNX Runtime, expected {r.shape}")
        d = np.abs(r.astype(np.float64) - g.astype(np.float64))
        if d.ndim == 2 and d.shape == mask.shape:
            d = d[mask.astype(bool)]
        worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


def _agreement(kind: str, ref: Sequence[Any], got: Sequence[Any], mask: Any) -> float | None:
    """Share of predictions (class, start/end token, replaced or not) int8 keeps."""
    import numpy as np

    if kind == "regression":
        return None
    if kind == "classification":
        return float((ref[0].argmax(-1) == got[0].argmax(-1)).mean())
    if kind == "discriminator":
        m = mask.astype(bool)
        return float(((ref[0] > 0) == (got[0] > 0))[m].mean())
    neg = np.where(mask.astype(bool), 0.0, -1e9)  # qa: best start and end on real tokens
    same = [(r + neg).argmax(-1) == (g + neg).argmax(-1) for r, g in zip(ref[:2], got[:2])]
    return float(np.concatenate(same).mean())


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _verify(path: Path, wrapper: Any, batches: Sequence[Any]) -> float:
    sess = _session(path)
    worst = 0.0
    for b in batches:
        worst = max(worst, _max_diff(_torch_outputs(wrapper, b), sess.run(None, b.feeds()), b.attention_mask))
    return worst


# --- export steps ------------------------------------------------------------------------

def _export_graph(wrapper: Any, batch: Any, path: Path, names: tuple[str, ...], per_token: set[str], opset: int,
                  exporter: str, max_len: int) -> None:
    import torch

    args = tuple(torch.from_numpy(batch.feeds()[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if exporter == "dynamo":
                b, t = torch.export.Dim("batch"), torch.export.Dim("seq", max=max_len)
                torch.onnx.export(wrapper, args, str(path), input_names=inputs, output_names=list(names),
                                  dynamic_shapes={k: {0: b, 1: t} for k in inputs}, opset_version=max(opset, 18),
                                  dynamo=True, external_data=False)
            else:
                axes = {k: {0: "batch", 1: "seq"} for k in inputs}
                axes.update({n: ({0: "batch", 1: "seq"} if n in per_token else {0: "batch"}) for n in names})
                torch.onnx.export(wrapper, args, str(path), input_names=inputs, output_names=list(names),
                                  dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        finally:
            wrapper.eval()  # the TorchScript exporter restores the *outer* module's mode recursively


def _fused_ops(path: Path) -> dict[str, int]:
    """ONNX Runtime contrib ops in the graph, by type (the Attention nodes of --optimize)."""
    import collections

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(collections.Counter(n.op_type for n in graph.node if n.domain == "com.microsoft"))


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: the Attention contrib op (--optimize) defeats ORT's shape inference otherwise
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_onnx(model_dir: str | Path, out_dir: str | Path, *, optimize: bool = False, quantize: bool = False,
                opset: int = DEFAULT_OPSET, check_inputs: Sequence[Any] | None = None,
                exporter: str = "torchscript", attention: str = "explicit", tokenizer: str | Path | None = None,
                atol: float = ATOL, evaluate: Callable[[Any], dict[str, float]] | None = None) -> ExportReport:
    """Export, verify against PyTorch, optionally fuse and quantise; write `out_dir` atomically.

    check_inputs: texts or (a, b) pairs (QA: (question, context) pairs) for the agreement check;
    default: built-in English text. attention: "explicit" exports `explicit_attention_twin`
    (faster in ORT), "sdpa" the model as it is; either is checked against the original model.
    evaluate: called with an `inference.Predictor` for the fp32 and the int8 model, returns dev
    metrics, reported before/after quantisation."""
    from tokenizers import Tokenizer

    from electra_pipeline.inference import Predictor

    if exporter not in EXPORTERS:
        raise DataError(f"exporter: must be one of {EXPORTERS}, got {exporter!r}")
    if attention not in ATTENTIONS:
        raise DataError(f"attention: must be one of {ATTENTIONS}, got {attention!r}")
    low, high = OPSETS[exporter]
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise ConfigError(f"opset: {opset!r} is outside the range the {exporter} exporter supports ({low}-{high})")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not 0 <= atol < math.inf:
        raise ConfigError(f"atol: the accepted ONNX-vs-PyTorch difference must be a finite number >= 0, got {atol!r}")
    if optimize and (exporter, attention) != ("torchscript", "explicit"):
        raise DataError("optimize: the fused Attention op is written by the torchscript exporter with explicit "
                        f"attention, got exporter={exporter!r} attention={attention!r}")
    t0 = time.perf_counter()
    src = load_source(model_dir, tokenizer)
    meta, names = src.meta, _output_names(src.meta)
    try:
        tok = Tokenizer.from_file(str(src.tokenizer_file))
    except Exception as e:  # tokenizers raises a plain Exception on a missing or malformed file
        raise DataError(f"{src.tokenizer_file}: not a tokenizers JSON file ({str(e).splitlines()[0][:200]})") from None
    if tok.get_vocab_size() != src.cfg.vocab_size:  # a smaller one would run, and score other words
        raise DataError(f"{src.tokenizer_file}: vocabulary of {tok.get_vocab_size()} tokens, the model's has "
                        f"{src.cfg.vocab_size}; wrong tokenizer?")
    full = check_batch(meta, tok, check_inputs)
    if len(full) < 2:
        raise DataError("check_inputs: give at least two texts so the check covers batch > 1 with padding")
    batches = _check_batches(full)
    wrapper = _wrap(src.model, names)  # the reference: the model exactly as trained
    if attention == "explicit":
        twin = explicit_attention_twin(src.model, fused=optimize, cls_only=meta["kind"] in ("classification", "regression")
                                     and meta.get("pooling", "cls") == "cls")
        exported = _wrap(twin, names)
    else:
        exported = wrapper

    out = Path(out_dir)
    with staged_dir(out, "metadata.json") as tmp:
        model_path = tmp / "model.onnx"
        per_token = {"start_logits", "end_logits"} | ({"logits"} if meta["kind"] == "discriminator" else set())
        _export_graph(exported, full, model_path, names, per_token, opset, exporter, src.cfg.max_position_embeddings)
        diff = _verify(model_path, wrapper, batches)
        log.info("ONNX vs PyTorch max abs diff %.3g over %d batches", diff, len(batches))
        if not diff <= atol:
            raise ExportCheckError(f"ONNX Runtime disagrees with PyTorch: max abs diff {diff:.3g} > {atol:g}")
        fused = _fused_ops(model_path)
        shutil.copyfile(src.tokenizer_file, tmp / "tokenizer.json")
        files = {"model": "model.onnx", "tokenizer": "tokenizer.json", "metadata": "metadata.json"}
        report = ExportReport(out_dir=out, task=meta["task"], kind=meta["kind"], exporter=exporter, attention=attention,
                              opset=max(opset, 18) if exporter == "dynamo" else opset, optimized=optimize,
                              max_abs_diff=diff, checked_shapes=[tuple(b.input_ids.shape) for b in batches],
                              files=files)
        if quantize:
            _quantize(model_path, tmp / "model.int8.onnx")
            files["int8"] = "model.int8.onnx"
            sess = _session(tmp / "model.int8.onnx")
            ref = _torch_outputs(wrapper, full)
            got = sess.run(None, full.feeds())
            report.int8_max_abs_diff = _max_diff(ref, got, full.attention_mask)
            report.int8_agreement = _agreement(meta["kind"], ref, got, full.attention_mask)
        _write_metadata(tmp, src, report, names, fused)
        if evaluate is not None:
            for variant in ("fp32", "int8") if quantize else ("fp32",):
                report.dev_metrics[variant] = dict(evaluate(Predictor.load(tmp, quantized=variant == "int8")))
        report.seconds = time.perf_counter() - t0
        written = _write_metadata(tmp, src, report, names, fused)
        # the model card travels with the export and so into the registry: the source's, for ONNX
        card = src.model_dir / "README.md"
        (tmp / "README.md").write_text(onnx_card(card.read_text() if card.is_file() else None, written))
    return report


def _write_metadata(d: Path, src: _Source, report: ExportReport, names: tuple[str, ...],
                    fused: dict[str, int]) -> dict[str, Any]:
    from electra_pipeline.inference import file_sha256

    cfg = src.cfg
    meta = {
        "format_version": 1,
        **src.meta,
        "num_labels": len(src.meta.get("labels") or []) or 1,
        "model": {"hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
                  "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_position_embeddings},
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "outputs": list(names),
        "opset": report.opset,
        "exporter": report.exporter,
        "attention": report.attention,
        "optimized": report.optimized,
        "fused_ops": fused,
        "max_abs_diff": report.max_abs_diff,
        "int8_max_abs_diff": report.int8_max_abs_diff,
        "int8_agreement": report.int8_agreement,
        "dev_metrics": report.dev_metrics,
        "checked_shapes": report.checked_shapes,
        "files": report.files,
        # what `inference.Predictor.load` (and so the server at start-up) verifies before it loads a file
        "sha256": {name: file_sha256(d / name) for name in report.files.values() if name != "metadata.json"},
        "source": str(src.model_dir.resolve()),
        "versions": _versions(),
    }
    evidence = src.model_dir / "evaluation.json"  # baselines.EVIDENCE_FILE: what the dev score means
    if evidence.is_file():
        meta["evaluation"] = read_json_object(evidence)
    atomic.write_text(d / "metadata.json", json.dumps(meta, indent=2) + "\n")
    return meta
