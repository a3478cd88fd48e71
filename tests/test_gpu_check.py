"""The GPU check script refuses to measure without a GPU. It runs end to end on the CPU in its
`--smoke` mode (a smaller `--dry-run`) in tests/test_bench_smoke.py, which also checks its JSON and
Markdown report, so the day a GPU is lent it spends its minutes measuring, not debugging."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(tmp_path / "gc")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
