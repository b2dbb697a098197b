"""Sweeps end to end: a 2 models × 2 lrs Hydra multirun, skipping on re-run, W&B grouping by sweep
(through a fake `wandb` module), and the report's best-over-lr values against the summary files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from zoo import loggers

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["sweep_name=tiny", "model=attention,based", "train.lr=1e-3,1e-2", "task.vocab_size=64", "task.seq_len=16",
         "task.num_kv_pairs=2", "task.num_train=256", "task.num_test=64", "~task.slices.L128_kv8",
         "+task.slices.longer={seq_len:32,num_kv_pairs:4}", "model.d_model=16", "train.batch_size=32", "train.epochs=2",
         "train.progress=false", "train.device=cpu", "logger=wandb"]
# A stand-in for wandb: records init/log/finish calls as JSON lines in $FAKE_WANDB_LOG.
FAKE_WANDB = textwrap.dedent('''
    import json, os

    def _record(kind, **data):
        with open(os.environ["FAKE_WANDB_LOG"], "a") as f:
            f.write(json.dumps({"kind": kind, **data}, default=str) + "\\n")

    class _Summary(dict):
        pass

    class _Run:
        def __init__(self, id):
            self.id, self.summary = id, _Summary()
        def log(self, data, step=None):
            _record("log", id=self.id, step=step, data=data)
        def finish(self):
            _record("finish", id=self.id, summary=dict(self.summary))

    def init(**kwargs):
        _record("init", **kwargs)
        return _Run(kwargs["id"])
''')


def zoo_cli(tmp: Path, *args: str, module: str = "zoo") -> subprocess.CompletedProcess:
    env = {**os.environ, "ZOO_CACHE": str(tmp / "cache"), "PYTHONPATH": f"{tmp / 'fake'}{os.pathsep}{REPO}",
           "FAKE_WANDB_LOG": str(tmp / "wandb.jsonl"), "HOME": str(tmp / "home")}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """Run the tiny sweep, then the same command again; returns both processes and the paths."""
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "fake" / "wandb").mkdir(parents=True)
    (tmp / "fake" / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    (tmp / "home").mkdir()
    results = tmp / "results"
    first = zoo_cli(tmp, "-m", f"results_dir={results}", *SWEEP)
    assert first.returncode == 0, first.stderr[-3000:]
    summaries = {p: p.stat().st_mtime_ns for p in results.glob("**/summary.json")}
    second = zoo_cli(tmp, "-m", f"results_dir={results}", *SWEEP)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"tmp": tmp, "results": results, "first": first, "second": second, "mtimes": summaries}


def read_summaries(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("**/summary.json"))]


def test_sweep_runs_every_grid_point_in_the_sweep_dir(sweep):
    summaries = read_summaries(sweep["results"])
    assert sorted((s["model"], s["lr"]) for s in summaries) == [("attention", 1e-3), ("attention", 1e-2),
                                                                ("based", 1e-3), ("based", 1e-2)]
    assert all(s["status"] == "completed" for s in summaries)
    run_dirs = sorted(p.parent for p in sweep["results"].glob("**/summary.json"))
    assert {d.parent for d in run_dirs} == {sweep["results"] / "sweeps" / "tiny"}
    assert all(d.name.startswith(f"mqar-{s['model']}-") for d, s in zip(run_dirs, summaries))


def test_rerunning_the_sweep_skips_completed_runs(sweep):
    log = sweep["second"].stdout + sweep["second"].stderr
    assert log.count("skip:") == 4, log[-3000:]
    assert "completed: accuracy" not in log
    after = {p: p.stat().st_mtime_ns for p in sweep["results"].glob("**/summary.json")}
    assert after == sweep["mtimes"]  # nothing rewritten, no new run directories


def test_wandb_logger_groups_runs_by_sweep_and_logs_every_eval(sweep):
    calls = [json.loads(line) for line in (sweep["tmp"] / "wandb.jsonl").read_text().splitlines()]
    inits = [c for c in calls if c["kind"] == "init"]
    assert len(inits) == 4  # the skipped re-run never starts a W&B run
    assert {c["group"] for c in inits} == {"tiny"} and {c["mode"] for c in inits} == {"offline"}
    for run_dir in sweep["results"].glob("sweeps/tiny/*/"):
        evals = (run_dir / "metrics.jsonl").read_text().splitlines()
        logged = [c for c in calls if c["kind"] == "log" and c["id"] == run_dir.name]
        assert len(logged) == len(evals) == 2
        assert [c["step"] for c in logged] == [json.loads(e)["step"] for e in evals]
        assert "overall.accuracy" in logged[-1]["data"] and "slices.longer.accuracy" in logged[-1]["data"]
        (finish,) = [c for c in calls if c["kind"] == "finish" and c["id"] == run_dir.name]
        assert finish["summary"]["status"] == "completed"


def test_report_best_over_lr_equals_max_of_summaries(sweep):
    out = sweep["tmp"] / "report"
    proc = zoo_cli(sweep["tmp"], str(sweep["results"]), "--out", str(out), module="zoo.report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = pd.read_csv(out / "leaderboard_mqar.csv")
    for s_model in ("attention", "based"):
        runs = [s for s in read_summaries(sweep["results"]) if s["model"] == s_model]
        expected = {"overall": max(s["accuracy"] for s in runs),
                    **{name: max(s["slices"][name]["accuracy"] for s in runs) for name in ("in_dist", "longer")}}
        rows = board[board["model"] == s_model].set_index("slice")
        for name, value in expected.items():
            assert rows.loc[name, "accuracy"] == pytest.approx(value), (s_model, name)
    assert (out / "leaderboard_mqar.md").read_text().count("| attention |") == 1
    assert {p.name for p in (out / "figures").iterdir()} >= {"mqar_state.png", "mqar_state.pdf", "mqar_curves.png",
                                                             "mqar_length.pdf"}
    assert "mqar (best over train.lr" in proc.stdout


class FakeWandb:
    """In-process stand-in for the wandb module (injected into sys.modules)."""

    def __init__(self):
        self.inits: list[dict] = []

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return type("Run", (), {"log": lambda *a, **k: None, "finish": lambda self: None, "summary": {}})()


@pytest.mark.parametrize("key, mode, expected", [(None, None, "offline"), ("k" * 40, None, "online"),
                                                 ("k" * 40, "disabled", "disabled")])
def test_wandb_mode_follows_the_configured_key(tmp_path, monkeypatch, key, mode, expected):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    if key:
        monkeypatch.setenv("WANDB_API_KEY", key)
    cfg = {"name": "wandb", "project": "zoo", "mode": mode, "group": None, "tags": []}
    loggers.make_logger(cfg, tmp_path, "run-1", "my_sweep", {"seed": 0})
    (init,) = fake.inits
    assert init["mode"] == expected and init["group"] == "my_sweep" and init["id"] == "run-1"
