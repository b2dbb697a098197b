"""DeltaNet (Yang, Wang, Zhang, Shen & Kim 2024, "Parallelizing Linear Transformers with the Delta Rule
over Sequence Length", arXiv 2406.06484).

Per head, with d_k = d_v = d_model / H (the papers write S as d_v × d_k; here S = their Sᵀ):

    q_t, k_t, v_t = SiLU(ShortConv(x W_{q,k,v}))_t,  q_t, k_t ← q_t / ‖q_t‖, k_t / ‖k_t‖     (§3.4)
    β_t = σ(x_t W_β) ∈ (0, 1)                                                  per head, writing strength
    S_t = S_{t−1} (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ,   o_t = S_t q_t                     (delta rule, §2)
    y_t = W_O RMSNorm_head(o_t)

The delta rule replaces the value stored under k_t (S_{t−1} k_t) by β_t-interpolation towards v_t,
instead of adding to it as linear attention does. It runs as the chunked WY/UT-transform form of
§3.1-3.2 (`_delta_rule.chunk_delta_rule`: per chunk a triangular solve builds W and U, then one state
step per chunk; no loop over tokens); `mode="recurrent"` runs the token loop instead (the definition,
for tests). No 1/√d_k scale: q is L2-normalised and the output RMSNorm is scale-invariant.
The short convolutions (kernel 4, depthwise, no bias) are part of the paper's architecture and of its
MQAR setting; conv_size=0 removes them. Initialisation: N(0, 0.02) weights (the authors' release).

State at inference, per layer: H · d_k · d_v for S, plus the convolution buffers over q, k, v:
state_size = H · d_k · d_v + (conv_size − 1) · (2 · H · d_k + H · d_v).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._delta_rule import chunk_delta_rule, naive_delta_rule

MODES = ("chunk", "recurrent")


class ShortConv(nn.Module):
    """Causal depthwise convolution along time, no bias: [B, T, D] -> [B, T, D]."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, padding=kernel_size - 1,
                              bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        # padding on both sides, keep the first T outputs: position t sees x[t-k+1 .. t]
        return self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2)


class DeltaNet(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 2, conv_size: int = 4,
                 chunk_size: int = 64, norm_eps: float = 1e-5,
                 mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"DeltaNet: d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"pick a divisor of {d_model}")
        if conv_size < 0 or chunk_size < 1:
            raise ValueError(f"DeltaNet: need conv_size >= 0 (0 = no short conv) and chunk_size >= 1, "
                             f"got {conv_size}, {chunk_size}")
        if mode not in MODES:
            raise ValueError(f"DeltaNet(mode={mode!r}): expected one of {MODES}")
        self.d_model, self.layer_idx, self.num_heads, self.mode = d_model, layer_idx, num_heads, mode
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.key_dim = self.value_dim = d_model  # totals over heads
        self.qkv = nn.Linear(d_model, 2 * self.key_dim + self.value_dim, bias=False)
        # depthwise, so one conv over [q, k, v] equals three separate short convs
        self.conv = ShortConv(2 * self.key_dim + self.value_dim, conv_size) if conv_size else None
        self.beta = nn.Linear(d_model, num_heads, bias=False)
        self.norm = nn.RMSNorm(self.value_dim // num_heads, eps=norm_eps)
        self.out = nn.Linear(self.value_dim, d_model, bias=False)
        for lin in (self.qkv, self.beta, self.out):
            nn.init.normal_(lin.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H = self.num_heads
        qkv = self.qkv(x)
        qkv = F.silu(self.conv(qkv) if self.conv is not None else qkv)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q = F.normalize(rearrange(q, "b t (h k) -> b t h k", h=H), dim=-1)  # L2 norm per head
        k = F.normalize(rearrange(k, "b t (h k) -> b t h k", h=H), dim=-1)
        v = rearrange(v, "b t (h v) -> b t h v", h=H)
        beta = torch.sigmoid(self.beta(x))  # [B, T, H]
        if self.mode == "chunk":
            o = chunk_delta_rule(q, k, v, beta, chunk_size=self.chunk_size)
        else:
            o = naive_delta_rule(q, k, v, beta)[0].to(v.dtype)
        return self.out(rearrange(self.norm(o.float()), "b t h v -> b t (h v)"))  # norm in fp32

    def state_size(self, seq_len: int) -> int:
        """H·d_k·d_v (delta-rule state) + (conv_size − 1)·(2·key_dim + value_dim) (conv buffers)."""
        conv = max(self.conv_size - 1, 0) * (2 * self.key_dim + self.value_dim)
        return self.key_dim * self.value_dim // self.num_heads + conv
