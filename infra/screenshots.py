"""Screenshots of the MLflow UI for docs/: the runs list with the pipeline's headline columns
(docs/mlflow-runs.png) and the registered model version with its evidence link
(docs/mlflow-version.png).

    python infra/screenshots.py                      # a tiny pipeline run in a temp dir, then shoot
    python infra/screenshots.py --store sqlite:////abs/mlflow.db --experiment electra-pipeline

It starts `mlflow ui` on a free loopback port against the store, waits until the server answers,
loads each page in headless Chromium (a fresh profile, with virtual time for the JS app to
render) and stops the server. The tiny run takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def tiny_run(work: Path, experiment: str) -> str:
    """`electra pipeline` on 1,200 corpus lines, a 5-step tiny model and 64 SST-2 examples, both
    objectives, probes on RTE: every stage and every headline figure, in minutes. Its store's URI."""
    from flows.base import sample_path

    with gzip.open(sample_path("corpus"), "rt", encoding="utf-8") as f:
        (work / "corpus.txt").write_text("".join(next(f) for _ in range(1200)), encoding="utf-8")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "electra_cli", "pipeline", "--preset", "tiny", "--corpus", str(work / "corpus.txt"),
           "--eval-tasks", "sst2", "--probe-tasks", "rte", "--objectives", "electra", "mlm", "--max-steps", "5",
           "--device", "cpu", "--output-dir", str(work / "outputs"), "--tracking-uri", uri, "--experiment", experiment,
           "--eval-concurrency", "1", "--set", "pretrain.model.vocab_size=1000", "--set", "examples.num_proc=1",
           "--set", "finetune.seeds=[1]", "--set", "finetune.epochs=1", "--set", "finetune.max_train_examples=64",
           "--set", "finetune.max_eval_examples=64", "--set", "finetune.batch_size=16"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(work / "prefect-home")}
    env.pop("PREFECT_API_URL", None)  # the CLI's own temporary server, not the user's
    subprocess.run(cmd, cwd=work, env=env, check=True)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mlflow_ui(uri: str, log: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """`mlflow ui` against `uri` on a free loopback port, until the block ends; its address."""
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        address = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{address}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"error: mlflow ui did not start on port {port}; see {log}")
                time.sleep(0.5)
            yield address
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def shoot(url: str, out: Path, profile: Path, size: str, budget_ms: int) -> None:
    """One page in headless Chromium; a fresh profile, so no saved UI state from earlier visits.
    Its output goes to a file beside the profile: with pipes, Chromium does not exit."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("error: no chromium on PATH (Debian: apt-get install chromium)")
    shutil.rmtree(profile, ignore_errors=True)
    with open(f"{profile}.log", "w") as log:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                        f"--screenshot={out}", url], check=True, stdin=subprocess.DEVNULL, stdout=log,
                       stderr=subprocess.STDOUT, timeout=300)
    print(f"{out}  <- {url}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="", help="MLflow tracking URI to show; empty: a tiny pipeline run in a temp dir")
    ap.add_argument("--experiment", default="electra-pipeline", help="the pipeline's MLflow experiment")
    ap.add_argument("--out", default=str(REPO / "docs"), help="where the two PNG files go")
    ap.add_argument("--size", default="2400,900", help="browser window, WIDTH,HEIGHT")
    ap.add_argument("--budget-ms", type=int, default=15000, help="Chromium's virtual time for the page to render")
    args = ap.parse_args(argv)

    import mlflow

    from electra_pipeline.tracking import resolve_tracking_uri
    from flows.tracking import TRAINING_VIEW, runs_url

    with tempfile.TemporaryDirectory(prefix="mlflow-shots-") as tmp:
        work = Path(tmp)
        uri = resolve_tracking_uri(args.store) if args.store else tiny_run(work, args.experiment)
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise SystemExit(f"error: --experiment {args.experiment}: not in {uri}")
        versions = sorted(client.search_model_versions(), key=lambda v: int(v.creation_timestamp))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with mlflow_ui(uri, work / "mlflow-ui.log") as address:
            shoot(runs_url(address, exp.experiment_id), out / "mlflow-runs.png", work / "chromium", args.size,
                  args.budget_ms)
            if versions:
                v = versions[-1]
                width, height = args.size.split(",")
                shoot(f"{address}/#/models/{v.name}/versions/{v.version}?{TRAINING_VIEW}", out / "mlflow-version.png",
                      work / "chromium", f"{min(int(width), 1800)},{int(height) + 400}", args.budget_ms)
            else:
                print(f"no registered model version in {uri}: docs/mlflow-version.png not taken", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
