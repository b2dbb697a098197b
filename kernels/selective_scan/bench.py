"""Benchmark rows for `kernels.selective_scan` (collected by `python -m kernels.bench`).

Compares ours (Triton) with the PyTorch step loop, the vectorised PyTorch fallback, the fallback with
its chunk step compiled by `torch.compile` (the loop over chunks stays in Python: compiled whole,
dynamo would unroll L/32 chunks) and mamba_ssm's `selective_scan_fn` when importable. Bytes the op
must move: forward reads u, δ, z, B, C and writes y; backward reads u, δ, z, dy, B, C and writes du, dδ, dz,
dB, dC: 11 [B, D, L] + 6 [B, N, L] tensors in all (A, D, δ_bias and the checkpoints are small).
"""
from __future__ import annotations

import functools
import math

import torch

from ..bench import add_graph_time, copy_bandwidth_gbps, time_fwd_bwd
from . import chunked_selective_scan, naive_selective_scan, triton_selective_scan
from .torch_fast import chunk_step

SHAPES = [(256, 256, 256, 16), (8, 2048, 4096, 16), (8, 2048, 16384, 16)]   # (B, D, L, N)
STEP_LOOP_L = 128     # the step loop is timed on this many steps and extrapolated linearly in L


def _mamba_ssm():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def op_bytes(Bsz: int, D: int, L: int, N: int, elem_size: int, backward: bool = True) -> int:
    """Bytes the op must move, inputs read once and outputs written once: the forward reads u, δ, z
    ([B, D, L]), B, C ([B, N, L]) and writes y; forward + backward also reads u, δ, z, dy and B, C again and
    writes du, dδ, dz, dB, dC (11 [B, D, L] and 6 [B, N, L] tensors in all; A, D, δ_bias are negligible)."""
    big, small = (11, 6) if backward else (4, 2)
    return (big * Bsz * D * L + small * Bsz * N * L) * elem_size


def run(quick: bool = False, only: set[str] | None = None, long: bool = False) -> list[dict]:
    """One row per (shape, impl, dtype); see kernels/bench.py for the keys."""
    copy_bw = copy_bandwidth_gbps()
    compiled = functools.partial(chunked_selective_scan, step=torch.compile(chunk_step))
    impls = {"triton": triton_selective_scan, "torch-chunked": chunked_selective_scan,
             "torch-compile": compiled, "torch-step-loop": naive_selective_scan,
             "mamba_ssm": _mamba_ssm()}
    rows = []
    for Bsz, D, L, N in SHAPES[:2] if quick else SHAPES[1:] if long else SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            dev = dict(device="cuda", dtype=dtype)
            u = torch.randn(Bsz, D, L, **dev).requires_grad_()
            delta = (0.5 * torch.randn(Bsz, D, L, **dev) - 4).requires_grad_()
            A = (-torch.rand(D, N, device="cuda") * 8).requires_grad_()
            Bm = torch.randn(Bsz, N, L, **dev).requires_grad_()
            Cm = torch.randn(Bsz, N, L, **dev).requires_grad_()
            Dv = torch.randn(D, device="cuda").requires_grad_()
            z = torch.randn(Bsz, D, L, **dev).requires_grad_()
            bias = torch.randn(D, device="cuda").requires_grad_()
            cot = torch.randn(Bsz, D, L, **dev)
            nbytes = op_bytes(Bsz, D, L, N, u.element_size())
            for name, fn in impls.items():
                if only is not None and name not in only:
                    continue
                row = dict(op="selective_scan", shape=f"B={Bsz} D={D} L={L} N={N}", impl=name,
                           dtype=str(dtype)[6:])
                if dtype == torch.float32 and name != "triton":
                    continue      # comparisons in bf16 only
                if fn is None:
                    rows.append(dict(row, fwd_ms=math.nan, fwdbwd_ms=math.nan, gbps=math.nan,
                                     frac_copy_bw=math.nan, note="not importable"))
                    continue
                call = lambda *x, fn=fn: fn(*x, delta_softplus=True)  # noqa: E731
                args = [u, delta, A, Bm, Cm, Dv, z, bias]
                scale, note = 1.0, ""
                if name == "torch-step-loop" and L > STEP_LOOP_L:
                    sl = slice(0, STEP_LOOP_L)
                    args = [x[..., sl].detach().requires_grad_() if x.dim() == 3 else x for x in args]
                    scale, cot_ = L / STEP_LOOP_L, cot[..., sl]
                    note = f"extrapolated from L={STEP_LOOP_L}"
                else:
                    cot_ = cot
                fwd, fwdbwd, err = time_fwd_bwd(call, args, cot_)
                fwd, fwdbwd = fwd * scale, fwdbwd * scale
                note = "; ".join(x for x in (err, note) if x)
                if fwd == fwd:
                    fwd_bytes = op_bytes(Bsz, D, L, N, u.element_size(), backward=False)
                    note = "; ".join(x for x in (note, f"fwd {fwd_bytes / fwd / 1e6:.0f} GB/s") if x)
                gbps = nbytes / fwdbwd / 1e6
                wrt = [x for x in args if x.requires_grad]
                rows.append(add_graph_time(
                    dict(row, fwd_ms=fwd, fwdbwd_ms=fwdbwd, gbps=gbps, frac_copy_bw=gbps / copy_bw, note=note),
                    lambda: torch.autograd.grad(call(*args), wrt, cot_), nbytes, copy_bw))
            del u, delta, Bm, Cm, z, cot
            torch.cuda.empty_cache()
    return rows


def tune() -> list[dict]:
    """Variants and tiles of triton_scan, timed at the issue's shapes after a check against the
    fallback: `kernels.tune_scans` (which `python -m kernels.tune_scans` runs for both scan ops)."""
    from .. import tune_scans
    return tune_scans.tune_selective_scan(copy_bandwidth_gbps())


if __name__ == "__main__":
    import sys

    from ..linear_recurrence import bench as _lr_bench
    if "--tune" in sys.argv:
        tune()
    else:
        _lr_bench.run = run     # reuse its table printer with these rows
        _lr_bench.main()
