"""Contextual Position Encoding, CoPE (Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual
position encoding: learning to count what's important", arXiv 2405.18719), in causal multi-head
softmax attention. Per head, with d_h = d_model / H and position embeddings e[0..p_max] ∈ R^{d_h}:

    (3) g_ij = σ(q_i·k_j / √d_h)                        gates, j ≤ i (0 for j > i)
    (4) p_ij = Σ_{t=j}^{i} g_it                          contextual position of key j from query i
    (5) e[p_ij] = (p_ij - ⌊p_ij⌋) e[⌈p_ij⌉] + (1 - p_ij + ⌊p_ij⌋) e[⌊p_ij⌋]   (interpolation)
    (6) a_ij = softmax_j(q_i·k_j / √d_h + q_i·e[p_ij]),   o_i = Σ_{j≤i} a_ij v_j

Positions are clamped to p_max = `npos_max`, so there are p_max + 1 embeddings. As in the paper's
listing, the gates use the scaled logits, the position term q_i·e[p] is not scaled, e is
initialised to zero (the layer starts as position-free attention) and one table is shared by the
heads of a layer. Because e[p] is linear in p's interpolation weights, q_i·e[p_ij] is the same
interpolation of the integer logits z_i[p] = q_i·e[p]: computing z_i [p_max + 1] per query and
gathering costs O(T·p_max·d_h + T²) instead of O(T²·d_h).

Parallel form: (4) is a reversed cumulative sum over j of the masked gate matrix, so no loop over
time. State at inference: the KV cache, 2 · T · d_model elements (the gates of a new query need
every cached key; e is a parameter, not state).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class CoPE(nn.Module):
    """Causal multi-head attention with CoPE; `forward(x [B, T, D]) -> [B, T, D]`.

    Parameters: 4·D² + 4·D (q/k/v/out projections with bias) + (npos_max + 1)·d_h (e)."""

    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 1, npos_max: int = 64,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"CoPE: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if npos_max < 1:
            raise ValueError(f"CoPE: npos_max must be >= 1 (the largest contextual position), got {npos_max}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CoPE: dropout must be in [0, 1), got {dropout}")
        self.d_model, self.layer_idx, self.num_heads = d_model, layer_idx, num_heads
        self.head_dim, self.npos_max, self.dropout = d_model // num_heads, npos_max, nn.Dropout(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        # e[0..p_max], zero at init as in the paper's listing; an embedding, so not weight-decayed
        self.pos_emb = nn.Parameter(torch.zeros(npos_max + 1, self.head_dim))
        self.pos_emb._no_weight_decay = True

    def positions(self, logits: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """Eqs. (3)-(4): scaled logits [..., T, T] -> p [..., T, T], clamped to [0, npos_max]."""
        gates = torch.sigmoid(logits).masked_fill(~causal, 0.0)
        # p_ij = Σ_{t=j}^{i} g_it: cumulative sum over j from the right (masked gates are 0)
        return gates.flip(-1).cumsum(-1).flip(-1).clamp(max=self.npos_max)

    def position_logits(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Eq. (5) inside q_i·e[p_ij]: q [B, H, T, d_h], p [B, H, T, T] -> [B, H, T, T]."""
        z = q @ self.pos_emb.t()                                 # [B, H, T, p_max+1]: q_i·e[p]
        lo = p.detach().floor()
        frac = p - lo                                            # carries the gradient w.r.t. p
        lo = lo.long()
        hi = (lo + 1).clamp(max=self.npos_max)                   # = ⌈p⌉ whenever frac > 0
        return torch.gather(z, -1, lo) * (1 - frac) + torch.gather(z, -1, hi) * frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        logits = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5        # [B, H, T, T]
        p = self.positions(logits, causal)
        logits = logits + self.position_logits(q, p)                     # eq. (6)
        attn = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        o = self.dropout(attn) @ v                                       # [B, H, T, d_h]
        return self.out(rearrange(o, "b h t d -> b t (h d)"))

    def state_size(self, seq_len: int) -> int:
        """KV cache: 2 · seq_len · d_model elements."""
        return 2 * seq_len * self.d_model
