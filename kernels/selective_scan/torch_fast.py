"""Vectorised PyTorch form of the selective scan, the CPU fallback.

Same math as `naive.py` (Gu & Dao 2023, arXiv 2312.00752, eq. 2). Time is cut into chunks of
`chunk` steps; inside a chunk the affine maps h -> exp(Δ_t A) h + Δ_t u_t B_t are composed with a
Hillis-Steele inclusive scan in log2(chunk) vectorised steps (Blelloch 1990; Martin & Cundy 2018,
arXiv 1709.04057), and the state is carried from chunk to chunk. No log-space division, so decays
near 0 are exact. Groups are broadcast, never copied per channel: u is viewed as [B, G, D/G, L].
Working memory: [B, D, N, chunk].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _scan(a: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan along the last dim of h_t = a_t h_{t-1} + x_t with h_{-1} = 0."""
    C, k = a.shape[-1], 1
    while k < C:
        x = torch.cat([x[..., :k], a[..., k:] * x[..., :-k] + x[..., k:]], dim=-1)
        a = torch.cat([a[..., :k], a[..., k:] * a[..., :-k]], dim=-1)
        k *= 2
    return a, x


def chunk_step(h: torch.Tensor, dt: torch.Tensor, du: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
               C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of c steps from the state h [B, G, Dg, N]: dt, du [B, G, Dg, 1, c]; A [G, Dg, N, 1];
    B, C [B, G, 1, N, c]. Returns (y of the chunk [B, G, Dg, c], the state after it)."""
    pa, px = _scan(torch.exp(dt * A), du * B)                          # [B, G, Dg, N, c]
    hc = pa * h[..., None] + px                                        # the chunk's states
    return (hc * C).sum(-2), hc[..., -1]


def chunked_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                           return_last_state: bool = False, chunk: int = 32, step=None):
    """Signature and shapes of `naive_selective_scan`; differentiable through autograd. step: a
    stand-in for `chunk_step` (same arguments and results), e.g. `torch.compile(chunk_step)`, which
    is how the benchmark compiles this fallback: compiling the whole function would make dynamo
    unroll the loop over L/chunk chunks."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    Bsz, Dm, L = u.shape
    N = A.shape[1]
    Bg = B[:, None] if B.dim() == 3 else B          # [B, G, N, L]
    Cg = C[:, None] if C.dim() == 3 else C
    G = Bg.shape[1]
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uf = u.to(acc)
    dt5 = dt.view(Bsz, G, Dm // G, 1, L)            # [B, G, Dg, 1, L]
    du5 = (dt * uf).view(Bsz, G, Dm // G, 1, L)
    A4 = A.to(acc).view(G, Dm // G, N, 1)           # [G, Dg, N, 1]
    h = uf.new_zeros(Bsz, G, Dm // G, N)            # [B, G, Dg, N]
    step = chunk_step if step is None else step
    ys = []
    for t0 in range(0, L, chunk):
        sl = slice(t0, t0 + chunk)
        y_c, h = step(h, dt5[..., sl], du5[..., sl], A4, Bg[:, :, None, :, sl].to(acc), Cg[:, :, None, :, sl].to(acc))
        ys.append(y_c)
    y = torch.cat(ys, dim=-1).reshape(Bsz, Dm, L)
    if D is not None:
        y = y + D.to(acc)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    return (y, h.reshape(Bsz, Dm, N)) if return_last_state else y
