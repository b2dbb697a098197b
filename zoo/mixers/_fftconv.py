"""Causal long convolution, shared by the LTI mixers (s4d, h3, hyena, m2).

    y_t = Σ_{s=0}^{t} k_{t-s} u_s,      t = 0 .. T-1                                  (1)

`fft_causal_conv` computes (1) in O(T log T) by zero-padding both signals to n ≥ 2T, so that the
circular convolution of length n equals the linear one on its first T outputs (no wrap-around):

    y = irfft(rfft(u, n) · rfft(k, n), n)[:T]                                         (2)

`causal_conv_direct` is the O(T²) definition (1) as a Toeplitz matrix product: the reference the
tests compare against, forward and backward.
"""
from __future__ import annotations

import torch


def fft_size(seq_len: int) -> int:
    """The padded FFT length for (2): the next power of two >= 2·seq_len (fast on every backend)."""
    return 1 << (2 * seq_len - 1).bit_length()


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution (1) along the last dim via (2).

    u: [..., T] real; k: [..., T'] (T' >= T, only k[..., :T] is used) broadcastable against u.
    Returns [..., T] in u's dtype. The FFTs run in fp32 (cuFFT has no bf16 for arbitrary sizes, and
    long sums in half precision lose the small tail of the filter)."""
    T = u.shape[-1]
    if k.shape[-1] < T:
        raise ValueError(f"fft_causal_conv: kernel length {k.shape[-1]} < sequence length {T}")
    n = fft_size(T)
    u_f = torch.fft.rfft(u.float(), n=n)
    k_f = torch.fft.rfft(k[..., :T].float(), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :T]
    return y.to(u.dtype)


def causal_conv_direct(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Reference for (1): the lower-triangular Toeplitz matrix K[t, s] = k[t - s] (s <= t) times u.

    Same shapes as `fft_causal_conv`; O(T²) memory, tests only."""
    T = u.shape[-1]
    t = torch.arange(T, device=u.device)
    lag = t[:, None] - t[None, :]  # [T, T], t - s
    toeplitz = k[..., lag.clamp(min=0)] * (lag >= 0)  # [..., T, T]
    return (toeplitz @ u.unsqueeze(-1)).squeeze(-1)


__all__ = ["fft_size", "fft_causal_conv", "causal_conv_direct"]
