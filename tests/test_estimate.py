"""`python -m zoo.estimate`: the grid it costs, the cost model, scaling of unmeasured shapes, its files."""
from __future__ import annotations

import json
import math

import pytest
import torch

from zoo import estimate as est
from zoo.presets import compose_each, grid_runs, sweep_grid

CPU = torch.device("cpu")


def test_grid_runs_is_the_cartesian_product_of_the_sweep():
    grid = sweep_grid("smoke/zoology_fig2")
    runs = grid_runs("smoke/zoology_fig2")
    assert len(runs) == math.prod(len(v) for v in grid.values())
    assert len({tuple(r) for r in runs}) == len(runs)
    # a command-line value for a swept key replaces that axis; other overrides apply to every run
    narrowed = grid_runs("smoke/zoology_fig2", "train.lr=0.5", "train.epochs=3")
    assert all("train.lr=0.5" in r and "train.epochs=3" in r for r in narrowed)


def test_cost_model_sums_steps_and_evals(monkeypatch):
    """Total = steps x step time + evals x eval batches x batch time, checked against the config."""
    t_train, t_eval = 0.01, 0.002
    monkeypatch.setattr(est, "time_item", lambda item, model, device, steps, warm_up=True: t_train if item.kind == "train" else t_eval)
    result = est.estimate("smoke/zoology_fig2", [], device=CPU, steps=1, budget_s=60, log=lambda *_: None)
    expected = 0.0
    for cfg in compose_each("smoke/zoology_fig2", grid_runs("smoke/zoology_fig2")):
        n_batches = math.ceil(cfg.task.num_train / cfg.train.batch_size)
        steps = n_batches * cfg.train.epochs
        if cfg.train.max_steps is not None:
            steps = min(steps, cfg.train.max_steps)
        evals = math.ceil(steps / n_batches) if not cfg.train.eval_every else math.ceil(steps / cfg.train.eval_every)
        slices = cfg.task.slices or {"test": {}}
        eval_batches = sum(math.ceil((s or {}).get("num_examples", cfg.task.num_test) / cfg.train.eval_batch_size)
                           for s in slices.values())
        expected += steps * t_train + evals * eval_batches * t_eval
    assert result["runs"] == len(grid_runs("smoke/zoology_fig2")) and result["runs_unknown"] == 0
    assert result["gpu_hours"] * 3600 == pytest.approx(expected)
    assert sum(result["gpu_hours_by_model"].values()) == pytest.approx(result["gpu_hours"])


def test_shapeless_axes_multiply_without_composing(monkeypatch):
    monkeypatch.setattr(est, "time_item", lambda *a: 0.01)
    one = est.estimate("smoke/zoology_fig2", ["train.lr=0.001"], device=CPU, steps=1, budget_s=60, log=lambda *_: None)
    two = est.estimate("smoke/zoology_fig2", ["train.lr=0.001,0.002"], device=CPU, steps=1, budget_s=60,
                       log=lambda *_: None)
    assert two["runs"] == 2 * one["runs"] and two["repeats"] == 2
    assert two["gpu_hours"] == pytest.approx(2 * one["gpu_hours"])
    assert two["shapes"] == one["shapes"]


def test_unmeasured_shapes_are_read_off_the_fitted_line():
    import tasks

    small, big = tasks.make("mqar", seq_len=16, num_kv_pairs=2), tasks.make("mqar", seq_len=64, num_kv_pairs=2)
    one = dict(d_model=8, n_layers=1)
    items = {
        "a": est.Item("train", "m1", "based", small, 4, "fp32", None, **one, seconds=0.004),
        "b": est.Item("train", "m2", "based", big, 4, "fp32", None, **one),            # one point: through 0
        "c": est.Item("eval", "m2", "based", big, 4, "fp32", None, **one),             # no eval measured
        "d": est.Item("train", "m3", "attention", big, 4, "fp32", None, **one, error="out of memory"),
    }
    seconds = est.item_seconds(items)
    assert seconds["a"] == 0.004
    assert seconds["b"] == pytest.approx(0.004 * big.input_len / small.input_len)
    assert seconds["c"] is None and seconds["d"] is None
    # two sizes: overhead + slope; a shape twice the larger one's work lies on that line
    items["e"] = est.Item("train", "m4", "based", big, 4, "fp32", None, d_model=16, n_layers=1, seconds=0.010)
    items["f"] = est.Item("train", "m5", "based", big, 4, "fp32", None, d_model=16, n_layers=2)
    (wa, ta), (we, te) = (items["a"].work, 0.004), (items["e"].work, 0.010)
    slope = (te - ta) / (we - wa)
    assert est.item_seconds(items)["f"] == pytest.approx(te + slope * (items["f"].work - we))


def test_spread_order_covers_the_range_first():
    assert est._spread(list(range(9)))[:3] == [8, 0, 4]
    assert sorted(est._spread(list(range(10)))) == list(range(10))


def test_cli_writes_json_and_table(tmp_path):
    est.main(["+experiment=smoke/zoology_fig2", "--steps", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "smoke_zoology_fig2.json").read_text())
    assert result["shapes_measured"] == result["shapes"] > 0 and result["gpu_hours"] > 0
    table = (tmp_path / "README.md").read_text()
    assert "`python -m zoo.estimate +experiment=smoke/zoology_fig2`" in table
