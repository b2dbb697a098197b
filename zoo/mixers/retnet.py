"""RetNet's multi-scale retention (Sun, Dong, Huang et al. 2023, "Retentive Network: A Successor to
Transformer for Large Language Models", arXiv 2307.08621, §2.1-2.2).

Per head h, with key dim d_k = d_model / H and value dim d_v = expand_v · d_model / H:

    Q = (X W_Q) ⊙ Θ,  K = (X W_K) ⊙ Θ̄,  V = X W_V          Θ_n = e^{inθ}: rotary positions     (5)
    S_n = γ_h S_{n−1} + K_nᵀ V_n,   Retention(X_n) = Q_n S_n / √d_k        (recurrent form)    (6)
    γ_h = 1 − 2^{−5−h},  h = 0 … H−1                          fixed multi-scale decay          (8)
    Y = GroupNorm_H(Concat(head_1, …, head_H))
    MSR(X) = (swish(X W_G) ⊙ Y) W_O                                                           (8)

The recurrence (6) is `kernels.chunked_linear_attention` with the scalar log_decay = log γ_h broadcast
to [B, T, H] (the paper's chunkwise form, §2.2). The rotation Θ is applied as rotary embeddings
(base 10000, "rotate half" pairing) on q and k; the xPos length-extrapolation scaling is not needed
here because γ already discounts distance. The paper's extra normalisations of the retention scores
(§2.2, "Retention Score Normalization") are omitted: GroupNorm makes the output invariant to them
(up to its ε). Initialisation as the authors' release: Xavier-uniform with gain 2^−2.5 for W_Q, W_K,
W_V, W_G and 2^−1 for W_O, no biases (W_V, W_G: d × 2d, W_O: 2d × d with expand_v = 2).

State at inference, per layer: H · d_k · d_v elements (no convolution buffer).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import kernels
from kernels.linear_attention import naive_linear_attention
from .attention import apply_rope, rope_tables

MODES = ("chunk", "recurrent")


def retention_decays(num_heads: int) -> torch.Tensor:
    """log γ_h for γ_h = 1 − 2^(−5−h), h = 0 … H−1 (eq. 8), [H]."""
    return torch.log1p(-(2.0 ** (-5.0 - torch.arange(num_heads, dtype=torch.float64)))).float()


class RetNet(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 2, expand_v: int = 2,
                 rope_base: float = 10000.0, norm_eps: float = 1e-5,
                 mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"RetNet: d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"pick a divisor of {d_model}")
        if (d_model // num_heads) % 2:
            raise ValueError(f"RetNet: rotary positions need an even key head dim, got "
                             f"d_model/num_heads={d_model // num_heads}; change num_heads")
        if expand_v < 1:
            raise ValueError(f"RetNet: expand_v={expand_v} must be >= 1")
        if mode not in MODES:
            raise ValueError(f"RetNet(mode={mode!r}): expected one of {MODES}")
        self.d_model, self.layer_idx, self.num_heads, self.mode = d_model, layer_idx, num_heads, mode
        self.rope_base = rope_base
        self.key_dim, self.value_dim = d_model, expand_v * d_model  # totals over heads
        self.q = nn.Linear(d_model, self.key_dim, bias=False)
        self.k = nn.Linear(d_model, self.key_dim, bias=False)
        self.v = nn.Linear(d_model, self.value_dim, bias=False)
        self.g = nn.Linear(d_model, self.value_dim, bias=False)
        self.out = nn.Linear(self.value_dim, d_model, bias=False)
        self.norm = nn.GroupNorm(num_heads, self.value_dim, eps=norm_eps)  # one group per head
        for lin in (self.q, self.k, self.v, self.g):
            nn.init.xavier_uniform_(lin.weight, gain=2**-2.5)
        nn.init.xavier_uniform_(self.out.weight, gain=2**-1)
        self.register_buffer("log_gamma", retention_decays(num_heads), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.num_heads
        q = rearrange(self.q(x), "b t (h k) -> b t h k", h=H)
        k = rearrange(self.k(x), "b t (h k) -> b t h k", h=H)
        v = rearrange(self.v(x), "b t (h v) -> b t h v", h=H)
        # Θ: rotary on q, k; tables [T, 1, d_k/2] broadcast over heads
        cos, sin = rope_tables(T, q.shape[-1], self.rope_base, x.device, q.dtype)
        q, k = apply_rope(q, cos[:, None], sin[:, None]), apply_rope(k, cos[:, None], sin[:, None])
        log_decay = self.log_gamma.expand(B, T, H)  # fixed γ_h, fp32 even under autocast, [B, T, H]
        if self.mode == "chunk":
            o = kernels.chunked_linear_attention(q, k, v, log_decay)  # scale 1/√d_k, eq. (6)
        else:
            o = naive_linear_attention(q, k, v, log_decay)[0].to(v.dtype)
        # GroupNorm per head: [B, T, H, d_v] -> [B·T, H·d_v] (groups = heads)
        y = self.norm(rearrange(o, "b t h v -> (b t) (h v)")).view(B, T, self.value_dim)
        return self.out(F.silu(self.g(x)) * y)

    def state_size(self, seq_len: int) -> int:
        """H · d_k · d_v = key_dim · value_dim / H (one d_k × d_v retention state per head)."""
        return self.key_dim * self.value_dim // self.num_heads
