"""Sliding-window (local) causal attention (Beltagy, Peters, Cohan 2020, "Longformer: the
long-document transformer", arXiv 2004.05150; the causal form used by Based, Arora et al. 2024,
arXiv 2402.18668, §3). Per head, with window w:

    (1) a_{t,s} = q_t·k_s / √d_h + b_{t,s}                 for t - w < s ≤ t, -∞ otherwise
    (2) o_t = Σ_{t-w<s≤t} softmax_s(a_{t,·}) v_s

i.e. `Attention` (attention.py: projections, rope | alibi | none positions) restricted to the last w
tokens. State at inference: a KV cache of the last w tokens, 2 · min(T, w) · d_model elements.

Computation: blocked, O(T·w) time and memory instead of O(T²). The sequence is cut into blocks of
w queries; block c attends to the keys of blocks c-1 and c (2w keys), under the mask
0 ≤ t - s < w. For T ≤ 2w the dense masked form of `Attention` is as cheap and is used instead.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

from .attention import Attention


class SlidingWindowAttention(Attention):
    """`Attention` with a required window w (>= 1); `forward(x [B, T, D]) -> [B, T, D]`."""

    def __init__(self, d_model: int, *, layer_idx: int, window: int = 32, num_heads: int = 1,
                 positions: Literal["rope", "alibi", "none"] = "rope", rope_base: float = 10000.0,
                 dropout: float = 0.0, bias: bool = True):
        if window is None or int(window) < 1:
            raise ValueError(f"SlidingWindowAttention: window must be an integer >= 1, got {window}; "
                             f"use model=attention for full causal attention")
        super().__init__(d_model, layer_idx=layer_idx, num_heads=num_heads, positions=positions,
                         rope_base=rope_base, window=int(window), dropout=dropout, bias=bias)

    def _block_bias(self, n: int, device, dtype) -> torch.Tensor:
        """Additive bias [H·n, w, 2w] for n blocks: query i of block c sits at t = c·w + i,
        key j at s = c·w + j - w, so t - s = i + w - j; keys at s < 0 (block 0's padding) and
        outside 0 ≤ t - s < w get -∞; ALiBi adds -m_h (t - s)."""
        w = self.window
        i = torch.arange(w, device=device)[:, None]
        j = torch.arange(2 * w, device=device)[None, :]
        dist = (i + w - j).float()                                       # [w, 2w]
        allowed = (dist >= 0) & (dist < w)
        first = torch.zeros(n, 1, 2 * w, dtype=torch.bool, device=device)
        first[0, 0, :w] = True                                           # block 0 has no block -1
        allowed = allowed[None] & ~first                                 # [n, w, 2w]
        bias = torch.zeros(1, 1, w, 2 * w, device=device)
        if self.positions == "alibi":
            bias = -self.slopes.to(device)[:, None, None, None] * dist   # [H, 1, w, 2w]
        bias = bias.masked_fill(~allowed, float("-inf"))                 # [H or 1, n, w, 2w]
        return bias.expand(self.num_heads, n, w, 2 * w).flatten(0, 1).to(dtype)  # [(H n), w, 2w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        w = self.window
        if T <= 2 * w:
            return super().forward(x)
        q, k, v = self.project(x)                                        # [B, H, T, d_h]
        n = math.ceil(T / w)
        pad = n * w - T
        # queries: pad the end to n·w; keys/values: also w zeros in front (block 0's "previous")
        q = F.pad(q, (0, 0, 0, pad))                                     # [B, H, n·w, d_h]
        k, v = (F.pad(z, (0, 0, w, pad)) for z in (k, v))                # [B, H, (n+1)·w, d_h]

        def two_blocks(z: torch.Tensor) -> torch.Tensor:
            # block c's keys: padded rows c·w .. c·w + 2w - 1 = blocks c-1 and c of the sequence
            prev = rearrange(z[:, :, :-w], "b h (n w) d -> b (h n) w d", w=w)
            cur = rearrange(z[:, :, w:], "b h (n w) d -> b (h n) w d", w=w)
            return torch.cat([prev, cur], dim=2)                         # [B, H·n, 2w, d_h]

        q = rearrange(q, "b h (n w) d -> b (h n) w d", w=w)              # [B, H·n, w, d_h]
        bias = self._block_bias(n, x.device, q.dtype)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, two_blocks(k), two_blocks(v), attn_mask=bias, dropout_p=p)
        o = rearrange(o, "b (h n) w d -> b (n w) (h d)", h=self.num_heads)[:, :T]
        return self.out(o)
