"""Multi-head causal softmax attention (Vaswani et al. 2017, arXiv 1706.03762).

    o_t = Σ_{s≤t} softmax_s(q_t·k_s / √d_h + b_{t,s}) v_s,   per head, d_h = d_model / num_heads

Positions, inside the mixer: `rope` rotates q and k (Su et al. 2021, RoFormer, arXiv 2104.09864);
`alibi` adds the bias b_{t,s} = -m_h (t - s) with head slopes m_h = 2^(-8h/H) (Press et al. 2022,
arXiv 2108.12409); `none` uses no positions (learned absolute positions live in the backbone:
`model.positions=learned`). `window=w` restricts s to t-w < s ≤ t (sliding-window attention).

State at inference: the KV cache, 2 · min(T, window) · d_model elements.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

POSITIONS = ("rope", "alibi", "none")


def rope_tables(T: int, dim: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [T, dim/2] for rotary embeddings."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the last dim of x [B, H, T, d] by the position angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """m_h = 2^(-8 h / H), h = 1..H (ALiBi's geometric head slopes)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)])


class Attention(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 1,
                 positions: Literal["rope", "alibi", "none"] = "rope", rope_base: float = 10000.0,
                 window: int | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"Attention: d_model={d_model} is not divisible by num_heads={num_heads}")
        if positions not in POSITIONS:
            raise ValueError(f"Attention(positions={positions!r}): expected one of {POSITIONS}")
        if positions == "rope" and (d_model // num_heads) % 2:
            raise ValueError(f"Attention: rope needs an even head dim, got {d_model // num_heads}")
        if window is not None and window < 1:
            raise ValueError(f"Attention: window must be >= 1 or null, got {window}")
        self.d_model, self.num_heads, self.layer_idx = d_model, num_heads, layer_idx
        self.positions, self.rope_base, self.window, self.dropout = positions, rope_base, window, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        if positions == "alibi":
            self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def _bias(self, T: int, device, dtype) -> torch.Tensor | None:
        """Additive attention bias [H or 1, T, T] (causal and window masks, ALiBi), or None when
        plain causal masking (is_causal) suffices."""
        if self.positions != "alibi" and self.window is None:
            return None
        t = torch.arange(T, device=device)
        dist = (t[:, None] - t[None, :]).float()  # t - s
        allowed = dist >= 0
        if self.window is not None:
            allowed &= dist < self.window
        bias = torch.zeros(1, T, T, device=device)
        if self.positions == "alibi":
            bias = -self.slopes.to(device)[:, None, None] * dist
        return bias.masked_fill(~allowed, float("-inf")).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        if self.positions == "rope":
            cos, sin = rope_tables(T, q.shape[-1], self.rope_base, x.device, q.dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        bias = self._bias(T, x.device, q.dtype)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, is_causal=bias is None)
        return self.out(rearrange(o, "b h t d -> b t (h d)"))

    def state_size(self, seq_len: int) -> int:
        cached = seq_len if self.window is None else min(seq_len, self.window)
        return 2 * cached * self.d_model
