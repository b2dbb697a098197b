"""Every registered task trains through the harness: its conf/task yaml builds, the model gets
the head the task declares, and a few steps on a small fixed set lower the training loss."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import tasks
from zoo.data import build_datasets
from zoo.mixers import CONF_DIR
from zoo.model import build_model
from zoo.results import read_metrics
from zoo.train import TrainConfig, train


@pytest.mark.parametrize("name", tasks.available())
def test_task_trains_and_loss_falls(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    task_cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml"), resolve=True)
    task_cfg.update(num_train=64, num_test=32, segments=None, slices={"in_dist": {}})
    data = build_datasets(task_cfg, seed=0)
    torch.manual_seed(0)
    model = build_model("attention", vocab_size=data.vocab_size, d_model=32, n_layers=1,
                        max_seq_len=data.max_seq_len, head=data.task.head)
    cfg = TrainConfig(epochs=60, batch_size=32, lr=1e-2, early_stop_acc=None, eval_every=5, progress=False)
    state = train(model, data, cfg, run_dir=tmp_path, seed=0, device=torch.device("cpu"))
    losses = [r["train_loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert state.status == "completed" and state.step == 120
    assert losses[-1] < losses[0] - 0.1, f"{name}: training loss {losses[0]:.3f} -> {losses[-1]:.3f}"
