"""MLGRU, the MatMul-free Linear GRU token mixer (Zhu et al. 2024, "Scalable MatMul-free Language
Modeling", arXiv 2406.02528, the MLGRU of its token-mixer section). A GRU with no hidden-to-hidden weights, so the recurrence is
element-wise and linear in h (parallel over time):

    f_t = σ(W_f x_t + b_f)                      forget gate
    c_t = SiLU(W_c x_t + b_c)                   candidate
    h_t = f_t ⊙ h_{t−1} + (1 − f_t) ⊙ c_t         (computed by `kernels.linear_recurrence`)
    g_t = σ(W_g x_t + b_g)                      output gate
    o_t = W_o (g_t ⊙ h_t) + b_o

With `ternary=true` (the paper's setting) the four projections are BitLinear layers
(`zoo.mixers.bitlinear`: RMSNorm, 8-bit absmax activations, absmean ternary weights, STE);
with `ternary=false` they are full-precision nn.Linear. Default PyTorch initialisation.

State at inference, per layer: h_t ∈ R^d, state_size = d.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import kernels
from .bitlinear import BitLinear


class MLGRU(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, ternary: bool = True, bias: bool = True):
        super().__init__()
        self.d_model, self.layer_idx, self.ternary = d_model, layer_idx, ternary
        linear = BitLinear if ternary else nn.Linear
        self.f_proj, self.c_proj, self.g_proj, self.o_proj = (
            linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.sigmoid(self.f_proj(x))
        c = F.silu(self.c_proj(x))
        # h_t = f_t h_{t-1} + (1 - f_t) c_t: a diagonal linear recurrence, parallel over time
        h = kernels.linear_recurrence(f, (1 - f) * c)  # [B, T, d]
        g = torch.sigmoid(self.g_proj(x))
        return self.o_proj(g * h)

    def state_size(self, seq_len: int) -> int:
        """d: the hidden state h_t."""
        return self.d_model
