"""Experiment (session 5, not shipped): the selective-scan backward over all states at once
([BLOCK_D, N, BLOCK_T] tiles, as the shipped forward; kernel in ss_bwd_states_kernel.py) swapped in
for the shipped per-state backward: error against the fp32 reference, then the backward's time.
GPU only: `PYTHONPATH=. python scripts/experiments/ss_bwd_states.py`.

H100 (torch 2.11, triton 3.6), bf16, at commit b491439: every variant correct (rel. error 1.7e-3,
as the shipped one), none faster: backward 4.06 ms shipped vs 7.2-14.0 ms (B=8 D=2048 L=4096),
0.85 vs 1.8-3.5 ms (B=256 D=256 L=256). Compiled for sm_90 as `kernels.sass_stats` does, it needs
241-255 registers and ~1.7x the shipped loop's instructions per update (3-d addresses of the B/C
loads and the dB/dC atomics, sums over the state axis across lanes).
"""
from __future__ import annotations

import math
import pathlib
import sys

import torch
from triton.testing import do_bench

from kernels.bench import rel_error
from kernels.selective_scan import chunked_selective_scan
from kernels.selective_scan import triton_scan as ts
from kernels.tune_scans import _ss_inputs

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from ss_bwd_states_kernel import _ss_bwd_states_kernel  # noqa: E402

# (BLOCK_D, BLOCK_T, num_warps, REV_GATHER); None: the shipped backward
CONFIGS = [None, (1, 32, 1, True), (1, 32, 1, False), (1, 64, 1, True), (2, 32, 1, True), (1, 64, 2, True),
           (2, 64, 2, True), (1, 16, 1, True)]


class StatesBackward:
    """Stands in for `_ss_bwd_time_kernel` in `SelectiveScanFn.backward` (same arguments)."""

    def __init__(self, rev_gather: bool):
        self.rev_gather = rev_gather

    def __getitem__(self, grid):
        def launch(*args, **meta):
            meta.pop("REV_INDEX")
            meta.pop("PREFETCH", None)   # (session 7's option of the shipped kernel)
            meta["REV_GATHER"] = self.rev_gather
            return _ss_bwd_states_kernel[grid](*args, **meta)
        return launch


def main() -> None:
    shipped, default = ts._ss_bwd_time_kernel, dict(ts.TILES["time"])
    for Bsz, D, L, N in [(8, 2048, 4096, 16), (256, 256, 256, 16)]:
        xs_c, cot_c = _ss_inputs(2, D, min(L, 1024), N, torch.bfloat16, seed=1)
        xd = [x.detach().float().requires_grad_() for x in xs_c]
        y_ref = chunked_selective_scan(*xd, delta_softplus=True)
        ref = [y_ref, *torch.autograd.grad(y_ref, xd, cot_c.float())]
        xs, cot = _ss_inputs(Bsz, D, L, N, torch.bfloat16)
        for cfg in CONFIGS:
            label = "shipped" if cfg is None else "states bd{} bt{} w{} gather={}".format(*cfg)
            if cfg is not None:
                bd, bt, warps, gather = cfg
                ts.TILES["time"].update(bwd_block_d=bd, block_t=bt, bwd_warps=warps, fwd_block_t=min(32, bt))
                ts._ss_bwd_time_kernel = StatesBackward(gather)
            try:
                y = ts.triton_selective_scan(*xs_c, delta_softplus=True)
                err = rel_error([y, *torch.autograd.grad(y, xs_c, cot_c)], ref)
                y = ts.triton_selective_scan(*xs, delta_softplus=True)
                ms = do_bench(lambda y=y, xs=xs, cot=cot: torch.autograd.grad(y, xs, cot, retain_graph=True), rep=60)
            except Exception as e:  # noqa: BLE001 - a config that fails loses, the others go on
                err = ms = math.nan
                print(label, "failed:", type(e).__name__, str(e)[:300], flush=True)
            print(f"B={Bsz} D={D} L={L}: {label}: err {err:.2e} backward {ms:.3f} ms", flush=True)
            ts.TILES["time"].clear()
            ts.TILES["time"].update(default)
            ts._ss_bwd_time_kernel = shipped
        del xs, cot
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
