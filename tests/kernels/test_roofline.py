"""kernels.roofline on a machine without a GPU, and its floors' accounting (CPU)."""
from __future__ import annotations

import sys

import pytest
import torch

from kernels import roofline
from kernels.selective_scan.bench import op_bytes

RATES = dict(copy_gbps=3000.0, ex2_per_s=4e12, ffma_per_s=30e12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_it_says_so(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["roofline"])
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        roofline.main()


def test_the_target_is_the_benchmarks_half_copy_bandwidth():
    f = roofline.floors(8, 2048, 4096, 16, 2, RATES)
    # at target_ms the benchmark's frac_graph (bytes / ms / copy bandwidth) reads exactly 0.5
    assert op_bytes(8, 2048, 4096, 16, 2) / f["target_ms"] / 1e6 / RATES["copy_gbps"] == pytest.approx(0.5)
    # forward + backward: 17 issue slots and 2 exp2 per state update; the forward alone 5 and 1
    updates = 8 * 2048 * 4096 * 16
    assert f["issue_ms"] == pytest.approx(17 * updates / RATES["ffma_per_s"] * 1e3)
    assert f["exp_ms"] == pytest.approx(2 * updates / RATES["ex2_per_s"] * 1e3)
    fwd = roofline.floors(8, 2048, 4096, 16, 2, RATES, backward=False)
    assert fwd["issue_ms"] == pytest.approx(5 * updates / RATES["ffma_per_s"] * 1e3)
    assert fwd["bytes"] == op_bytes(8, 2048, 4096, 16, 2, backward=False) < f["bytes"]
