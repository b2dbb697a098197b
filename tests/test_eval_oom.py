"""Evaluation survives running out of device memory: smaller batches first, then the slice is
recorded as out of memory (the papers' "OOM" cells) while the other slices and training go on."""
from __future__ import annotations

import contextlib

import pytest
import torch

import zoo
from zoo.data import build_datasets
from zoo.train import evaluate

TASK = {"name": "mqar", "vocab_size": 128, "seq_len": 32, "num_kv_pairs": 2, "num_train": 8, "num_test": 12,
        "slices": {"short": {}, "long": {"seq_len": 64, "num_kv_pairs": 4}}}


def _model_and_data(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    data = build_datasets(TASK, seed=0)
    torch.manual_seed(0)
    model = zoo.build_model("attention", vocab_size=data.vocab_size, d_model=16, n_layers=1,
                            max_seq_len=data.max_seq_len)
    return model, data


def _failing_hidden(model, too_big):
    """Wrap model.hidden to raise OutOfMemoryError when too_big(inputs) is true."""
    hidden = model.hidden

    def run(inputs):
        if too_big(inputs):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return hidden(inputs)
    return run


def test_oom_halves_the_batch_and_gives_the_same_metrics(monkeypatch, tmp_path):
    model, data = _model_and_data(monkeypatch, tmp_path)
    expected = evaluate(model, data, 3, contextlib.nullcontext, "micro")
    model.hidden = _failing_hidden(model, lambda x: x.shape[0] > 3)
    got = evaluate(model, data, 12, contextlib.nullcontext, "micro")
    for name in ("short", "long"):
        assert got["slices"][name]["acc_micro"] == expected["slices"][name]["acc_micro"]
        assert got["slices"][name]["loss"] == pytest.approx(expected["slices"][name]["loss"])
        assert got["slices"][name]["num_examples"] == 12
    assert got["overall"]["accuracy"] == expected["overall"]["accuracy"]


def test_slice_that_never_fits_is_recorded_and_the_others_pooled(monkeypatch, tmp_path):
    model, data = _model_and_data(monkeypatch, tmp_path)
    only_short = evaluate(model, data, 4, contextlib.nullcontext, "micro")["slices"]["short"]
    model.hidden = _failing_hidden(model, lambda x: x.shape[1] > 40)   # the long slice never fits
    got = evaluate(model, data, 4, contextlib.nullcontext, "micro")
    assert got["slices"]["long"] == {"accuracy": None, "metric": "micro", "error": "out of memory"}
    assert got["slices"]["short"]["accuracy"] == only_short["accuracy"]
    assert got["overall"]["num_examples"] == only_short["num_examples"]
    assert got["overall"]["accuracy"] == pytest.approx(only_short["acc_micro"])
