"""Chunkwise-parallel linear attention in PyTorch: the CPU path, differentiable through autograd.

Split T into chunks of C tokens. With G_t = sum_{chunk start <= r <= t} g_r the within-chunk cumulative
log decay (G_t <= 0, non-increasing in t) and S the state entering the chunk, each chunk computes
(GLA, Yang et al. 2023, arXiv 2312.06635, eqs. 4-6; SSD, Dao & Gu 2024, arXiv 2405.21060, sec. 6):

    o_t   = scale * [ (q_t * exp(G_t)) S                                   (inter-chunk)
                      + sum_{s<=t} (sum_k q_tk k_sk exp(G_tk - G_sk)) v_s ]  (intra-chunk)
    S_new = exp(G_C) * S + sum_s (k_s * exp(G_C - G_s)) v_s^T

Every exponent above is <= 0 (the intra-chunk one only where s <= t; it is masked to -inf before exp
elsewhere), so log_decay = -20 per step underflows to exact zeros instead of overflowing to inf/NaN.
Per-channel decay builds the exact [C, C, K] decay tensor, so it uses short chunks (16);
scalar decay needs only a [C, C] matrix and uses chunks of 64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def chunk_linear_attention_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q, k: [B, T, H, K]; v: [B, T, H, V]; log_decay: None, [B, T, H] or [B, T, H, K];
    initial_state: [B, H, K, V]. Returns (o [B, T, H, V] in v's dtype, S_T [B, H, K, V] fp32 or None).
    Computes in fp32 (fp64 if q is fp64)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    per_channel = log_decay is not None and log_decay.dim() == 4
    C = chunk_size or (16 if per_channel else 64)
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    N = -(-T // C)
    pad = N * C - T

    def chunks(x: torch.Tensor) -> torch.Tensor:
        # [B, T, H, ...] -> [B, H, N, C, ...]; zero padding (k = v = 0, g = 0) adds nothing
        x = x.to(dt)
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, pad)) if pad else x
        x = x.reshape(B, N, C, H, *x.shape[3:])
        return x.movedim(3, 1)

    qc, kc, vc = chunks(q), chunks(k), chunks(v)                    # [B, H, N, C, K|V]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    if log_decay is None:
        G = qc.new_zeros(B, H, N, C, 1)
    else:
        G = chunks(log_decay).cumsum(3)                             # [B, H, N, C] or [B, H, N, C, K]
        G = G if per_channel else G[..., None]                      # -> [B, H, N, C, 1|K]

    # 1. intra-chunk scores A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk), s <= t
    if per_channel:
        diff = G[..., :, None, :] - G[..., None, :, :]              # [B, H, N, C, C, K]
        decay = diff.masked_fill(~causal[..., None], float("-inf")).exp()
        A = torch.einsum("bhntk,bhnsk,bhntsk->bhnts", qc, kc, decay)
    else:
        diff = G[..., :, None, 0] - G[..., None, :, 0]              # [B, H, N, C, C]
        A = (qc @ kc.transpose(-1, -2)) * diff.masked_fill(~causal, float("-inf")).exp()
    o = A @ vc                                                      # [B, H, N, C, V]

    # 2. inter-chunk recurrence on the K x V state, one step per chunk
    G_last = G[..., -1:, :]                                         # [B, H, N, 1, 1|K]
    k_dec = kc * (G_last - G).exp()                                 # keys decayed to the chunk end
    q_dec = qc * G.exp()                                            # queries decayed from the chunk start
    S = qc.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    inter = []
    for n in range(N):
        inter.append(q_dec[:, :, n] @ S)                            # [B, H, C, V]
        S = G_last[:, :, n, 0, :, None].exp() * S + k_dec[:, :, n].transpose(-1, -2) @ vc[:, :, n]
    o = (o + torch.stack(inter, dim=2)) * scale                     # [B, H, N, C, V]
    o = o.movedim(1, 3).reshape(B, N * C, H, V)[:, :T]              # [B, T, H, V]
    return o.to(v.dtype), (S if output_final_state else None)
