"""Gated Linear Attention (Yang, Wang, Shen, Panda & Kim 2023, "Gated Linear Attention Transformers
with Hardware-Efficient Training", arXiv 2312.06635, §4).

Per head, with key dim d_k = expand_k · d_model / H and value dim d_v = expand_v · d_model / H:

    q_t = x_t W_Q,  k_t = x_t W_K,  v_t = x_t W_V
    α_t = σ(x_t W_α1 W_α2 + b_α)^{1/τ} ∈ (0, 1)^{d_k},  τ = 16,  W_α1 W_α2 of rank 16     (§4.4)
    S_t = (α_tᵀ 1) ⊙ S_{t−1} + k_tᵀ v_t,   o_t = q_t S_t / √d_k         S_t ∈ R^{d_k × d_v}  (§4.1)
    r_t = Swish(x_t W_r + b_r),   y_t = (r_t ⊙ LayerNorm_head(o_t)) W_O                      (§4.4)

The recurrence is `kernels.chunked_linear_attention` with the per-key-channel
log_decay = log α_t = logsigmoid(·) / τ, [B, T, H, d_k] (the paper's chunkwise form, §4.2-4.3).
LayerNorm runs over each head's d_v channels (affine shared by heads). Initialisation as the
authors' release: Xavier-uniform with gain 2^−2.5 for every projection, zero biases; paper defaults
expand_k = 0.5, expand_v = 1 (no short convolution: the GLA paper's model has none).

State at inference, per layer: H · d_k · d_v elements.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import kernels
from kernels.linear_attention import naive_linear_attention

MODES = ("chunk", "recurrent")


class GLA(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 2, expand_k: float = 0.5,
                 expand_v: float = 1.0, gate_rank: int = 16, gate_temperature: float = 16.0,
                 norm_eps: float = 1e-5, mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        key_dim, value_dim = expand_k * d_model, expand_v * d_model
        for name, dim in (("expand_k", key_dim), ("expand_v", value_dim)):
            if num_heads < 1 or dim < 1 or dim != int(dim) or int(dim) % num_heads:
                raise ValueError(f"GLA: {name}·d_model={dim} must be a positive integer divisible by "
                                 f"num_heads={num_heads}; adjust {name} or num_heads")
        key_dim, value_dim = int(key_dim), int(value_dim)
        if gate_rank < 1 or gate_temperature <= 0:
            raise ValueError(f"GLA: need gate_rank >= 1 and gate_temperature > 0, got {gate_rank}, "
                             f"{gate_temperature}")
        if mode not in MODES:
            raise ValueError(f"GLA(mode={mode!r}): expected one of {MODES}")
        self.d_model, self.layer_idx, self.num_heads, self.mode = d_model, layer_idx, num_heads, mode
        self.key_dim, self.value_dim, self.gate_temperature = key_dim, value_dim, gate_temperature
        self.q = nn.Linear(d_model, key_dim, bias=False)
        self.k = nn.Linear(d_model, key_dim, bias=False)
        self.v = nn.Linear(d_model, value_dim, bias=False)
        # low-rank forget gate: W_α1 [d, 16] then W_α2 [16, d_k] + b_α
        self.gate = nn.Sequential(nn.Linear(d_model, gate_rank, bias=False), nn.Linear(gate_rank, key_dim))
        self.r = nn.Linear(d_model, value_dim)  # output gate
        self.out = nn.Linear(value_dim, d_model, bias=False)
        self.norm = nn.LayerNorm(value_dim // num_heads, eps=norm_eps)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=2**-2.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H = self.num_heads
        q = rearrange(self.q(x), "b t (h k) -> b t h k", h=H)
        k = rearrange(self.k(x), "b t (h k) -> b t h k", h=H)
        v = rearrange(self.v(x), "b t (h v) -> b t h v", h=H)
        # log α_t = log σ(·)^{1/τ}, computed stably in log space: [B, T, H, d_k], values < 0
        log_alpha = F.logsigmoid(self.gate(x).float()) / self.gate_temperature  # fp32 under autocast
        log_alpha = rearrange(log_alpha, "b t (h k) -> b t h k", h=H)
        if self.mode == "chunk":
            o = kernels.chunked_linear_attention(q, k, v, log_alpha)  # scale 1/√d_k
        else:
            o = naive_linear_attention(q, k, v, log_alpha)[0].to(v.dtype)
        o = rearrange(self.norm(o), "b t h v -> b t (h v)")  # per-head LayerNorm
        return self.out(F.silu(self.r(x)) * o)

    def state_size(self, seq_len: int) -> int:
        """H · d_k · d_v = key_dim · value_dim / H (one d_k × d_v state per head)."""
        return self.key_dim * self.value_dim // self.num_heads
