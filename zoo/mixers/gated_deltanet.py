"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025, "Gated Delta Networks: Improving Mamba2 with Delta
Rule", arXiv 2412.06464).

Per head, with d_k = expand_k · d_model / H and d_v = expand_v · d_model / H (the paper writes S as
d_v × d_k; here S = its transpose):

    q_t, k_t, v_t = SiLU(ShortConv(x W_{q,k,v}))_t,  q_t, k_t ← q_t / ‖q_t‖, k_t / ‖k_t‖
    β_t = σ(x_t W_β),   α_t = exp(−exp(A_log) · softplus(x_t W_α + dt_bias))     scalars per head
    S_t = α_t S_{t−1} (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ,   o_t = S_t q_t      (gated delta rule, §3)
    y_t = W_O (RMSNorm_head(o_t) ⊙ SiLU(x_t W_G))                              (output norm and gate)

α_t is Mamba-2's decay (a data-dependent forgetting gate: erase the whole memory when α_t → 0), β_t
DeltaNet's writing strength (replace one key's value). The recurrence runs as the chunked WY form
(`_delta_rule.chunk_delta_rule`, §3) with the decay kept in log space (cumulative sums of log α,
every exponent ≤ 0), so strong decay underflows to zeros instead of overflowing; `mode="recurrent"`
runs the token loop instead (for tests). No 1/√d_k scale: q is L2-normalised and the output RMSNorm
is scale-invariant.

Defaults follow the paper's layer: expand_k = 0.75, expand_v = 1.5 (≈ 6 d² parameters, as Mamba-2),
short convolutions of kernel 4 (conv_size=0 removes them). Initialisation as Mamba-2: A uniform in
[1, 16] stored as A_log, dt log-uniform in [1e-3, 0.1] stored as dt_bias = softplus⁻¹(dt) (both
excluded from weight decay); N(0, 0.02) projection weights.

State at inference, per layer: H · d_k · d_v plus the convolution buffers over q, k, v:
state_size = H · d_k · d_v + (conv_size − 1) · (2 · H · d_k + H · d_v).
"""
from __future__ import annotations

import math
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


class GatedDeltaNet(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 2, expand_k: float = 0.75,
                 expand_v: float = 1.5, conv_size: int = 4, chunk_size: int = 64,
                 dt_min: float = 1e-3, dt_max: float = 0.1,
                 A_init_range: tuple[float, float] = (1.0, 16.0), norm_eps: float = 1e-5,
                 mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        key_dim, value_dim = expand_k * d_model, expand_v * d_model
        for name, dim in (("expand_k", key_dim), ("expand_v", value_dim)):
            if num_heads < 1 or dim < 1 or dim != int(dim) or int(dim) % num_heads:
                raise ValueError(f"GatedDeltaNet: {name}·d_model={dim} must be a positive integer "
                                 f"divisible by num_heads={num_heads}; adjust {name} or num_heads")
        if conv_size < 0 or chunk_size < 1:
            raise ValueError(f"GatedDeltaNet: need conv_size >= 0 (0 = no short conv) and chunk_size "
                             f">= 1, got {conv_size}, {chunk_size}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"GatedDeltaNet: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        lo, hi = A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"GatedDeltaNet: A_init_range={A_init_range!r} must satisfy 0 < lo <= hi")
        if mode not in MODES:
            raise ValueError(f"GatedDeltaNet(mode={mode!r}): expected one of {MODES}")
        self.d_model, self.layer_idx, self.num_heads, self.mode = d_model, layer_idx, num_heads, mode
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.key_dim, self.value_dim = int(key_dim), int(value_dim)  # totals over heads
        H, qkv_dim = num_heads, 2 * self.key_dim + self.value_dim
        self.qkv = nn.Linear(d_model, qkv_dim, bias=False)
        # depthwise, so one conv over [q, k, v] equals three separate short convs
        self.conv = ShortConv(qkv_dim, conv_size) if conv_size else None
        self.ab = nn.Linear(d_model, 2 * H, bias=False)  # decay input (α) and writing strength (β)
        self.gate = nn.Linear(d_model, self.value_dim, bias=False)
        self.norm = nn.RMSNorm(self.value_dim // H, eps=norm_eps)
        self.out = nn.Linear(self.value_dim, d_model, bias=False)
        for lin in (self.qkv, self.ab, self.gate, self.out):
            nn.init.normal_(lin.weight, std=0.02)
        # Mamba-2 decay: A ~ U[lo, hi], dt ~ logU[dt_min, dt_max], dt_bias = softplus⁻¹(dt)
        dt = torch.exp(torch.empty(H).uniform_(math.log(dt_min), math.log(dt_max))).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(lo, hi)))
        for p in (self.dt_bias, self.A_log):
            p._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H = self.num_heads
        qkv = self.qkv(x)
        qkv = F.silu(self.conv(qkv) if self.conv is not None else qkv)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q = F.normalize(rearrange(q, "b t (h k) -> b t h k", h=H), dim=-1)  # L2 norm per head
        k = F.normalize(rearrange(k, "b t (h k) -> b t h k", h=H), dim=-1)
        v = rearrange(v, "b t (h v) -> b t h v", h=H)
        a, b = self.ab(x).chunk(2, dim=-1)  # [B, T, H] each
        beta = torch.sigmoid(b)
        log_alpha = -self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias)  # log α_t ≤ 0
        if self.mode == "chunk":
            o = chunk_delta_rule(q, k, v, beta, log_alpha, chunk_size=self.chunk_size)
        else:
            o = naive_delta_rule(q, k, v, beta, log_alpha)[0].to(v.dtype)
        o = rearrange(self.norm(o.float()), "b t h v -> b t (h v)")  # per-head RMSNorm, fp32
        return self.out(o * F.silu(self.gate(x)))

    def state_size(self, seq_len: int) -> int:
        """H·d_k·d_v (gated delta-rule state) + (conv_size − 1)·(2·key_dim + value_dim) (conv buffers)."""
        conv = max(self.conv_size - 1, 0) * (2 * self.key_dim + self.value_dim)
        return self.key_dim * self.value_dim // self.num_heads + conv
