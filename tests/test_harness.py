"""The harness end to end: the CLI, the run directory's files, resume, skip, divergence, errors."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo.results
from zoo.data import build_datasets
from zoo.metrics import Tally
from zoo.model import build_model
from zoo.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
TINY = ["task.vocab_size=64", "task.seq_len=16", "task.num_kv_pairs=2", "task.num_train=2000", "task.num_test=200",
        "~task.slices.L128_kv8", "+task.slices.longer={seq_len:32,num_kv_pairs:4}", "model.d_model=32", "train.batch_size=32",
        "train.progress=false", "train.device=cpu"]


def zoo_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZOO_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "zoo", f"results_dir={tmp_path / 'results'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def only_run_dir(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "results" / "runs").iterdir()
    return run_dir


def test_cli_learns_mqar_and_writes_documented_files(tmp_path):
    proc = zoo_cli(tmp_path, *TINY, "train.epochs=6", "train.lr=1e-2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"} <= {p.name for p in run_dir.iterdir()}
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("run_id", "status", "task", "model", "params", "state_bytes", "accuracy", "slices", "steps",
                "tokens_seen", "wall_s", "device", "versions", "git_commit", "hparams", "config_hash"):
        assert key in summary, key
    assert summary["status"] == "completed"
    assert set(summary["slices"]) == {"in_dist", "longer"}
    assert summary["accuracy"] > 0.5, summary["accuracy"]  # chance is 1/32
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, len(metrics) + 1))
    assert all({"step", "train_loss", "slices", "overall"} <= set(m) for m in metrics)

    df = zoo.results.load(tmp_path / "results")
    assert sorted(df["slice"]) == ["in_dist", "longer", "overall"]
    assert {"task.seq_len", "model.d_model", "train.lr", "accuracy", "acc_micro", "state_bytes"} <= set(df.columns)

    again = zoo_cli(tmp_path, *TINY, "train.epochs=6", "train.lr=1e-2")
    assert again.returncode == 0 and "skip" in again.stdout + again.stderr


def test_unknown_model_task_and_key_are_errors(tmp_path):
    proc = zoo_cli(tmp_path, "model=basd")
    assert proc.returncode != 0 and "Available options in 'model'" in proc.stderr and "attention" in proc.stderr
    proc = zoo_cli(tmp_path, "task=mqr")
    assert proc.returncode != 0 and "Available options in 'task'" in proc.stderr
    proc = zoo_cli(tmp_path, "model.mixer.feature_dm=3")
    assert proc.returncode != 0 and "feature_dm" in proc.stderr and "not in struct" in proc.stderr


def test_impossible_task_parameters_name_the_constraint(tmp_path):
    proc = zoo_cli(tmp_path, "task.seq_len=30", "task.num_kv_pairs=8")
    assert proc.returncode != 0
    assert "num_kv_pairs=8 needs seq_len >= 4*num_kv_pairs = 32, got 30" in proc.stderr


def test_cfg_job_prints_resolved_config(tmp_path):
    proc = zoo_cli(tmp_path, "model=attention", "model.d_model=128", "--cfg", "job")
    assert proc.returncode == 0
    assert "d_model: 128" in proc.stdout and "_target_: zoo.mixers.attention.Attention" in proc.stdout


def tiny_setup(tmp_path, monkeypatch, **train_kw):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    task_cfg = {"name": "mqar", "vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2, "num_train": 512,
                "num_test": 64, "segments": None, "slices": {"in_dist": {}}}
    data = build_datasets(task_cfg, seed=0)
    torch.manual_seed(0)
    model = build_model("based", vocab_size=32, d_model=16, n_layers=1, max_seq_len=16)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 3e-3, "early_stop_acc": None, "progress": False, **train_kw})
    return data, model, cfg


@pytest.mark.parametrize("fresh_data", [False, True])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch, fresh_data):
    data, model, cfg = tiny_setup(tmp_path, monkeypatch, fresh_data=fresh_data)
    full = train(model, data, cfg, run_dir=tmp_path, seed=0, device=torch.device("cpu"))
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    data, model, cfg = tiny_setup(tmp_path, monkeypatch, eval_every=5, fresh_data=fresh_data)

    def interrupt(record):
        if record["step"] == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, data, cfg, run_dir=resumed_dir, seed=0, device=torch.device("cpu"), on_eval=interrupt)
    torch.manual_seed(123)  # a fresh process would start from a different RNG state
    data, model2, cfg = tiny_setup(tmp_path, monkeypatch, eval_every=5, fresh_data=fresh_data)
    final = train(model2, data, cfg, run_dir=resumed_dir, seed=0, device=torch.device("cpu"))
    assert final.step == full.step == 24 and final.status == "completed"
    for name, value in model2.state_dict().items():
        torch.testing.assert_close(value, reference[name], msg=f"{name} differs after resume")
    steps = [r["step"] for r in zoo.results.read_metrics(resumed_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 24


def test_nan_loss_marks_the_run_diverged(tmp_path, monkeypatch):
    data, model, cfg = tiny_setup(tmp_path, monkeypatch, epochs=2)
    with torch.no_grad():
        model.embed.weight[3] = float("nan")  # any sequence containing token 3 yields a NaN loss
    state = train(model, data, cfg, run_dir=tmp_path, seed=0, device=torch.device("cpu"))
    assert state.status == "diverged" and state.diverged_step == 0


def test_fresh_data_draws_a_new_deterministic_set_each_epoch(tmp_path, monkeypatch):
    data, _, _ = tiny_setup(tmp_path, monkeypatch)
    first, second = data.fresh_segments(0, 1)[0], data.fresh_segments(0, 2)[0]
    assert not torch.equal(first.inputs, second.inputs)
    assert not torch.equal(first.inputs, data.segments[0].inputs)
    assert torch.equal(data.fresh_segments(0, 1)[0].inputs, first.inputs)


def test_train_and_test_streams_are_disjoint_and_cached(tmp_path, monkeypatch):
    data, _, _ = tiny_setup(tmp_path, monkeypatch)
    train_rows = {tuple(r) for r in data.segments[0].inputs.tolist()}
    test_rows = {tuple(r) for r in data.slices["in_dist"].inputs.tolist()}
    assert len(train_rows & test_rows) == 0
    assert len(list((tmp_path / "cache").iterdir())) == 2
    again, _, _ = tiny_setup(tmp_path, monkeypatch)
    assert torch.equal(again.segments[0].inputs, data.segments[0].inputs)


def test_tally_granularities():
    tally = Tally()
    # example 0: 2 of 2 right; example 1: 1 of 3 right
    correct = torch.tensor([True, True, True, False, False])
    rows = torch.tensor([0, 0, 1, 1, 1])
    tally.add(torch.tensor(5.0), correct, rows, num_rows=2)
    out = tally.summary("per_example")
    assert out["acc_micro"] == pytest.approx(3 / 5)
    assert out["acc_example"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["acc_seq"] == pytest.approx(1 / 2)
    assert out["accuracy"] == out["acc_example"] and out["loss"] == pytest.approx(1.0)


def test_per_epoch_schedule_holds_lr_within_an_epoch():
    from zoo.train import lr_lambda

    cfg = TrainConfig(epochs=4, schedule="linear", schedule_unit="epoch")
    factor = lr_lambda(cfg, total_steps=40, steps_per_epoch=10)
    assert [factor(s) for s in (0, 9, 10, 19, 20, 39)] == [1.0, 1.0, 0.75, 0.75, 0.5, 0.25]  # lr_e = (4 - e) / 4
    cosine = lr_lambda(TrainConfig(epochs=4), total_steps=40, steps_per_epoch=10)
    assert cosine(0) == 1.0 and cosine(20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))


def test_absolute_min_lr_matches_mads_per_epoch_cosine():
    from zoo.train import lr_lambda

    # MAD: CosineAnnealingLR(T_max=200, eta_min=1e-6) stepped once per epoch
    cfg = TrainConfig(lr=1e-3, epochs=200, schedule="cosine", schedule_unit="epoch", min_lr=1e-6)
    factor = lr_lambda(cfg, total_steps=200 * 3, steps_per_epoch=3)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=200, eta_min=1e-6)
    for epoch in range(200):
        expected = reference.get_last_lr()[0]
        assert [1e-3 * factor(3 * epoch + i) for i in range(3)] == pytest.approx([expected] * 3, rel=1e-9, abs=1e-15)
        optimizer.step(), reference.step()
    assert 1e-3 * factor(3 * 200) == pytest.approx(1e-6)  # the floor, absolute: the same for every lr
    assert 5e-4 * lr_lambda(TrainConfig(lr=5e-4, epochs=2, min_lr=1e-6), 10, 5)(10) == pytest.approx(1e-6)
    ratio = lr_lambda(TrainConfig(lr=1e-3, epochs=2, min_lr_ratio=0.1), 10, 5)
    assert ratio(10) == pytest.approx(0.1) and lr_lambda(TrainConfig(epochs=2), 10, 5)(10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="train.min_lr=1e-06 and train.min_lr_ratio=0.0 are both set"):
        TrainConfig(min_lr=1e-6, min_lr_ratio=0.0)
    with pytest.raises(ValueError, match=r"train.min_lr=0.1 must lie in \[0, train.lr=0.001\]"):
        TrainConfig(lr=1e-3, min_lr=0.1)
