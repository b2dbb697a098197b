"""Step-by-step recurrence for (decayed) linear attention: the definition the other paths are tested against.

With G the per-step log decay (`log_decay`, values <= 0), the state S_t in R^{K x V} follows

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T          (per-channel decay, GLA: Yang et al. 2023, eq. 3)
    S_t = exp(g_t) S_{t-1} + k_t v_t^T                (scalar decay: RetNet, Mamba-2/SSD)
    o_t = scale * S_t^T q_t

which unrolls to o_t = scale * sum_{s<=t} (q_t . (prod_{s<r<=t} exp(g_r)) k_s) v_s
(+ scale * q_t . (prod_{r<=t} exp(g_r)) S_0 when an initial state is given).
"""
from __future__ import annotations

import torch


def naive_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token loop in fp32 (fp64 if any input is fp64).

    q, k: [B, T, H, K]; v: [B, T, H, V]; log_decay: None, [B, T, H] or [B, T, H, K];
    initial_state: [B, H, K, V]. Returns (o [B, T, H, V] in the compute dtype, S_T [B, H, K, V] or None).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    dt = torch.float64 if torch.float64 in (q.dtype, k.dtype, v.dtype) else torch.float32
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        if log_decay is not None:
            a = log_decay[:, t].to(dt).exp()                       # [B, H] or [B, H, K]
            a = a[..., None, None] if a.dim() == 2 else a[..., None]
            S = a * S                                              # decay rows of S (all rows if scalar)
        S = S + k[:, t, :, :, None] * v[:, t, :, None, :]          # [B, H, K, V] rank-1 update
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S) * scale)
    o = torch.stack(outs, dim=1)                                    # [B, T, H, V] in dt
    return o, (S if output_final_state else None)
