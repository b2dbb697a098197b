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


def chunked_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                           return_last_state: bool = False, chunk: int = 32):
    """Signature and shapes of `naive_selective_scan`; differentiable through autograd."""
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
    ys = []
    for t0 in range(0, L, chunk):
        sl = slice(t0, t0 + chunk)
        a = torch.exp(dt5[..., sl] * A4)                               # [B, G, Dg, N, c]
        x = du5[..., sl] * Bg[:, :, None, :, sl].to(acc)              # [B, G, Dg, N, c]
        pa, px = _scan(a, x)
        hc = pa * h[..., None] + px                                    # states of this chunk
        ys.append((hc * Cg[:, :, None, :, sl].to(acc)).sum(-2))       # [B, G, Dg, c]
        h = hc[..., -1]
    y = torch.cat(ys, dim=-1).reshape(Bsz, Dm, L)
    if D is not None:
        y = y + D.to(acc)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    return (y, h.reshape(Bsz, Dm, N)) if return_last_state else y
