"""Monarch Mixer, M2 (Fu, Arora, Grogan, Johnson, Eyuboglu, Thomas, Spector, Poli, Rudra, Ré 2023,
"Monarch Mixer: A Simple Sub-Quadratic GEMM-Based Architecture", arXiv 2310.12109).

Monarch matrices (Dao et al. 2022): M = P L Pᵀ R with L, R block-diagonal and P the "reshape
[b, q] -> transpose -> flatten" permutation; a product of two batched GEMMs, O(n^{3/2}) for b = √n.
M2 uses them along both axes:

1. Sequence mixing, causal (M2 §5 / M2-GPT): a gated long convolution, the data path of M2-BERT's
   sequence mixer (Hyena order 2 with an input gate):
       (x1, x2, v) = ShortConv(M_in u),  M_in: a Monarch map d -> 3d                       (1)
       z = x1 ⊙ v,   s = x2 ⊙ ((h * z) + b ⊙ z)                                             (2)
   with h the implicit long filter of Hyena (see `hyena.py`). The causal convolution h * z is
   evaluated as polynomial multiplication: zero-pad both signals to n = m² >= 2T, transform with the
   Monarch factorisation of the DFT, multiply pointwise, transform back, keep the first T (§5:
   causality from zero-padding; no wrap-around since n >= 2T):
       h * z = [F_n^{-1} ((F_n pad(h)) ⊙ (F_n pad(z)))]_{:T}                               (3)
       F_n = P_out (I_m ⊗ F_m) Tw (I_m ⊗ F_m) P_in   (Cooley-Tukey, n = m·m)               (4)
   P_in reads x[m j1 + j2] into an m×m grid, (I_m ⊗ F_m) are block-diagonal DFT blocks of size m =
   ⌈√(2T)⌉ (one GEMM each), Tw is the diagonal of twiddle factors ω_n^{j2 k1}, and P_out writes
   X[k1 + m k2]. The factors are fixed (exact DFT), as in M2-BERT/M2-GPT.
2. Dimension mixing: a Monarch MLP replaces the dense maps, y = M_4 GELU(M_3 s)            (5)
   (the paper's M2 layer formula); M_3: d -> r·d, M_4: r·d -> d.

Simplifications (documented for the lead): the sequence mixer's dense output projection and the
separate MLP block of M2-BERT are merged into the Monarch MLP (5) inside this one mixer (use
`state_mixer: none`; the backbone's residual wraps the whole layer); the filter is Hyena's implicit
filter, as M2-BERT/GPT use; (3)-(4) use complex GEMMs rather than M2's real-valued fused kernels.

State at inference: like Hyena, the long convolution (2) has no compact recurrence, so decoding keeps
the history of z, T·d elements, plus the short-conv buffer (k-1)·3d:
state_size(T) = T·d + (k-1)·3·d.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .hyena import CausalDepthwiseConv, HyenaFilter, check_filter_hparams


class MonarchLinear(nn.Module):
    """y = P L Pᵀ R x + bias: R has b blocks (d_in/b -> d_out/b), L has b blocks (d_out/b -> d_out/b).

    Parameters: d_in·d_out/b + d_out²/b (+ d_out bias) instead of d_in·d_out."""

    def __init__(self, d_in: int, d_out: int, nblocks: int, bias: bool = True):
        super().__init__()
        if d_in % nblocks or d_out % nblocks:
            raise ValueError(f"MonarchLinear: nblocks={nblocks} must divide d_in={d_in} and d_out={d_out}")
        self.nblocks = nblocks
        p, q = d_in // nblocks, d_out // nblocks
        # R preserves the variance (std 1/√fan_in); L is initialised like nn.Linear, so the product
        # starts at the scale of a dense nn.Linear layer
        self.R = nn.Parameter(torch.randn(nblocks, p, q) / math.sqrt(p))
        self.L = nn.Parameter(torch.empty(nblocks, q, q).uniform_(-1 / math.sqrt(q), 1 / math.sqrt(q)))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.nblocks
        x = rearrange(x, "... (b p) -> ... b p", b=b)
        x = torch.einsum("...bp,bpq->...bq", x, self.R)  # block-diagonal R
        x = rearrange(x, "... b q -> ... (q b)")  # Pᵀ: read the [b, q] grid column by column
        x = rearrange(x, "... (b q) -> ... b q", b=b)  # regroup into L's b blocks: each sees every R block
        x = torch.einsum("...bq,bqr->...br", x, self.L)  # block-diagonal L
        x = rearrange(x, "... b q -> ... (b q)")
        x = rearrange(x, "... (q b) -> ... (b q)", b=b)  # P = (Pᵀ)^{-1}: undo the transposition
        return x if self.bias is None else x + self.bias

    def dense(self) -> torch.Tensor:
        """The equivalent dense matrix W [d_out, d_in] (y = W x + bias), for tests."""
        eye = torch.eye(self.R.shape[0] * self.R.shape[1], device=self.R.device)
        W = self.forward(eye)
        return (W if self.bias is None else W - self.bias).t()


def monarch_dft(x: torch.Tensor, m: int, inverse: bool = False) -> torch.Tensor:
    """DFT (or inverse DFT) of length n = m² along the last dim by the Monarch factorisation (4).

    x: [..., n] complex -> [..., n] complex; equals torch.fft.fft (ifft with inverse=True)."""
    n = m * m
    sign = 1.0 if inverse else -1.0
    idx = torch.arange(m, device=x.device, dtype=torch.float32)
    F_m = torch.polar(torch.ones(m, m, device=x.device), sign * 2 * math.pi * torch.outer(idx, idx) / m)
    twiddle = torch.polar(torch.ones(m, m, device=x.device), sign * 2 * math.pi * torch.outer(idx, idx) / n)
    X = x.reshape(*x.shape[:-1], m, m)  # P_in: X[j1, j2] = x[m j1 + j2]
    X = F_m @ X  # (I_m ⊗ F_m) over j1 -> [k1, j2]
    X = X * twiddle  # Tw: ω_n^{k1 j2}
    X = X @ F_m  # (I_m ⊗ F_m) over j2 -> [k1, k2] (F_m is symmetric)
    X = X.transpose(-1, -2).reshape(*x.shape[:-1], n)  # P_out: out[k1 + m k2] = X[k1, k2]
    return X / n if inverse else X


def monarch_size(seq_len: int) -> int:
    """m, the Monarch block size: the smallest m with m² >= 2·seq_len (no wrap-around in (3))."""
    return math.isqrt(2 * seq_len - 1) + 1


def monarch_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution (h * z)_t = Σ_{s≤t} k_{t-s} u_s by (3) with Monarch DFTs (4).

    u: [..., T] real; k: [..., T' >= T] broadcastable. Returns [..., T] in u's dtype (fp32 inside)."""
    T = u.shape[-1]
    m = monarch_size(T)
    n = m * m
    u_f = monarch_dft(F.pad(u.float(), (0, n - T)).to(torch.complex64), m)
    k_f = monarch_dft(F.pad(k[..., :T].float(), (0, n - T)).to(torch.complex64), m)
    return monarch_dft(u_f * k_f, m, inverse=True).real[..., :T].to(u.dtype)


class M2(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, nblocks: int = 4, mlp_ratio: int = 4,
                 short_conv_size: int = 3, emb_dim: int = 33, filter_order: int = 64,
                 num_inner_mlps: int = 2, sin_freq: float = 1.0, l_max: int = 512,
                 fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2,
                 modulation_shift: float = 0.0):
        super().__init__()
        if nblocks < 1 or d_model % nblocks:
            raise ValueError(f"M2: nblocks={nblocks} must divide d_model={d_model} (paper: nblocks ≈ √d_model)")
        if mlp_ratio < 1 or short_conv_size < 1:
            raise ValueError(f"M2: need mlp_ratio >= 1 and short_conv_size >= 1, got {mlp_ratio}, {short_conv_size}")
        check_filter_hparams("M2", emb_dim=emb_dim, filter_order=filter_order, num_inner_mlps=num_inner_mlps,
                             l_max=l_max, fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct,
                             target=target)
        self.d_model, self.layer_idx, self.short_conv_size = d_model, layer_idx, short_conv_size
        self.in_proj = MonarchLinear(d_model, 3 * d_model, nblocks)
        self.short_conv = CausalDepthwiseConv(3 * d_model, short_conv_size)
        self.filter = HyenaFilter(d_model, emb_dim=emb_dim, filter_order=filter_order,
                                  num_inner_mlps=num_inner_mlps, sin_freq=sin_freq, l_max=l_max,
                                  fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct,
                                  target=target, modulation_shift=modulation_shift)
        self.bias = nn.Parameter(torch.randn(d_model))  # b of (2)
        self.mlp_in = MonarchLinear(d_model, mlp_ratio * d_model, nblocks)
        self.mlp_out = MonarchLinear(mlp_ratio * d_model, d_model, nblocks)

    def forward(self, x: torch.Tensor, *, long_conv=monarch_causal_conv) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]. `long_conv` is the causal convolution of (2); the tests pass
        the torch.fft version to check the Monarch one."""
        T = x.shape[1]
        z = self.short_conv(self.in_proj(x).transpose(1, 2))  # (1): [B, 3d, T]
        x1, x2, v = z.split(self.d_model, dim=1)  # [B, d, T] each
        z = x1 * v
        s = x2 * (long_conv(z, self.filter(T)) + self.bias[:, None] * z)  # (2)
        return self.mlp_out(F.gelu(self.mlp_in(s.transpose(1, 2))))  # (5)

    def state_size(self, seq_len: int) -> int:
        return seq_len * self.d_model + (self.short_conv_size - 1) * 3 * self.d_model
