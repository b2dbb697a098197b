"""Multi-head Hyena (Massaroli, Poli, Fu et al. 2023, "Laughing Hyena Distillery: Extracting Compact
Recurrences From Convolutions", arXiv 2310.18780, "MultiHyena"; the MH-Hyena of MAD, Poli, Thomas,
Nguyen et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures", arXiv 2403.17844).

An order-2 Hyena (hyena.py) whose long filters are tied across the channels of a head and whose two
gates act through an outer product, which makes it a linear attention with a long-convolution decay.
On u ∈ R^{T×D}, with H heads of N = D/H channels:

1. Projections with a short causal depthwise convolution (kernel 3), split into heads:
       (q, k, v) = ShortConv(u W_in),   W_in ∈ R^{D×3D};   q^h_t, k^h_t, v^h_t ∈ R^N           (1)
2. One implicit long filter per head, Hyena's (2) with H channels, and one bias b^h per head:
       h^h_t = Window(t) ⊙ FFN(PositionalEncoding(t))                                          (2)
3. Each of the N² entries of the outer product k^h_s (v^h_s)ᵀ is convolved with the head's filter:
       z^h_t = Σ_{s≤t} h^h_{t-s} k^h_s (v^h_s)ᵀ + b^h k^h_t (v^h_t)ᵀ  ∈ R^{N×N}                  (3)
4. and contracted with the query:
       y^h_t = (z^h_t)ᵀ q^h_t = Σ_{s≤t} h^h_{t-s} (q^h_t·k^h_s) v^h_s + b^h (q^h_t·k^h_t) v^h_t     (4)
   i.e. linear attention whose "decay" is the learned filter h^h_{t-s} (Hyena's D_q T_h D_k, per
   head, with the N×N state of linear attention). (3) is computed with the zero-padded FFT
   (`_fftconv`), O(B·D·N·T log T); the right-hand side of (4) is the O(T²) reference of the tests.
5. y = [y^1, …, y^H] W_out.                                                                     (5)

Which projection is called q, k or v is a convention (all three are learned and symmetric in (1));
MAD's code (athms/mad-lab) forms the outer product of its 3rd and 2nd projections and contracts
with its 1st. Its `num_heads` argument is the per-head width N of the outer product, not H: its
MH-Hyena "16 heads" at width 128 is H = 8 heads of N = 16 (state H·N² = 2048 per layer, 4096 over
MAD's two mixer layers, the "total state normalised to 4096"); here `num_heads` is H. MAD also ties
W_in in 4 groups (proj_groups) and uses a 2-wide filter FFN with emb_dim 3; here W_in is dense and
the filter is hyena.py's, configured in conf/model/mh_hyena.yaml.

State at inference, counted like hyena.py (the history an LTI convolution without a compact
recurrence must keep for decoding): (4) needs every past k^h_s and v^h_s (the outer products need
not be stored: (q_t·k_s) v_s is formed on the fly, as in attention's KV cache), 2·T·D elements,
plus the short-conv buffer (k-1)·3D: state_size(T) = 2·T·D + (k-1)·3D. (A filter distilled into an
SSM of order d per head, as in Laughing Hyena, would instead carry H·N²·d.)
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._fftconv import fft_causal_conv
from .hyena import CausalDepthwiseConv, HyenaFilter, check_filter_hparams


class MHHyena(nn.Module):
    """Multi-head Hyena; `forward(x [B, T, D]) -> [B, T, D]`.

    Hyperparameters: `num_heads` H (head width N = D/H); `short_conv_size` (k of (1)); the implicit
    filter's `emb_dim`, `filter_order`, `num_inner_mlps`, `sin_freq`, `l_max`, `fast_decay_pct`,
    `slow_decay_pct`, `target`, `modulation_shift` (hyena.py). Parameters: W_in 3D² + 3D, short conv
    3D·k + 3D, filter FFN (H outputs), biases H, W_out D² + D."""

    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 8, short_conv_size: int = 3,
                 emb_dim: int = 33, filter_order: int = 64, num_inner_mlps: int = 2,
                 sin_freq: float = 1.0, l_max: int = 512, fast_decay_pct: float = 0.3,
                 slow_decay_pct: float = 1.5, target: float = 1e-2, modulation_shift: float = 0.0):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"MHHyena: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if short_conv_size < 1:
            raise ValueError(f"MHHyena: short_conv_size={short_conv_size} must be >= 1")
        check_filter_hparams("MHHyena", emb_dim=emb_dim, filter_order=filter_order,
                             num_inner_mlps=num_inner_mlps, l_max=l_max, fast_decay_pct=fast_decay_pct,
                             slow_decay_pct=slow_decay_pct, target=target)
        self.d_model, self.layer_idx, self.num_heads = d_model, layer_idx, num_heads
        self.short_conv_size = short_conv_size
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.short_conv = CausalDepthwiseConv(3 * d_model, short_conv_size)
        # one filter per head (H channels); decay rates spread over the heads as Hyena spreads them
        # over channels, so heads span short to long memories
        self.filter = HyenaFilter(num_heads, emb_dim=emb_dim, filter_order=filter_order,
                                  num_inner_mlps=num_inner_mlps, sin_freq=sin_freq, l_max=l_max,
                                  fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct,
                                  target=target, modulation_shift=modulation_shift)
        self.bias = nn.Parameter(torch.randn(num_heads))  # b^h of (3), Hyena's init
        self.out_proj = nn.Linear(d_model, d_model)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step (1): x [B, T, D] -> q, k, v [B, H, N, T] (channels first, as the long conv wants)."""
        z = self.short_conv(self.in_proj(x).transpose(1, 2))  # [B, 3D, T]
        return tuple(rearrange(p, "b (h n) t -> b h n t", h=self.num_heads) for p in z.split(self.d_model, dim=1))

    def forward(self, x: torch.Tensor, *, long_conv=fft_causal_conv) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]. `long_conv(u, k)` is the causal convolution of (3) (the tests
        pass `causal_conv_direct` to check the FFT path)."""
        q, k, v = self.heads(x)
        h = self.filter(x.shape[1])  # (2): [H, T]
        kv = k[:, :, :, None, :] * v[:, :, None, :, :]  # k_s v_sᵀ: [B, H, N(k), N(v), T]
        z = long_conv(kv, h[:, None, None, :]) + self.bias[:, None, None, None] * kv  # (3)
        y = (z * q[:, :, :, None, :]).sum(dim=2)  # (4): contract the k index with q -> [B, H, N, T]
        return self.out_proj(rearrange(y, "b h n t -> b t (h n)"))  # (5)

    def state_size(self, seq_len: int) -> int:
        """History of k and v, 2·T·D, plus the short-conv buffer (k-1)·3D (module docstring)."""
        return 2 * seq_len * self.d_model + (self.short_conv_size - 1) * 3 * self.d_model
