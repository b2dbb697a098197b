"""Mamba's selective scan (S6; Gu & Dao 2023, arXiv 2312.00752).

    y = selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       *, return_last_state=False)
    # u, delta: [B, D, L]; A: [D, N]; B, C: [B, N, L] or [B, G, N, L]; D, delta_bias: [D];
    # z: [B, D, L]; y: [B, D, L] in u's dtype; with return_last_state: (y, h_L [B, D, N] fp32)

Implementations (same signature): `naive_selective_scan` (step loop, the definition),
`chunked_selective_scan` (vectorised PyTorch, CPU fallback), `triton_selective_scan` (Triton
forward + backward). Dispatch: CUDA tensors -> Triton; CPU tensors -> the PyTorch fallback, unless
TRITON_INTERPRET=1 (then the Triton kernels run in the interpreter).
"""
from __future__ import annotations

import os

import torch

from .naive import naive_selective_scan
from .torch_fast import chunked_selective_scan

try:
    from . import triton_scan
    from .triton_scan import triton_selective_scan
except ImportError:  # triton missing or broken: the PyTorch paths still work
    triton_scan = None
    triton_selective_scan = None


def use_triton(x: torch.Tensor) -> bool:
    """True when the Triton path runs for tensor x (CUDA, or the interpreter is switched on)."""
    if triton_scan is None:
        return False
    # the interpreter is chosen when the kernels are decorated (TRITON_INTERPRET at import); CPU
    # tensors use it only while TRITON_INTERPRET=1 is also set at call time, as the other ops do
    return x.is_cuda or (triton_scan.INTERPRETED and os.environ.get("TRITON_INTERPRET", "0") == "1")


def _check(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u and delta must both be [B, D, L], got {tuple(u.shape)} "
                         f"and {tuple(delta.shape)}")
    Bsz, Dm, L = u.shape
    if A.dim() != 2 or A.shape[0] != Dm or A.is_complex():
        raise ValueError(f"selective_scan: A must be real [D, N] with D={Dm}, got {tuple(A.shape)} "
                         f"{A.dtype}")
    N = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        ok = (M.dim() == 3 and M.shape == (Bsz, N, L)) or (
            M.dim() == 4 and M.shape[0] == Bsz and M.shape[2:] == (N, L) and Dm % M.shape[1] == 0)
        if not ok:
            raise ValueError(f"selective_scan: {name} must be [B, N, L]=({Bsz}, {N}, {L}) or "
                             f"[B, G, N, L] with D={Dm} divisible by G, got {tuple(M.shape)}")
    if B.dim() != C.dim() or (B.dim() == 4 and B.shape[1] != C.shape[1]):
        raise ValueError(f"selective_scan: B and C must have the same groups, got {tuple(B.shape)}, "
                         f"{tuple(C.shape)}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and v.shape != (Dm,):
            raise ValueError(f"selective_scan: {name} must be [D]=({Dm},), got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must be [B, D, L]={tuple(u.shape)}, got {tuple(z.shape)}")


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                   return_last_state: bool = False):
    """Selective scan, fp32 state and accumulation; see the module docstring for the math/shapes.

    Differentiable in u, delta, A, B, C, D, z and delta_bias."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    impl = triton_selective_scan if use_triton(u) else chunked_selective_scan
    return impl(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                return_last_state=return_last_state)


__all__ = ["selective_scan", "naive_selective_scan", "chunked_selective_scan",
           "triton_selective_scan", "use_triton"]
