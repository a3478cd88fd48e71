"""Serving latency and throughput of an ELECTRA-Small classifier at seq 128: PyTorch eager,
ONNX Runtime fp32 and ONNX Runtime int8 in one process, then HTTP through a real `bentoml serve`.

Concurrency c means c requests of one text each in flight. In-process, c=1 is batch 1 and
c=16 is the batch of 16 the server's adaptive batching forms from 16 concurrent requests
(latency = that batch's latency, throughput = 16 / latency). Over HTTP, c client threads post
single-text requests in a closed loop. The in-process variants run interleaved, iteration by
iteration, so load from other processes on the machine hits all of them alike.

Accuracy: quantisation must not cost more than 1 dev point; the dev accuracy of PyTorch, fp32 and
int8 and the int8-vs-fp32 agreement are measured on GLUE SST-2 dev. The model: `--model-dir` (a
fine-tuned SST-2 directory from `electra finetune`); else `--finetune-steps N` fine-tunes
ELECTRA-Small from random initialisation (no pre-trained checkpoint ships; ~0.9 s a step on one
core); else, fastest and weakest, the random-init encoder with a linear-probe head fitted on
frozen [CLS] features. A weak model has tiny decision margins, so its int8 agreement understates
what a properly fine-tuned model keeps. The last line is machine-readable:

    serve torch_rps=<a> ort_rps=<b> ort_int8_rps=<c> http_rps=<d> ratio=<c/a>   (c=16 throughputs)

    python bench/serve_latency.py                        # random-init small + linear probe
    python bench/serve_latency.py --finetune-steps 800 --threads 1
    python bench/serve_latency.py --model-dir runs/finetune/sst2/model
    python bench/serve_latency.py --smoke --work-dir /tmp/sl    # tiny model, shipped SST-2 sample: seconds
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads sleep instead of spinning when idle, the counterpart of ONNX
# Runtime's allow_spinning=0 (inference.Predictor). With spinning, PyTorch on a CPU shared with
# other processes collapsed here (16x128: 1.1 s vs 0.32 s passive), which would flatter ORT.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # imports below on purpose

import argparse
import contextlib
import dataclasses
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra_pipeline import inference
from electra_pipeline.evaluation.finetuned import TaskMeta, load_finetuned, save_finetuned
from electra_pipeline.export import onnx as export
from electra_pipeline.modeling import presets
from electra_pipeline.modeling.config import ModelConfig
from electra_pipeline.modeling.model import ElectraForSequenceClassification
from electra_pipeline.training.runtime import has_bf16_matrix_units

REPO = Path(__file__).resolve().parents[1]
SST2_DIRS = (REPO.parent / "shared" / "data" / "glue" / "SST-2",)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# --- data and model ----------------------------------------------------------------------

def read_sst2(split: str, dirs: tuple[Path, ...] = SST2_DIRS) -> list[tuple[str, int]] | None:
    for d in dirs:
        f = d / f"{split}.tsv"
        if f.is_file():
            rows = [ln.split("\t") for ln in f.read_text(encoding="utf-8").splitlines()[1:]]
            return [(r[0], int(r[1])) for r in rows if len(r) == 2]
    return None


def train_tokenizer(texts: list[str], vocab_size: int, out: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    tok.save(str(out))
    return out


def model_and_tokenizer(preset: str, texts: list[str], work: Path) -> tuple[ModelConfig, Path]:
    """The preset's encoder config with the vocabulary the WordPiece really reached: SST-2's
    sentences hold fewer distinct pieces than the preset's 30,522, and the export refuses a
    tokenizer whose size differs from the model's embedding table."""
    from tokenizers import Tokenizer

    cfg = presets.preset(preset).model
    tok_file = train_tokenizer(texts, cfg.vocab_size, work / "tokenizer.json")
    return dataclasses.replace(cfg, vocab_size=Tokenizer.from_file(str(tok_file)).get_vocab_size()), tok_file


def cls_features(model: ElectraForSequenceClassification, tok: Any, texts: list[str], seq: int) -> np.ndarray:
    """Frozen [CLS] states (N, H), batched by length."""
    enc = inference.encode_texts(tok, texts, seq)
    order = np.argsort(enc.batch.attention_mask.sum(1))
    feats = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for i in range(0, len(order), 64):
            b = enc.batch.select(order[i:i + 64])
            h = model.electra(torch.from_numpy(b.input_ids), torch.from_numpy(b.token_type_ids),
                              torch.from_numpy(b.attention_mask))
            feats[order[i:i + 64]] = h[:, 0].numpy()
    return feats


def probe_classifier(work: Path, train: list[tuple[str, int]], n_train: int, seq: int, preset: str = "small") -> Path:
    """Random-init ELECTRA-Small + a ridge linear probe on [CLS] written into its head."""
    from tokenizers import Tokenizer

    cfg, tok_file = model_and_tokenizer(preset, [t for t, _ in train], work)
    tok = Tokenizer.from_file(str(tok_file))
    torch.manual_seed(0)
    model = ElectraForSequenceClassification(cfg, num_labels=2).eval()
    rng = np.random.default_rng(0)
    sample = [train[i] for i in rng.choice(len(train), size=min(n_train, len(train)), replace=False)]
    x = cls_features(model, tok, [t for t, _ in sample], seq)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    y = np.array([1.0 if lab else -1.0 for _, lab in sample])
    w = np.linalg.solve(z.T @ z + 10.0 * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    # logit_pos - logit_neg = w.(x - mu)/sd + mean(y): split symmetrically over the two classes
    ww, b = w / sd, y.mean() - float((w / sd) @ mu)
    with torch.no_grad():
        head = model.classifier.out_proj
        head.weight.copy_(torch.from_numpy(np.stack([-ww / 2, ww / 2]).astype(np.float32)))
        head.bias.copy_(torch.tensor([-b / 2, b / 2], dtype=torch.float32))
    meta = TaskMeta(task="sst2", kind="classification", labels=["0", "1"], max_seq_length=seq)
    return save_finetuned(model, meta, tok_file, work / "probe_model")


def finetune_small(work: Path, train: list[tuple[str, int]], steps: int, seq: int, lr: float,
                   batch: int = 32, seed: int = 0, preset: str = "small") -> Path:
    """ELECTRA-Small fine-tuned on SST-2 from random initialisation (no pre-trained checkpoint
    ships with the repo): AdamW, 10% warmup then linear decay, grad clip 1. A few hundred steps
    give a weak but real classifier in minutes on one core."""
    from tokenizers import Tokenizer

    cfg, tok_file = model_and_tokenizer(preset, [t for t, _ in train], work)
    tok = Tokenizer.from_file(str(tok_file))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ElectraForSequenceClassification(cfg, num_labels=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, eps=1e-6)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / steps))
    t0, hits, seen = time.perf_counter(), 0, 0
    for step in range(steps):
        rows = [train[i] for i in rng.integers(0, len(train), batch)]
        b = inference.encode_texts(tok, [t for t, _ in rows], seq).batch
        logits = model(torch.from_numpy(b.input_ids), torch.from_numpy(b.token_type_ids),
                       torch.from_numpy(b.attention_mask))
        y = torch.tensor([lab for _, lab in rows])
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        hits, seen = hits + int((logits.argmax(-1) == y).sum()), seen + batch
        if (step + 1) % 100 == 0:
            print(f"  finetune step {step + 1}/{steps} loss {loss.item():.3f} train acc {100 * hits / seen:.1f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            hits = seen = 0
    meta = TaskMeta(task="sst2", kind="classification", labels=["0", "1"], max_seq_length=seq)
    return save_finetuned(model.eval(), meta, tok_file, work / "finetuned_model")


def dev_accuracy(predict: Callable[[list[str]], list[int]], dev: list[tuple[str, int]]) -> tuple[float, list[int]]:
    preds = predict([t for t, _ in dev])
    return 100.0 * float(np.mean([p == y for p, (_, y) in zip(preds, dev)])), preds


def torch_predict(model: Any, tok: Any, seq: int, bf16: bool = False) -> Callable[[list[str]], list[int]]:
    def run(texts: list[str]) -> list[int]:
        enc = inference.encode_texts(tok, texts, seq)
        out = np.zeros(len(texts), np.int64)
        order = np.argsort(enc.batch.attention_mask.sum(1))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(order), 64):
                b = enc.batch.select(order[i:i + 64])
                logits = model(torch.from_numpy(b.input_ids), torch.from_numpy(b.token_type_ids),
                               torch.from_numpy(b.attention_mask))
                out[order[i:i + 64]] = logits.argmax(-1).numpy()
        return out.tolist()
    return run


def label_index(pred: inference.Predictor) -> Callable[[list[str]], list[int]]:
    labels = pred.meta["labels"]
    return lambda texts: [labels.index(r["label"]) for r in pred.classify(texts)]


# --- timing ------------------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def measure_in_process(runners: dict[str, Callable[[inference.Batch], Any]], batch128: inference.Batch,
                       iters: dict[int, int], warmup: int = 2) -> dict[tuple[str, int], dict[str, float]]:
    results = {}
    for c, n in iters.items():
        b = batch128.select(list(range(c)))
        for fn in runners.values():
            for _ in range(warmup):
                fn(b)
        lat: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(n):  # interleaved: contention hits every variant alike
            for k, fn in runners.items():
                lat[k].append(timed(lambda fn=fn, b=b: fn(b)))
        for k, xs in lat.items():
            results[(k, c)] = {"p50_ms": 1e3 * pct(xs, 50), "p99_ms": 1e3 * pct(xs, 99),
                               "rps": c / statistics.fmean(xs)}
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def bentoml_server(export_dir: Path, quantized: bool, threads: int, log: Path):
    port = free_port()
    env = {**os.environ, "ELECTRA_MODEL_DIR": str(export_dir), "ELECTRA_QUANTIZED": "1" if quantized else "0",
           "ELECTRA_THREADS": str(threads),
           "BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:ElectraService",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve did not become ready:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def measure_http(url: str, text: str, concurrency: int, requests: int) -> dict[str, float]:
    import httpx

    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(_: int) -> float:
            t = time.perf_counter()
            r = client.post(f"{url}/classify", json={"texts": [text]})
            r.raise_for_status()
            return time.perf_counter() - t

        for _ in range(2):
            one(0)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            lat = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
    return {"p50_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99), "rps": requests / wall}


# --- main --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model-dir", help="fine-tuned SST-2 model directory (default: random-init small + probe)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters1", type=int, default=30, help="timed iterations at concurrency 1")
    ap.add_argument("--iters16", type=int, default=8, help="timed iterations at concurrency 16")
    ap.add_argument("--http-requests", type=int, default=96, help="requests per HTTP concurrency level")
    ap.add_argument("--probe-train", type=int, default=2000, help="SST-2 train sentences for the probe head")
    ap.add_argument("--finetune-steps", type=int, default=0,
                    help="instead of the probe: fine-tune ELECTRA-Small from scratch on SST-2 for this many steps")
    ap.add_argument("--lr", type=float, default=2e-4, help="fine-tuning peak learning rate")
    ap.add_argument("--no-optimize", dest="optimize", action="store_false",
                    help="export without ORT's fused Attention op (the portable graph)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ORT intra-op threads (all variants)")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--work-dir", help="keep models and exports here (default: a temp dir)")
    ap.add_argument("--preset", default="small", help="encoder size of the probe or fine-tuned model")
    ap.add_argument("--smoke", action="store_true",
                    help="check the script in seconds: tiny model, seq 32, the SST-2 sample shipped in "
                         "electra_pipeline/sample (64 probe sentences, 64 dev), 2 + 1 timed iterations, 8 HTTP requests")
    args = ap.parse_args(argv)
    dirs = SST2_DIRS
    if args.smoke:
        from smoke import SAMPLE_GLUE

        dirs, args.preset, args.seq, args.probe_train = (SAMPLE_GLUE / "SST-2",), "tiny", 32, 64
        args.iters1, args.iters16, args.http_requests = 2, 1, 8

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="serve_latency_"))
    work.mkdir(parents=True, exist_ok=True)
    train, dev = read_sst2("train", dirs), read_sst2("dev", dirs)
    if args.smoke and dev is not None:
        dev = dev[:64]
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.model_dir:
        model_dir, how = Path(args.model_dir), f"fine-tuned model {args.model_dir}"
    elif train is not None and args.finetune_steps:
        model_dir = finetune_small(work, train, args.finetune_steps, args.seq, args.lr, preset=args.preset)
        how = f"ELECTRA-{args.preset} fine-tuned from scratch on SST-2 for {args.finetune_steps} steps of 32"
    elif train is not None:
        model_dir = probe_classifier(work, train, args.probe_train, args.seq, preset=args.preset)
        how = f"random-init ELECTRA-{args.preset} + linear probe on {min(args.probe_train, len(train))} SST-2 train sentences"
    else:
        sys.exit("no --model-dir and no GLUE SST-2 under ../shared/data: nothing to build a classifier from")
    print(f"model: {how} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model, meta = load_finetuned(model_dir)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    dev_metrics: dict[str, Any] = {}

    def evaluate(pred: inference.Predictor) -> dict[str, float]:
        if dev is None:
            return {}
        acc, preds = dev_accuracy(label_index(pred), dev)
        dev_metrics[pred.model_file] = preds
        return {"accuracy": acc}

    t0 = time.perf_counter()
    report = export.export_onnx(model_dir, work / "onnx", quantize=True, optimize=args.optimize, evaluate=evaluate)
    print(f"export: max_abs_diff={report.max_abs_diff:.2e} int8_max_abs_diff={report.int8_max_abs_diff:.2e} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # --- accuracy -----------------------------------------------------------------------
    bf16 = has_bf16_matrix_units(torch.device("cpu"))  # AMX or AVX512-BF16: PyTorch's own fast path, shown beside
    if dev is not None:
        torch_acc, torch_preds = dev_accuracy(torch_predict(model, tok, meta.max_seq_length), dev)
        fp32_acc, int8_acc = report.dev_metrics["fp32"]["accuracy"], report.dev_metrics["int8"]["accuracy"]
        agree = 100.0 * float(np.mean(np.equal(dev_metrics["model.onnx"], dev_metrics["model.int8.onnx"])))
        agree_t = 100.0 * float(np.mean(np.equal(torch_preds, dev_metrics["model.onnx"])))
        print(f"\nSST-2 dev ({len(dev)} sentences) accuracy: pytorch {torch_acc:.2f}  ort_fp32 {fp32_acc:.2f}  "
              f"ort_int8 {int8_acc:.2f}  (int8 - fp32 = {int8_acc - fp32_acc:+.2f} points)")
        print(f"prediction agreement: ort_fp32 vs pytorch {agree_t:.2f}%  ort_int8 vs ort_fp32 {agree:.2f}%")
        if bf16:
            bf16_acc, _ = dev_accuracy(torch_predict(model, tok, meta.max_seq_length, bf16=True), dev)
            print(f"pytorch bf16 autocast {bf16_acc:.2f}")
    else:
        print("\nno SST-2 dev set found: accuracy not measured")

    # --- in-process latency ---------------------------------------------------------------
    long_text = ""  # the shortest run of dev sentences longer than seq tokens: full rows, little waste
    for t, _ in dev or [("the film is long , slow and never quite finds its way .", 0)] * 100:
        long_text = f"{long_text} {t}".strip()
        if len(tok.encode(long_text).ids) > args.seq:
            break
    enc = inference.encode_texts(tok, [long_text] * 16, args.seq)
    batch = enc.batch
    assert batch.input_ids.shape == (16, args.seq) and all(enc.truncated), "inputs must fill seq"
    fp32 = inference.Predictor.load(work / "onnx", threads=args.threads)
    int8 = inference.Predictor.load(work / "onnx", quantized=True, threads=args.threads)

    def torch_run(b: inference.Batch) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(b.input_ids), torch.from_numpy(b.token_type_ids),
                         torch.from_numpy(b.attention_mask))

    def torch_bf16_run(b: inference.Batch) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch_run(b)

    runners = {"pytorch_eager": torch_run, "ort_fp32": fp32.run, "ort_int8": int8.run}
    if bf16:  # not part of the ratio: the target compares with PyTorch's default (fp32) eager
        runners["pytorch_bf16_autocast"] = torch_bf16_run
    load_before = os.getloadavg()[0]
    res = measure_in_process(runners, batch, {1: args.iters1, 16: args.iters16})
    http: dict[int, dict[str, float]] = {}
    if not args.no_http:
        with bentoml_server(work / "onnx", quantized=True, threads=args.threads, log=work / "bentoml.log") as url:
            for c in (1, 16):
                http[c] = measure_http(url, long_text, c, args.http_requests if c > 1 else max(args.iters1, 10))
    print(f"\nseq {args.seq}, threads {torch.get_num_threads()} (torch, ORT, server), cpus {os.cpu_count()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, ORT spinning off, "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} (other processes share the CPU)")
    print(f"{'variant':<22}{'conc':>5}{'p50 ms':>10}{'p99 ms':>10}{'seq/s':>10}")
    for (k, c), r in res.items():
        print(f"{k:<22}{c:>5}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['rps']:>10.2f}")
    for c, r in http.items():
        print(f"{'http_bentoml_int8':<22}{c:>5}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['rps']:>10.2f}")
    a, b, c_ = res[("pytorch_eager", 16)]["rps"], res[("ort_fp32", 16)]["rps"], res[("ort_int8", 16)]["rps"]
    d = http[16]["rps"] if http else float("nan")
    print(f"serve torch_rps={a:.2f} ort_rps={b:.2f} ort_int8_rps={c_:.2f} http_rps={d:.2f} ratio={c_ / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
