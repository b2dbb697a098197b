"""Step-loop reference for Mamba's selective scan (S6): the definition, obviously correct.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv 2312.00752),
Algorithm 2 with the zero-order-hold discretisation of eq. 4 simplified as in the reference code
(Ā = exp(Δ A), B̄ u = Δ B u):

    Δ_t = softplus(δ_t + δ_bias)  (or δ_t + δ_bias)                  # [B, D]
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) B_t                        # h: [B, D, N], eq. 2a
    y_t = C_t · h_t + D u_t,    y_t ← y_t · silu(z_t) if z is given   # eq. 2b plus Mamba's gate
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_groups(M: torch.Tensor, D: int) -> torch.Tensor:
    """B or C, [B, N, L] or [B, G, N, L] -> [B, D, N, L] (channel d reads group d // (D / G))."""
    if M.dim() == 3:
        return M[:, None].expand(M.shape[0], D, *M.shape[1:])
    G = M.shape[1]
    return M.repeat_interleave(D // G, dim=1)


def naive_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                         delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                         return_last_state: bool = False):
    """u, delta: [B, D, L]; A: [D, N]; B, C: [B, N, L] or [B, G, N, L]; D, delta_bias: [D];
    z: [B, D, L]. Returns y: [B, D, L] (dtype of u), and h_L: [B, D, N] if return_last_state.

    fp32 math (fp64 if u is fp64); differentiable through autograd."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    Bsz, Dm, L = u.shape
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bx, Cx = expand_groups(B, Dm).to(acc), expand_groups(C, Dm).to(acc)   # [B, D, N, L]
    uf = u.to(acc)
    h = uf.new_zeros(Bsz, Dm, A.shape[1])                                  # [B, D, N]
    ys = []
    for t in range(L):
        dA = torch.exp(dt[:, :, t, None] * A.to(acc))                       # [B, D, N]
        h = dA * h + (dt[:, :, t] * uf[:, :, t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))                                 # [B, D]
    y = torch.stack(ys, dim=-1)                                             # [B, D, L]
    if D is not None:
        y = y + D.to(acc)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y
