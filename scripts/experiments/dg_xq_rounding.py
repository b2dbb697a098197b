"""What rounding q * dq to bf16 would cost dlog_decay (per-channel decay): a CPU model, no GPU.

The per-channel dq sweep writes x_q = q * dq in fp32 for dk/dv, which forms
dlog_decay_t = sum_{r >= t} (q_r dq_r - k_r dk_r) + carry. Stored in bf16 it would move 2 fewer
[B, T, H, K] tensors. Model: exact fp64 gradients (the token loop) perturbed by relative noise of the
kernels' own rounding (2^-9, bf16's; and 2^-8), then dlog_decay from x_q kept in fp32 or rounded to bf16,
each against the exact one (relative RMS error, as the tests measure it):

    python scripts/experiments/dg_xq_rounding.py
"""
from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from kernels.linear_attention import naive_linear_attention  # noqa: E402
from tests.kernels.test_chunked_linear_attention import make_inputs, run_fwd_bwd  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    for T in (500, 1000):
        inputs = make_inputs(2, T, 2, 64, 64, "channel", torch.bfloat16)
        ref = run_fwd_bwd(naive_linear_attention, inputs, upcast=True)
        q, k = inputs["q"].double(), inputs["k"].double()
        dq, dk, dg = ref["dq"], ref["dk"], ref["dlog_decay"]
        carry = dg[:, -1] - (q[:, -1] * dq[:, -1] - k[:, -1] * dk[:, -1])

        def dlog_decay(xq, xk):
            return (xq - xk).flip(1).cumsum(1).flip(1) + carry[:, None]

        def rel(x):
            return ((x - dg).norm() / dg.norm()).item()

        for bits in (9, 8):
            dqn, dkn = (t * (1 + 2.0 ** -bits * torch.randn_like(t)) for t in (dq, dk))
            xk = k * dkn
            fp32 = rel(dlog_decay((q * dqn).float().double(), xk))
            bf16 = rel(dlog_decay((q * dqn).to(torch.bfloat16).double(), xk))
            print(f"T={T} noise 2^-{bits}: "
                  f"dlog_decay relative RMS error with q*dq in fp32 {fp32:.3f}, in bf16 {bf16:.3f}")


if __name__ == "__main__":
    main()
