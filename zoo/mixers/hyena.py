"""Hyena operator (Poli, Massaroli, Nguyen, Fu, Dao, Baccus, Bengio, Ermon, Ré 2023, "Hyena
Hierarchy: Towards Larger Convolutional Language Models", arXiv 2302.10866), §3, Algorithms 1-3.

Order-N Hyena on u ∈ R^{T×d}:

1. Projections, each followed by a short causal depthwise convolution (kernel 3):
       (x^1, .., x^N, v) = ShortConv(u W_in),   W_in ∈ R^{d×(N+1)d}                         (1)
2. Implicit long filters, one per order and channel (Algorithm 1):
       h^n_t = Window(t) ⊙ FFN(PositionalEncoding(t))                                       (2)
   PositionalEncoding(t) = [t, cos(2π f t), -sin(2π f t)] for f in linspace(1e-4, K-1, K) bands
   (emb_dim = 1 + 2K), t = l / l_max; FFN = Linear → sin(ω ·) → (Linear → sin)×inner → Linear;
   Window(t) = exp(-|δ_c| t) + shift with the decay rates δ_c spread linearly over channels so that
   the fastest reaches `target` at t = fast_decay_pct and the slowest at t = slow_decay_pct.
3. The Hyena recurrence (Definition 3.1), with a per-channel bias b^n acting as a skip:
       z^1 = v,   z^{n+1}_t = x^n_t ⊙ ((h^n * z^n)_t + b^n ⊙ z^n_t),   n = 1..N                (3)
   where * is the causal long convolution (h * z)_t = Σ_{s≤t} h_{t-s} z_s, computed with a
   zero-padded FFT (`_fftconv`, Algorithm 3).
4. y = z^{N+1} W_out.                                                                          (4)

The filters are a function of the lag l / l_max only, so they extend to any T (sequences longer
than l_max see the decay window continue). Implicit-filter parameters carry no weight decay.

State at inference: (3) is an LTI convolution as long as the sequence, with no compact recurrence,
so decoding keeps the history of every convolved signal, N·T·d elements, plus the short-conv
buffer (k-1)·(N+1)·d: state_size(T) = N·T·d + (k-1)·(N+1)·d. (Distilling the filters into a
small SSM, as in Massaroli et al. 2023 "Laughing Hyena", would shrink this; not done here.)
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from ._fftconv import fft_causal_conv


class CausalDepthwiseConv(nn.Module):
    """Short causal depthwise convolution along time, channels first: [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, padding=kernel_size - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # padded on both sides; the first T outputs see x[t-k+1 .. t] only
        return self.conv(x)[..., : x.shape[-1]]


class Sin(nn.Module):
    """sin(ω ⊙ x) with a learned frequency per feature (the FFN activation of (2))."""

    def __init__(self, dim: int, freq: float):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(freq)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """The implicit long filter (2) for `channels` channels: `forward(T)` -> h [channels, T]."""

    def __init__(self, channels: int, *, emb_dim: int, filter_order: int, num_inner_mlps: int,
                 sin_freq: float, l_max: int, fast_decay_pct: float, slow_decay_pct: float,
                 target: float, modulation_shift: float):
        super().__init__()
        self.emb_dim, self.l_max, self.modulation_shift = emb_dim, l_max, modulation_shift
        act = Sin(filter_order, sin_freq)  # one activation (one ω) shared by the FFN's layers
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order), act]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(filter_order, filter_order), act]
        layers.append(nn.Linear(filter_order, channels, bias=False))
        self.ffn = nn.Sequential(*layers)
        # decay rates: exp(δ t) = target at t = pct, i.e. δ = ln(target) / pct
        max_decay, min_decay = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, channels), persistent=False)
        for p in self.parameters():
            p._no_weight_decay = True

    def positional_encoding(self, seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """t [T, 1] (= l / l_max) and the encoding z [T, emb_dim]."""
        t = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] / self.l_max
        bands = (self.emb_dim - 1) // 2
        f = torch.linspace(1e-4, bands - 1, bands, device=device)  # frequencies in cycles per l_max
        angle = 2 * math.pi * f * t  # [T, bands]
        return t, torch.cat([t, torch.cos(angle), -torch.sin(angle)], dim=-1)

    def forward(self, seq_len: int) -> torch.Tensor:
        t, z = self.positional_encoding(seq_len, self.deltas.device)
        h = self.ffn(z)  # [T, channels]
        window = torch.exp(-t * self.deltas.abs()) + self.modulation_shift  # [T, channels]
        return (h * window).transpose(0, 1)  # [channels, T]


def check_filter_hparams(owner: str, *, emb_dim: int, filter_order: int, num_inner_mlps: int,
                         l_max: int, fast_decay_pct: float, slow_decay_pct: float, target: float) -> None:
    """ValueErrors for the implicit-filter hyperparameters (shared with m2)."""
    if emb_dim < 3 or emb_dim % 2 == 0:
        raise ValueError(f"{owner}: emb_dim={emb_dim} must be odd and >= 3 ([t, cos, sin] per band)")
    if filter_order < 1 or num_inner_mlps < 0 or l_max < 1:
        raise ValueError(f"{owner}: need filter_order >= 1, num_inner_mlps >= 0, l_max >= 1, got "
                         f"{filter_order}, {num_inner_mlps}, {l_max}")
    if not (0 < fast_decay_pct <= slow_decay_pct and 0 < target < 1):
        raise ValueError(f"{owner}: need 0 < fast_decay_pct <= slow_decay_pct and 0 < target < 1, got "
                         f"{fast_decay_pct}, {slow_decay_pct}, {target}")


class Hyena(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, order: int = 2, short_conv_size: int = 3,
                 emb_dim: int = 33, filter_order: int = 64, num_inner_mlps: int = 2,
                 sin_freq: float = 1.0, l_max: int = 512, fast_decay_pct: float = 0.3,
                 slow_decay_pct: float = 1.5, target: float = 1e-2, modulation_shift: float = 0.0):
        super().__init__()
        if order < 1 or short_conv_size < 1:
            raise ValueError(f"Hyena: need order >= 1 and short_conv_size >= 1, got {order}, {short_conv_size}")
        check_filter_hparams("Hyena", emb_dim=emb_dim, filter_order=filter_order, num_inner_mlps=num_inner_mlps,
                             l_max=l_max, fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct,
                             target=target)
        self.d_model, self.layer_idx, self.order, self.short_conv_size = d_model, layer_idx, order, short_conv_size
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model)
        self.short_conv = CausalDepthwiseConv((order + 1) * d_model, short_conv_size)
        self.filter = HyenaFilter(order * d_model, emb_dim=emb_dim, filter_order=filter_order,
                                  num_inner_mlps=num_inner_mlps, sin_freq=sin_freq, l_max=l_max,
                                  fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct,
                                  target=target, modulation_shift=modulation_shift)
        self.bias = nn.Parameter(torch.randn(order, d_model))  # b^n of (3)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, *, long_conv=fft_causal_conv) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]. `long_conv(u, k)` is the causal convolution of (3) (the tests
        pass `causal_conv_direct` to check the FFT path)."""
        T = x.shape[1]
        z = self.short_conv(self.in_proj(x).transpose(1, 2))  # (1): [B, (N+1)d, T]
        *gates, v = z.split(self.d_model, dim=1)  # x^1..x^N, v: [B, d, T] each
        h = rearrange(self.filter(T), "(n d) t -> n d t", n=self.order)  # (2)
        for n in range(self.order):  # (3)
            v = gates[n] * (long_conv(v, h[n]) + self.bias[n, :, None] * v)
        return self.out_proj(v.transpose(1, 2))  # (4)

    def state_size(self, seq_len: int) -> int:
        history = self.order * seq_len * self.d_model
        return history + (self.short_conv_size - 1) * (self.order + 1) * self.d_model
