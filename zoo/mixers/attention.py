"""Multi-head causal softmax attention (Vaswani et al. 2017, "Attention is all you need",
arXiv 1706.03762), per head h with d_h = d_model / H:

    (1) q_t, k_t, v_t = W_q x_t, W_k x_t, W_v x_t                      (split into H heads)
    (2) a_{t,s} = q_t·k_s / √d_h + b_{t,s}                             (s ≤ t; -∞ otherwise)
    (3) o_t = Σ_{s≤t} softmax_s(a_{t,·}) v_s,   y_t = W_o [o_t^1, …, o_t^H]

Positions, inside the mixer:
- `rope` (Su et al. 2021, RoFormer, arXiv 2104.09864) rotates each pair (x_i, x_{i+d_h/2}) of q_t
  and k_t by the angle t·θ_i, θ_i = base^(-2i/d_h); then q_t·k_s = Re[Σ_i q̃_i conj(k̃_i) e^{i(t-s)θ_i}]
  depends on the positions only through t - s (eq. 16 of the paper);
- `xpos` (Sun et al. 2022, "A Length-Extrapolatable Transformer", arXiv 2212.10554, §3.2-3.3): RoPE
  plus an exponential decay per rotation pair. With ζ_i = (i/(d_h/2) + γ)/(1 + γ) ∈ (0, 1),
  i = 0..d_h/2-1 (γ = 0.4), and scale base B (512), pair i of q_t is rotated by t·θ_i and scaled by
  ζ_i^{t/B}, pair i of k_s is rotated by s·θ_i and scaled by ζ_i^{-s/B}, so that

      q_t·k_s = Re[Σ_i q̃_i conj(k̃_i) e^{i(t-s)θ_i} ζ_i^{(t-s)/B}]               (X)

  still depends on t - s only, and decays with the distance (higher-frequency pairs, small i, fastest).
  (X) is invariant to the reference r the positions are counted from, but the factors ζ^{±(t-r)/B}
  are not: they overflow fp32 at |t - r|/B · ln(1/ζ_0) > 88 (|t - r| ≳ 36k at B = 512), and above
  the diagonal (s > t, masked afterwards) their product ζ^{(t-s)/B} grows instead of decaying. So,
  as the paper's code (torchscale) does, positions are counted from the centre of the sequence, and a sequence
  longer than `xpos_block` (the span over which ζ_0^{-span/B} = e^{XPOS_LOG_RANGE}) is computed in
  blocks of that many queries, each counting from its own centre: every product, masked ones
  included, stays below e^{XPOS_LOG_RANGE} (safe in fp16), and a key far in the past gets a factor
  that underflows to 0 where (X) itself does. `xpos_scale_base=.inf` turns the decay off (ζ^0 = 1):
  plain RoPE. (The paper's blockwise causal attention at inference is not part of this mixer.)
- `alibi` (Press et al. 2022, arXiv 2108.12409) adds b_{t,s} = -m_h (t - s); the head slopes are the
  geometric sequence m_h = 2^(-8h/H), h = 1..H, for H a power of two, and otherwise the 2^⌊log2 H⌋
  slopes followed by every other slope of the 2·2^⌊log2 H⌋ sequence (the paper's rule);
- `none`: no positions here (learned absolute positions live in the backbone:
  `model.positions=learned`).
`window=w` restricts s to t-w < s ≤ t (sliding-window attention; see `sliding_window.py`).

State at inference: the KV cache, K and V of every cached token, 2 · min(T, w) · d_model elements
(w = ∞ without a window).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.attention.bias import causal_lower_right

POSITIONS = ("rope", "xpos", "alibi", "none")
ROTARY = ("rope", "xpos")  # positions that rotate q and k
XPOS_LOG_RANGE = 4.0  # xpos: largest |ln| of a block's factor products ζ^{(t-s)/B} (e^4 ≈ 55)


def rope_tables(T: int, dim: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [T, dim/2] for rotary embeddings."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)  # θ_i
    angles = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the last dim of x [B, H, T, d] by the position angle."""
    x1, x2 = x.chunk(2, dim=-1)  # pair i is (x_i, x_{i+d/2}), the "rotate-half" layout
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def xpos_log_scale(positions: torch.Tensor, dim: int, gamma: float, scale_base: float) -> torch.Tensor:
    """ln(ζ_i^{n/B}) = (n/B)·ln ζ_i for each position n [T] and pair i: [T, dim/2], fp32, with
    ζ_i = (i/(dim/2) + γ)/(1 + γ), i = 0..dim/2-1 (xPos). Positions may be negative (relative to a
    reference); B = inf gives zeros (no decay)."""
    i = torch.arange(dim // 2, device=positions.device, dtype=torch.float32)
    log_zeta = torch.log((i / (dim / 2) + gamma) / (1 + gamma))                   # [dim/2], all < 0
    return (positions.float()[:, None] / scale_base) * log_zeta


def xpos_block_size(gamma: float, scale_base: float) -> int | float:
    """Queries per xPos block: the span n with ζ_0^{-n/B} = e^{XPOS_LOG_RANGE} (inf without decay)."""
    rate = math.log((1 + gamma) / gamma) / scale_base  # ln(1/ζ_0) / B, per token
    return max(1, int(XPOS_LOG_RANGE / rate)) if rate > 0 else math.inf


def apply_xpos_scale(q: torch.Tensor, k: torch.Tensor, log_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q·ζ^{n/B}, k·ζ^{-n/B} for rotated q [..., Tq, d], k [..., Tk, d] given the log-scale tables
    [Tq, d/2] and [Tk, d/2] as a pair; pair i is (x_i, x_{i+d/2}) (rotate-half layout), hence the
    table is repeated over the two halves."""
    log_q, log_k = (torch.cat([t, t], dim=-1) for t in log_scale)                 # [T, d]
    return q * log_q.exp().to(q.dtype), k * (-log_k).exp().to(k.dtype)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes [H]: m_h = 2^(-8 h / H), h = 1..H, when H is a power of two; otherwise the
    slopes of the largest power of two n < H, then every other slope of the 2n-head sequence."""
    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    n = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(n) + geometric(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes)


class Attention(nn.Module):
    """Causal multi-head softmax attention; `forward(x [B, T, D]) -> [B, T, D]`.

    Hyperparameters: `num_heads` H; `positions` rope | xpos | alibi | none; `rope_base` (θ_i's base);
    `xpos_gamma` γ and `xpos_scale_base` B of xPos (B = inf: no decay); `window` (None: full causal
    attention); `dropout` on the attention weights (training only); `bias` on the q/k/v and output
    projections. Parameters: 4·D² (+ 4·D with bias)."""

    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 1,
                 positions: Literal["rope", "xpos", "alibi", "none"] = "rope", rope_base: float = 10000.0,
                 xpos_gamma: float = 0.4, xpos_scale_base: float = 512.0,
                 window: int | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"Attention: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if positions not in POSITIONS:
            raise ValueError(f"Attention(positions={positions!r}): expected one of {POSITIONS}")
        if positions in ROTARY and (d_model // num_heads) % 2:
            raise ValueError(f"Attention: {positions} needs an even head dim, got {d_model // num_heads}")
        if not (xpos_gamma > 0 and xpos_scale_base > 0):
            raise ValueError(f"Attention: xpos_gamma and xpos_scale_base must be > 0, got {xpos_gamma}, "
                             f"{xpos_scale_base} (xpos_scale_base=.inf disables the decay)")
        if window is not None and window < 1:
            raise ValueError(f"Attention: window must be >= 1 or null, got {window}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Attention: dropout must be in [0, 1), got {dropout}")
        self.d_model, self.num_heads, self.layer_idx = d_model, num_heads, layer_idx
        self.positions, self.rope_base, self.window, self.dropout = positions, rope_base, window, dropout
        self.xpos_gamma, self.xpos_scale_base = float(xpos_gamma), float(xpos_scale_base)
        self.xpos_block = xpos_block_size(self.xpos_gamma, self.xpos_scale_base)  # 1634 at the defaults
        # PyTorch's default Linear init (the paper does not prescribe one)
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
            bias = -self.slopes.to(device)[:, None, None] * dist  # [H, T, T]: -m_h (t - s)
        # masked after the ALiBi term: above the diagonal t - s < 0 would give a positive bias
        return bias.masked_fill(~allowed, float("-inf")).to(dtype)

    def rotate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step (1) with the rotations of rope/xpos (no xPos decay): x [B, T, D] -> q, k, v [B, H, T, d_h]."""
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        if self.positions in ROTARY:  # absolute rotations; q_t·k_s then depends on t - s only
            cos, sin = rope_tables(x.shape[1], q.shape[-1], self.rope_base, x.device, q.dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def xpos_tables(self, queries: torch.Tensor, keys: torch.Tensor, reference: int, dim: int):
        """xPos log-scale tables for query and key positions [Tq], [Tk], counted from `reference`."""
        return tuple(xpos_log_scale(p - reference, dim, self.xpos_gamma, self.xpos_scale_base)
                     for p in (queries, keys))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step (1) with the positions applied: x [B, T, D] -> q, k, v [B, H, T, d_h]; xpos counts
        positions from the centre T // 2 (products (X) do not depend on it)."""
        q, k, v = self.rotate(x)
        if self.positions == "xpos":
            T = x.shape[1]
            t = torch.arange(T, device=x.device)
            q, k = apply_xpos_scale(q, k, self.xpos_tables(t, t, T // 2, q.shape[-1]))
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        bias = self._bias(T, x.device, torch.float32)  # cast to q's dtype where used (autocast)
        p = self.dropout if self.training else 0.0
        if self.positions == "xpos" and T > self.xpos_block:
            o = self._xpos_blocks(x, bias, p)
        else:
            q, k, v = self.project(x)
            bias = None if bias is None else bias.to(q.dtype)
            # eqs. (2)-(3); SDPA scales by 1/√d_h and picks a fused kernel (flash on CUDA without a bias)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, is_causal=bias is None)
        return self.out(rearrange(o, "b h t d -> b t (h d)"))

    def _xpos_blocks(self, x: torch.Tensor, bias: torch.Tensor | None, p: float) -> torch.Tensor:
        """xPos attention for long T: blocks of `xpos_block` queries [a, e) attend to keys [0, e),
        with positions counted from the block's centre, so that no factor product overflows (a far
        key's factor underflows towards 0, as (X) does). Returns o [B, H, T, d_h]."""
        q, k, v = self.rotate(x)
        T, dim, C = x.shape[1], q.shape[-1], int(self.xpos_block)
        t = torch.arange(T, device=x.device)
        outs = []
        for a in range(0, T, C):
            e = min(a + C, T)
            qb, kb = apply_xpos_scale(q[:, :, a:e], k[:, :, :e], self.xpos_tables(t[a:e], t[:e], (a + e) // 2, dim))
            # query block [a, e) against keys [0, e): causal aligned at the bottom-right corner
            mask = causal_lower_right(e - a, e) if bias is None else bias[..., a:e, :e].to(q.dtype)
            outs.append(F.scaled_dot_product_attention(qb, kb, v[:, :, :e], attn_mask=mask, dropout_p=p))
        return torch.cat(outs, dim=2)

    def state_size(self, seq_len: int) -> int:
        """KV cache: 2 · min(seq_len, window) · d_model elements."""
        cached = seq_len if self.window is None else min(seq_len, self.window)
        return 2 * cached * self.d_model
