"""Experiment (session 5): how much of the selective-scan backward is the dB/dC atomic adds (1024
programs add into each (b, n, t) at B=8 D=2048)? Times the backward with the shipped kernel and with
the dB/dC atomic adds replaced by plain stores to the same addresses (same values computed, no
read-modify-write; wrong results, timing only), at bwd_block_d 2 (shipped), 4 and 1 (block_t 512).
GPU only: `PYTHONPATH=. python scripts/experiments/ss_bwd_atomics.py`.

H100 (torch 2.11, triton 3.6), bf16, at commit b491439: 4.09 ms with atomics vs 3.93 ms with stores
(B=8 D=2048 L=4096), 0.85 vs 0.93 ms (B=256 D=256 L=256): the atomics are not what bounds the
backward; bd4 8.9 ms and bd1/bt512 6.2-6.8 ms either way.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import sys
import tempfile

import torch
from triton.testing import do_bench

from kernels.selective_scan import triton_scan as ts
from kernels.tune_scans import _ss_inputs

ATOMIC = 'tl.atomic_add({0}_ptr + bc_base + n * L + offs_t, tl.sum({1}, axis=0), mask=mask_t,\n{2}sem="relaxed")'
STORE = "tl.store({0}_ptr + bc_base + n * L + offs_t, tl.sum({1}, axis=0), mask=mask_t)"


def kernel_with_stores():
    """The shipped backward kernel with its dB/dC atomic adds turned into stores (a module written to a
    temporary folder: triton.jit needs a source file)."""
    src = inspect.getsource(ts._ss_bwd_time_kernel.fn)
    for name, value in (("dB", "g * du"), ("dC", "hs * dy")):
        atomic = ATOMIC.format(name, value, " " * 30)
        assert src.count(atomic) == 1, f"the {name} atomic add is not where this experiment expects it"
        src = src.replace(atomic, STORE.format(name, value))
    helpers = [n for n in vars(ts) if n.startswith("_") and not n.startswith("__") and n != "_ss_bwd_time_kernel"]
    header = ("import triton\nimport triton.language as tl\n"
              f"from kernels.selective_scan.triton_scan import {', '.join(helpers)}\n"
              "from kernels.linear_recurrence.triton_scan import affine_combine\n")
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "ss_bwd_stores.py").write_text(header + src)
    sys.path.insert(0, str(folder))
    return importlib.import_module("ss_bwd_stores")._ss_bwd_time_kernel


def main() -> None:
    stores, shipped, default = kernel_with_stores(), ts._ss_bwd_time_kernel, dict(ts.TILES["time"])
    for Bsz, D, L, N in [(8, 2048, 4096, 16), (256, 256, 256, 16)]:
        xs, cot = _ss_inputs(Bsz, D, L, N, torch.bfloat16)
        for bd, bt in [(2, 256), (4, 256), (1, 512)]:
            for label, kernel in (("atomics", shipped), ("stores", stores)):
                ts._ss_bwd_time_kernel = kernel
                ts.TILES["time"].update(bwd_block_d=bd, block_t=bt)
                y = ts.triton_selective_scan(*xs, delta_softplus=True)
                ms = do_bench(lambda y=y, xs=xs, cot=cot: torch.autograd.grad(y, xs, cot, retain_graph=True), rep=60)
                print(f"B={Bsz} D={D} L={L} bd{bd} bt{bt}: backward with {label}: {ms:.3f} ms", flush=True)
                ts._ss_bwd_time_kernel = shipped
                ts.TILES["time"].update(default)
        del xs, cot
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
