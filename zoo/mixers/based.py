"""Based (Arora, Eyuboglu, Zhang et al. 2024, "Simple linear attention language models balance the
recall-throughput tradeoff", arXiv 2402.18668): a gated short convolution followed by linear
attention with a 2nd-order Taylor feature map, plus optional sliding-window softmax attention.

1. Gated short convolution (BaseConv, Arora et al. 2023 §4): u' = u + (W_g u) ⊙ conv_k(u), a causal
   depthwise convolution of kernel size k; it moves the previous tokens' content onto the current
   position (what recall needs: the key next to its value).
2. Projections per head h: q_t, k_t ∈ R^f (small feature dim f), v_t ∈ R^{d/H}.
3. Taylor feature map (Based eq. 3): φ(x) = [1, x / f^{1/4}, vec(x xᵀ) / (√2 √f)] ∈ R^{1+f+f²},
   so φ(q)·φ(k) = 1 + q·k/√f + (q·k)²/(2f) ≈ exp(q·k/√f), and always > 0.
4. Causal linear attention, normalised:
       o_t = Σ_{s≤t} φ(q_t)·φ(k_s) v_s / Σ_{s≤t} φ(q_t)·φ(k_s)
   computed by `kernels.chunked_linear_attention` on [v, 1] (numerator and denominator at once).
   As a recurrence: S_t = S_{t-1} + φ(k_t) v_tᵀ, z_t = z_{t-1} + φ(k_t), o_t = S_tᵀφ(q_t) / z_tᵀφ(q_t).
5. Optional sliding-window softmax attention over the last w tokens (`window=w`; `sliding_window.py`,
   RoPE): it recalls the recent tokens exactly, where the Taylor approximation is coarse. The Based
   architecture interleaves linear-attention, sliding-window and gated-convolution *layers*; here one
   mixer holds all three, and the two attention branches are summed:
       y_t = W_o o_t + SWA_w(u)_t.
   `window=None` (or 0) disables it, as in the paper's Fig. 2 MQAR protocol ("no sliding window").

State at inference, per layer: H·F·(d/H + 1) elements for the KV state and its normaliser
(F = 1 + f + f²), plus the convolution buffer (k-1)·d, plus the window's KV cache 2·min(T, w)·d.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

import kernels

from .sliding_window import SlidingWindowAttention


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """φ(x) for x [..., f] -> [..., 1 + f + f²] (step 3)."""
    f = x.shape[-1]
    x1 = x / f**0.25
    x2 = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) / (2**0.5 * f**0.5)
    return torch.cat([torch.ones_like(x[..., :1]), x1, x2], dim=-1)


class ShortConv(nn.Module):
    """Causal depthwise convolution along time: [B, T, D] -> [B, T, D];
    y_t[c] = b[c] + Σ_{i<k} w[c, i] x_{t-k+1+i}[c] (x_{<0} = 0). State: the last k-1 inputs."""

    def __init__(self, d_model: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, padding=kernel_size - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        # padding on both sides, keep the first T outputs: position t sees x[t-k+1 .. t]
        return self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2)


class Based(nn.Module):
    """Gated short conv -> Taylor linear attention (+ sliding-window attention); [B, T, D] -> [B, T, D].

    Parameters: conv k·D + D, gate D² + D, q/k 2·D·H·f, v D², output D² + D; with a window also
    the window attention's 4·D² + 4·D."""

    def __init__(self, d_model: int, *, layer_idx: int, feature_dim: int = 16, num_heads: int = 1,
                 conv_size: int = 3, window: int | None = None, eps: float = 1e-6):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"Based: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if feature_dim < 1 or conv_size < 1:
            raise ValueError(f"Based: feature_dim and conv_size must be >= 1, got {feature_dim}, {conv_size}")
        if window is not None and window < 0:
            raise ValueError(f"Based: window must be >= 1, or 0/null for no sliding window, got {window}")
        self.d_model, self.layer_idx, self.feature_dim, self.num_heads = d_model, layer_idx, feature_dim, num_heads
        self.conv_size, self.eps, self.window = conv_size, eps, (window or None)
        self.conv = ShortConv(d_model, conv_size)
        self.conv_gate = nn.Linear(d_model, d_model)
        self.qk = nn.Linear(d_model, 2 * num_heads * feature_dim, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.swa = (SlidingWindowAttention(d_model, layer_idx=layer_idx, window=self.window, num_heads=num_heads)
                    if self.window else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x + self.conv_gate(x) * self.conv(x)  # step 1
        q, k = rearrange(self.qk(u), "b t (two h f) -> two b t h f", two=2, h=self.num_heads)
        v = rearrange(self.v(u), "b t (h d) -> b t h d", h=self.num_heads)
        q, k = taylor_features(q), taylor_features(k)  # [B, T, H, 1+f+f²]
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # [B, T, H, d_h + 1]
        o = kernels.chunked_linear_attention(q, k, v1, scale=1.0)
        o = o[..., :-1] / (o[..., -1:] + self.eps)  # numerator / denominator
        y = self.out(rearrange(o, "b t h d -> b t (h d)"))
        return y if self.swa is None else y + self.swa(u)  # step 5

    def state_size(self, seq_len: int) -> int:
        """H·(1+f+f²)·(d/H + 1) + (k-1)·d (+ 2·min(T, w)·d with a window) elements."""
        n_features = 1 + self.feature_dim + self.feature_dim**2
        head_dim = self.d_model // self.num_heads
        size = self.num_heads * n_features * (head_dim + 1) + (self.conv_size - 1) * self.d_model
        return size + (self.swa.state_size(seq_len) if self.swa is not None else 0)
