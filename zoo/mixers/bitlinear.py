"""BitLinear with ternary weights (BitNet b1.58: Ma et al. 2024, "The Era of 1-bit LLMs: All Large
Language Models are in 1.58 Bits", arXiv 2402.17764), as used by the MatMul-free LM (Zhu et al. 2024,
arXiv 2406.02528, §3.1, whose fused BitLinear puts an RMSNorm before the activation quantisation).

    x̂ = RMSNorm(x)
    x_q = round(x̂ · 127 / γ_x) · γ_x / 127,      γ_x = max |x̂| per token   (absmax, 8 bit)
    W̃ = RoundClip(W / (γ_W + ε), −1, 1) ∈ {−1, 0, +1},  γ_W = mean |W|    (absmean, eq. 1-3)
    y = x_q (γ_W W̃)ᵀ + b

Training uses the straight-through estimator (STE): the quantisers act as the identity in the
backward, so with g = ∂L/∂y,
    ∂L/∂W = gᵀ x_q          (the gradient w.r.t. the quantised weight γ_W W̃, passed to W unchanged)
    ∂L/∂x̂ = g γ_W W̃         (the gradient w.r.t. x_q, passed to x̂ unchanged), then through RMSNorm.
The latent full-precision W is what the optimiser updates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACT_LEVELS = 127  # int8 symmetric: round(x · 127 / max|x|) ∈ [−127, 127]


def ternary_weight(w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(W̃ ∈ {−1, 0, +1}, γ_W = mean |W|): absmean quantisation of a weight matrix."""
    gamma = w.abs().mean()
    return (w / (gamma + eps)).round().clamp(-1, 1), gamma


def quantize_activations(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-token absmax 8-bit fake quantisation of x [..., D] (dequantised values)."""
    scale = ACT_LEVELS / x.abs().amax(dim=-1, keepdim=True).clamp(min=eps)
    return (x * scale).round().clamp(-ACT_LEVELS, ACT_LEVELS) / scale


class BitLinear(nn.Linear):
    """nn.Linear whose forward uses ternary weights and 8-bit activations (STE in the backward)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, norm: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.norm = nn.RMSNorm(in_features) if norm else None

    def quantized_weight(self) -> torch.Tensor:
        """γ_W W̃: the weight the forward multiplies by (one scale times {−1, 0, +1})."""
        w_t, gamma = ternary_weight(self.weight)
        return w_t * gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        # STE: value of the quantised tensor, gradient of the identity
        x_q = x + (quantize_activations(x) - x).detach()
        w_q = self.weight + (self.quantized_weight() - self.weight).detach()
        return F.linear(x_q, w_q, self.bias)
