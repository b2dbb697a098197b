"""Every experiment preset (conf/experiment/*.yaml) and its smoke variant (conf/experiment/smoke/):
headers, composition of every swept value, and a full run of each smoke grid. Registry-driven: a new
preset file is covered without editing this file."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import tasks
import zoo
from zoo.config import register_resolvers
from zoo.data import task_specs
from zoo.model import from_config
from zoo.presets import compose_each, compose_preset, sweep_grid
from zoo.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SMOKE = sorted(f"smoke/{p.stem}" for p in (CONF / "experiment" / "smoke").glob("*.yaml"))
register_resolvers()


def missing_components(cfg) -> list[str]:
    """Tasks and models a composed config needs that are not registered yet."""
    models = [cfg.model.name, *(cfg.model.get("layers") or [])]
    out = [f"task {cfg.task.name}" for _ in [0] if cfg.task.name not in tasks.available()]
    return out + [f"model {m}" for m in models if m not in zoo.mixers.available()]


def check_config(cfg) -> None:
    """What a run would build, without data: the task and every slice/segment, the model, TrainConfig."""
    base, _, _ = task_specs(OmegaConf.to_container(cfg.task, resolve=True))
    TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    from_config(cfg.model, vocab_size=min(base.vocab_size, 64), max_seq_len=8, head=base.head)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_header_names_its_command_and_sweep(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"python -m zoo -m +experiment={name}" in text
    assert OmegaConf.create(text).sweep_name == name
    assert (CONF / "experiment" / "smoke" / f"{name}.yaml").exists(), f"{name} has no smoke variant"


@pytest.mark.parametrize("name", PRESETS + SMOKE)
def test_preset_composes_for_every_swept_value(name):
    """Each swept value once (the others at their defaults): a typo in any preset or arm fails here."""
    grid = sweep_grid(name)
    assert grid, f"{name}: no hydra.sweeper.params"
    overrides = [f"{key}={value}" for key, values in grid.items() for value in (values[:1] if key == "seed" else values)]
    checked = 0
    for cfg in compose_each(name, overrides):
        if missing_components(cfg):
            continue  # reported by the smoke run's skip
        check_config(cfg)
        checked += 1
    if not checked:
        pytest.skip(f"{name}: nothing registered yet")


def zoo_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZOO_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_preset_runs_its_whole_grid(tmp_path, name):
    grid = sweep_grid(name)
    size = math.prod(len(v) for v in grid.values())
    assert size <= 4, f"{name}: a smoke grid of {size} runs is too big for CI"
    for cfg in compose_each(name, [f"{key}={value}" for key, values in grid.items() for value in values]):
        missing = missing_components(cfg)
        if missing:
            pytest.skip(f"{', '.join(missing)} not registered yet")
    proc = zoo_cli(tmp_path, "-m", f"+experiment={name}", f"results_dir={tmp_path / 'results'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("sweeps/*/*/summary.json")]
    assert len(summaries) == size and all(s["status"] == "completed" for s in summaries)
    sweep_dirs = {p.name for p in (tmp_path / "results" / "sweeps").iterdir()}
    assert sweep_dirs == {compose_preset(name).sweep_name}
