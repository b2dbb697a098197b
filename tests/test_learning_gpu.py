"""Learning checks on the GPU (`make test-gpu`; minutes per model): MQAR at d_model=128, L=256,
16 kv pairs, V=8192, as in results/learning_checks.md (which records what each model reached)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
REPO = Path(__file__).resolve().parents[1]
MQAR = ["task=mqar", "task.vocab_size=8192", "task.seq_len=256", "task.num_kv_pairs=16", "task.num_train=100000",
        "task.num_test=1000", "model.d_model=128", "train.epochs=16", "train.batch_size=256", "train.progress=false"]
CASES = {  # model -> (lr, extra overrides)
    "attention": ("1e-3", []),
    "based": ("3e-3", []),
    "gla": ("1e-3", ["model.mixer.expand_k=1"]),
    "deltanet": ("3e-3", []),
    "mamba2": ("3e-3", []),
}


@pytest.mark.parametrize("model", list(CASES))
def test_mqar_learned_on_gpu(model, tmp_path):
    lr, extra = CASES[model]
    cmd = [sys.executable, "-m", "zoo", f"results_dir={tmp_path}", f"model={model}", f"train.lr={lr}", *MQAR, *extra]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "ZOO_CACHE": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = tmp_path.glob("runs/*/summary.json")
    accuracy = json.loads(summary.read_text())["accuracy"]
    assert accuracy >= 0.9, f"{model} reached {accuracy:.3f} on MQAR (L=256, 16 pairs)"
