"""Floors of the selective scan on this GPU, from measured rates: what issue #7's bandwidth target asks of it.

    python -m kernels.roofline [--out results/bench]        (GPU; writes roofline_table.md)

Three rates are measured here (the H100's data-sheet figures in brackets, 132 SMs at ~1.755 GHz):
  - copy bandwidth, GB/s (`kernels.bench.copy_bandwidth_gbps`, the yardstick of every frac_copy_bw);
  - exp2 on the special-function unit (MUFU.EX2), results/s [16 per SM per clock: 3.7 T/s];
  - fp32 FMA (FFMA), results/s [128 per SM per clock: 30 T/s]. An SM issues one warp instruction per
    scheduler per clock, 4 per SM, which is what full-rate FFMA uses: FFMA/s / 32 = warp instructions/s.

Floors for forward + backward of `selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus)` at
[B, D, L] with N states, counting only what no implementation can avoid (`floors`):
  - bytes: 11 [B, D, L] and 6 [B, N, L] tensors once (the benchmark's count, `selective_scan.bench.op_bytes`);
  - exp2: one a_t = exp(Δ_t A) per state update in the forward, and one in the backward, which needs
    a_t again (recomputed: storing the [B, D, N, L] states or decays is the memory the Mamba design avoids);
  - arithmetic, per state update (U = B·D·L·N of them), as single fp32 instructions:
      forward   Δ·A, Δu·B, h = a h + x, y += C h                                    4 + 1 exp2
      backward  Δ·A, Δu·B, h = a h + x (recompute); g = a g + C dy; s = g (h - x)   11 + 1 exp2
                (2); dA += Δ s; dΔ += A s; du, dΔ += g B; dB += g Δu; dC += h dy
    17 issue slots per update, before any load, conversion, reduction across lanes (dB and dC sum over
    D, du and dΔ over N), scan or loop overhead: a floor no kernel reaches.
The target, ≥ 50% of copy bandwidth, is bytes / (copy bandwidth / 2). The table compares it with the
floors and with our kernels' times from a CUDA graph (`kernels.bench.time_graph`); the forward alone has
its own floors (5 slots and one exp2 per update; 4 [B, D, L] and 2 [B, N, L] tensors).
"""
from __future__ import annotations

import argparse
import pathlib

import torch
import triton
import triton.language as tl

from .selective_scan.bench import op_bytes

ROUNDS = 256             # dependent operations per element in the rate kernels (unrolled)
RATE_BLOCK = 1024        # elements per program: 8 independent chains per thread at 4 warps
RATE_ELEMS = 2**24
SLOTS_FWD, SLOTS_BWD = 5, 12          # issue slots per state update, exp2 included (see the docstring)
EXP_FWD, EXP_BWD = 1, 1
SHAPES = [(8, 2048, 4096, 16), (8, 2048, 16384, 16)]


@triton.jit
def _ex2_rate_kernel(x_ptr, out_ptr, ROUNDS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for _ in tl.static_range(ROUNDS):
        x = tl.exp2(x * -0.75)           # stays in (0.59, 1] for x in [0, 1]: one FMUL, one MUFU.EX2
    tl.store(out_ptr + offs, x)


@triton.jit
def _ffma_rate_kernel(x_ptr, out_ptr, ROUNDS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for _ in tl.static_range(ROUNDS):
        x = tl.fma(x, 0.999, 0.001)      # one FFMA
    tl.store(out_ptr + offs, x)


def _rate(kernel, ops_per_round: int) -> float:
    """Operations per second of one of the rate kernels (median of triton's do_bench)."""
    from triton.testing import do_bench

    x = torch.rand(RATE_ELEMS, device="cuda")
    out = torch.empty_like(x)
    grid = (RATE_ELEMS // RATE_BLOCK,)
    ms = do_bench(lambda: kernel[grid](x, out, ROUNDS=ROUNDS, BLOCK=RATE_BLOCK, num_warps=4))
    return RATE_ELEMS * ROUNDS * ops_per_round / ms * 1e3


def measure_rates() -> dict:
    """{"copy_gbps", "ex2_per_s", "ffma_per_s"} on the current GPU."""
    from .bench import copy_bandwidth_gbps

    return dict(copy_gbps=copy_bandwidth_gbps(), ex2_per_s=_rate(_ex2_rate_kernel, 1),
                ffma_per_s=_rate(_ffma_rate_kernel, 1))


def floors(Bsz: int, D: int, L: int, N: int, elem_size: int, rates: dict, backward: bool = True) -> dict:
    """Lower bounds in ms (bytes at copy bandwidth, exp2 at the MUFU rate, issue slots at the FFMA rate,
    each as if it ran alone) and the time that 50% of copy bandwidth allows, for the forward (backward=False)
    or forward + backward of the selective scan at that shape."""
    updates = Bsz * D * L * N
    nbytes = op_bytes(Bsz, D, L, N, elem_size, backward)
    exps = updates * (EXP_FWD + EXP_BWD * backward)
    slots = updates * (SLOTS_FWD + SLOTS_BWD * backward)
    copy_ms = nbytes / rates["copy_gbps"] / 1e6
    return dict(bytes=nbytes, copy_ms=copy_ms, exp_ms=exps / rates["ex2_per_s"] * 1e3,
                issue_ms=slots / rates["ffma_per_s"] * 1e3, target_ms=2 * copy_ms)


def _ours(Bsz: int, D: int, L: int, N: int, dtype: torch.dtype) -> tuple[float, float]:
    """(forward ms, forward + backward ms) of our selective scan from a CUDA graph, the benchmark's inputs."""
    from .bench import time_graph
    from .selective_scan import selective_scan

    dev = dict(device="cuda", dtype=dtype)
    u = torch.randn(Bsz, D, L, **dev).requires_grad_()
    delta = (0.5 * torch.randn(Bsz, D, L, **dev) - 4).requires_grad_()
    A = (-torch.rand(D, N, device="cuda") * 8).requires_grad_()
    Bm, Cm = (torch.randn(Bsz, N, L, **dev).requires_grad_() for _ in range(2))
    Dv, bias = (torch.randn(D, device="cuda").requires_grad_() for _ in range(2))
    z = torch.randn(Bsz, D, L, **dev).requires_grad_()
    args = [u, delta, A, Bm, Cm, Dv, z, bias]
    cot = torch.randn(Bsz, D, L, **dev)
    call = lambda: selective_scan(*args, delta_softplus=True)  # noqa: E731

    def fwd():
        with torch.no_grad():
            call()
    return time_graph(fwd), time_graph(lambda: torch.autograd.grad(call(), args, cot))


def table(rates: dict, shapes=SHAPES, dtype: torch.dtype = torch.bfloat16, ours: bool = True) -> str:
    """The markdown table of floors, target and (ours=True) our times."""
    elem = torch.empty((), dtype=dtype).element_size()
    lines = ["| shape | pass | copy floor | exp2 floor | issue floor | 50% target | ours | ours / largest floor |",
             "|---|---|---|---|---|---|---|---|"]
    for Bsz, D, L, N in shapes:
        times = _ours(Bsz, D, L, N, dtype) if ours else (float("nan"), float("nan"))
        for backward, ms in ((False, times[0]), (True, times[1])):
            f = floors(Bsz, D, L, N, elem, rates, backward)
            worst = max(f["copy_ms"], f["exp_ms"], f["issue_ms"])
            lines.append(f"| B={Bsz} D={D} L={L} N={N} | {'fwd+bwd' if backward else 'fwd'} | {f['copy_ms']:.3f} | "
                         f"{f['exp_ms']:.3f} | {f['issue_ms']:.3f} | {f['target_ms']:.3f} | {ms:.3f} | "
                         f"{ms / worst:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench",
                        help="folder for roofline_table.md (results/bench/roofline.md is the commentary on it)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("kernels.roofline measures the GPU's rates: it needs a CUDA device (none found).")
    rates = measure_rates()
    name = torch.cuda.get_device_name()
    head = (f"GPU: {name}; torch {torch.__version__}; triton {triton.__version__}\n\n"
            f"Measured: copy {rates['copy_gbps']:.0f} GB/s, exp2 {rates['ex2_per_s'] / 1e12:.2f} T/s, "
            f"FFMA {rates['ffma_per_s'] / 1e12:.2f} T/s (`python -m kernels.roofline`). Floors in ms, bf16; "
            f"each floor as if it ran alone (see the module's docstring for what they count).\n")
    text = head + "\n" + table(rates) + "\n"
    print(text)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "roofline_table.md").write_text("# Selective scan: floors against the bandwidth target\n\n" + text)


if __name__ == "__main__":
    main()
