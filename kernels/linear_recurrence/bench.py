"""Benchmark rows for `kernels.linear_recurrence` (collected by `python -m kernels.bench`).

Compares ours (Triton) with the PyTorch step loop, the vectorised PyTorch fallback, `torch.compile`
of the fallback and FLA's HGRN kernel when importable. Bytes the op must move, per element of
[B, T, D]: forward reads a, b and writes h (3); backward reads a, h, dh and writes da, db (5).
"""
from __future__ import annotations

import math

import torch

from ..bench import add_graph_time, copy_bandwidth_gbps, time_fwd_bwd
from . import (
    chunked_linear_recurrence,
    naive_linear_recurrence,
    triton_linear_recurrence,
)

SHAPES = [(256, 256, 256), (8, 4096, 2048), (8, 16384, 2048)]   # (B, T, D): Zoology-size and long
STEP_LOOP_T = 256      # the step loop is timed on this many steps and extrapolated linearly in T




def _fla_hgrn():
    try:
        from fla.ops.hgrn import chunk_hgrn
    except ImportError:
        return None
    # FLA's HGRN takes log-decays g (a = exp(g)) and returns (o, final_state)
    return lambda a, b, h0: chunk_hgrn(b, a.clamp_min(1e-30).log(), h0)[0]


def run(quick: bool = False, only: set[str] | None = None, long: bool = False) -> list[dict]:
    """One row per (shape, impl, dtype); see kernels/bench.py for the keys."""
    copy_bw = copy_bandwidth_gbps()
    impls = {"triton": triton_linear_recurrence, "torch-chunked": chunked_linear_recurrence,
             # compiled with one chunk: log2(T) scan steps (a loop over T/64 chunks would be unrolled)
             "torch-compile": torch.compile(lambda a, b, h0: chunked_linear_recurrence(a, b, h0, chunk=a.shape[1])),
             "torch-step-loop": naive_linear_recurrence, "fla-hgrn": _fla_hgrn()}
    rows = []
    for B, T, D in SHAPES[:2] if quick else SHAPES[1:] if long else SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            a = torch.rand(B, T, D, device="cuda", dtype=dtype).requires_grad_()
            b = torch.randn(B, T, D, device="cuda", dtype=dtype).requires_grad_()
            h0 = torch.randn(B, D, device="cuda", dtype=dtype).requires_grad_()
            cot = torch.randn(B, T, D, device="cuda", dtype=dtype)
            nbytes = 8 * B * T * D * a.element_size()
            for name, fn in impls.items():
                if only is not None and name not in only:
                    continue
                shape = f"B={B} T={T} D={D}"
                row = dict(op="linear_recurrence", shape=shape, impl=name, dtype=str(dtype)[6:])
                if fn is None:
                    rows.append(dict(row, fwd_ms=math.nan, fwdbwd_ms=math.nan, gbps=math.nan,
                                     frac_copy_bw=math.nan, note="not importable"))
                    continue
                if dtype == torch.float32 and name != "triton":
                    continue      # comparisons in bf16 only
                note = ""
                inputs = [a, b, h0.detach() if name == "fla-hgrn" else h0]   # FLA's HGRN: no dh0
                try:
                    if name == "torch-step-loop" and T > STEP_LOOP_T:
                        sl = slice(0, STEP_LOOP_T)
                        args = [a[:, sl].detach().requires_grad_(), b[:, sl].detach().requires_grad_(), h0]
                        fwd, fwdbwd, note = time_fwd_bwd(fn, args, cot[:, sl])
                        fwd, fwdbwd = fwd * T / STEP_LOOP_T, fwdbwd * T / STEP_LOOP_T
                        note = (note + "; " if note else "") + f"extrapolated from T={STEP_LOOP_T}"
                    else:
                        fwd, fwdbwd, note = time_fwd_bwd(fn, inputs, cot)
                except RuntimeError as e:      # a comparison failing must not lose the other rows
                    if name == "triton":
                        raise
                    fwd = fwdbwd = math.nan
                    note = f"failed: {str(e).splitlines()[0][:120]}"
                gbps = nbytes / fwdbwd / 1e6
                if fwd == fwd:
                    note = (note + "; " if note else "") + f"fwd {3 * nbytes / 8 / fwd / 1e6:.0f} GB/s"
                wrt = [x for x in inputs if x.requires_grad]
                rows.append(add_graph_time(
                    dict(row, fwd_ms=fwd, fwdbwd_ms=fwdbwd, gbps=gbps, frac_copy_bw=gbps / copy_bw, note=note),
                    lambda xs=inputs, w=wrt, c=cot: torch.autograd.grad(fn(*xs), w, c), nbytes, copy_bw))
            del a, b, h0, cot
            torch.cuda.empty_cache()
    return rows


def tune() -> list[dict]:
    """Time tile configurations (triton_scan.TILES) at B=8 T=16384 D=2048 per dtype."""
    from triton.testing import do_bench

    from . import triton_scan
    default, rows = dict(triton_scan.TILES), []
    for dtype in (torch.bfloat16, torch.float32):
        size = torch.empty(0, dtype=dtype).element_size()
        a = torch.rand(8, 16384, 2048, device="cuda", dtype=dtype).requires_grad_()
        b = torch.randn_like(a).requires_grad_()
        cot = torch.randn_like(a)
        for cfg in [(32, 64, 4), (32, 128, 4), (64, 128, 8), (16, 256, 4), (64, 64, 4), (32, 256, 8)]:
            triton_scan.TILES[size] = cfg
            fwd = do_bench(lambda: triton_linear_recurrence(a, b))
            fb = do_bench(lambda: torch.autograd.grad(triton_linear_recurrence(a, b), [a, b], cot))
            rows.append(dict(dtype=str(dtype), config=cfg, fwd_ms=fwd, fwdbwd_ms=fb,
                             fwd_gbps=3 * a.numel() * size / fwd / 1e6))
            print(rows[-1], flush=True)
        triton_scan.TILES.update(default)
    return rows


def main() -> None:
    """`python -m kernels.linear_recurrence.bench [--quick]`: print the rows as a markdown table."""
    import sys
    from ..bench import COLUMNS as keys
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys), flush=True)
    for r in run("--quick" in sys.argv):
        r = {**dict.fromkeys(keys, math.nan), **r}
        print("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |",
              flush=True)


if __name__ == "__main__":
    import sys
    tune() if "--tune" in sys.argv else main()
