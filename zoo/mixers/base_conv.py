"""BaseConv, the gated convolution of Zoology (Arora, Eyuboglu, Timalsina et al. 2023, "Zoology:
measuring and improving recall in efficient language models", arXiv 2312.04927, §4):

    (1) y = (h * u) ⊙ (W u + b)   (+ u with `residual`)

where * is a causal depthwise convolution along time, (h * u)_t[c] = Σ_{i=0}^{t} h_i[c] u_{t-i}[c],
with one of two filters:
- `conv=short`: an explicit kernel of `kernel_size` k taps (h_i = 0 for i ≥ k) plus a bias, run as a
  padded Conv1d. State at inference: the last k-1 inputs, (k-1)·d elements.
- `conv=long`: an implicit filter of length T, h_i = MLP(z_i) ∈ R^d, a small MLP (SiLU) over fixed
  positional features z_i = [cos(ω_j i), sin(ω_j i)]_{j<e} with geometric frequencies
  ω_j = π · P^{-j/(e-1)} (periods 2 .. 2P tokens, P = 4096), in the spirit of Hyena's implicit
  filters (Poli et al. 2023, arXiv 2302.10866). The features are absolute in i, so the filter of a
  prefix is a prefix of the filter. Applied by FFT convolution: u and h zero-padded to 2T, so the
  circular convolution equals the causal linear one on the first T outputs:
      (h * u) = irfft(rfft(u, 2T) · rfft(h, 2T))[:T].
  State at inference: the whole input history, T·d elements.

Zoology's MQAR recipe uses the short form (k = 3) with the residual, alternating with Based
(`conf/model/based_zoology.yaml`).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .based import ShortConv

CONVS = ("short", "long")


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution u [B, T, D], h [T, D] -> [B, T, D], fp32 FFTs of length 2T."""
    T = u.shape[1]
    n = 2 * T                                                    # zero-pad: no wrap-around
    u_f = torch.fft.rfft(u.float(), n=n, dim=1)                  # [B, T+1, D]
    h_f = torch.fft.rfft(h.float(), n=n, dim=0)                  # [T+1, D]
    return torch.fft.irfft(u_f * h_f, n=n, dim=1)[:, :T].to(u.dtype)


class ImplicitFilter(nn.Module):
    """h_i = MLP(z_i), i = 0..T-1: positional features [T, 2e] -> filter [T, D]."""

    MAX_PERIOD = 4096.0

    def __init__(self, d_model: int, num_features: int, hidden: int):
        super().__init__()
        e = num_features // 2
        freqs = math.pi * self.MAX_PERIOD ** (-torch.arange(e) / max(e - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * e, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, d_model))

    def forward(self, T: int) -> torch.Tensor:
        angle = torch.arange(T, device=self.freqs.device, dtype=torch.float32)[:, None] * self.freqs
        z = torch.cat([angle.cos(), angle.sin()], dim=-1)      # [T, 2e]
        return self.mlp(z.to(self.mlp[0].weight.dtype))         # [T, D]


class BaseConv(nn.Module):
    """y = conv(u) ⊙ (W u + b) (+ u); `forward(u [B, T, D]) -> [B, T, D]`.

    Parameters: projection D² + D; short conv k·D + D; long filter MLP
    (2e·h + h) + (h² + h) + (h·D + D) with e = filter_features // 2, h = filter_hidden."""

    def __init__(self, d_model: int, *, layer_idx: int, conv: Literal["short", "long"] = "short",
                 kernel_size: int = 3, filter_features: int = 16, filter_hidden: int = 32,
                 residual: bool = True):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"BaseConv(conv={conv!r}): expected one of {CONVS}")
        if kernel_size < 1:
            raise ValueError(f"BaseConv: kernel_size must be >= 1, got {kernel_size}")
        if filter_features < 2 or filter_features % 2 or filter_hidden < 1:
            raise ValueError(f"BaseConv: filter_features must be even and >= 2 and filter_hidden >= 1, "
                             f"got {filter_features}, {filter_hidden}")
        self.d_model, self.layer_idx, self.conv_kind, self.kernel_size = d_model, layer_idx, conv, kernel_size
        self.residual = residual
        self.projection = nn.Linear(d_model, d_model)
        if conv == "short":
            self.conv = ShortConv(d_model, kernel_size)
        else:
            self.filter = ImplicitFilter(d_model, filter_features, filter_hidden)

    def convolve(self, u: torch.Tensor) -> torch.Tensor:
        """h * u for u [B, T, D]."""
        if self.conv_kind == "short":
            return self.conv(u)
        return fft_causal_conv(u, self.filter(u.shape[1]))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = self.convolve(u) * self.projection(u)                # eq. (1)
        return y + u if self.residual else y

    def state_size(self, seq_len: int) -> int:
        """short: (kernel_size - 1)·d_model; long: seq_len·d_model (the whole input history)."""
        if self.conv_kind == "short":
            return (self.kernel_size - 1) * self.d_model
        return seq_len * self.d_model
