"""The GPU check script runs end to end on the CPU (`--dry-run`), so the day a GPU is lent it
spends its minutes measuring, not debugging."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_json_and_markdown(tmp_path):
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path / "gc")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gc" / "gpu_check.json").read_text())
    steps = result["steps"]
    assert result["dry_run"] and set(steps) == {"throughput", "learning"}
    assert all(s["ok"] for s in steps.values()), steps
    learn = steps["learning"]
    assert learn["steps"] == 20 and 0.0 <= learn["auc"] <= 1.0
    assert set(learn["finetune"]["pretrained"]) == {"sst2", "mrpc", "stsb", "glue3"}
    md = (tmp_path / "gc" / "gpu_check.md").read_text()
    assert "held-out ROC-AUC" in md and "| tiny |" in md


def test_gpu_check_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(tmp_path / "gc")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
