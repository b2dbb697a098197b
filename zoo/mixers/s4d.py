"""S4D, the diagonal structured state space model (Gu, Gupta, Goel, Ré 2022, "On the
Parameterization and Initialization of Diagonal State Space Models", arXiv 2206.11893).

Each of the d_model channels runs its own linear time-invariant SSM with a complex diagonal state
matrix A ∈ C^{N/2} (conjugate pairs, so N real state numbers per channel):

    x'(t) = A x(t) + B u(t),   y(t) = C x(t) + D u(t)                                   (1)

ZOH discretisation with a learned step Δ = exp(log Δ) (one per channel):

    Ā = exp(ΔA),   B̄ = (ΔA)^{-1} (exp(ΔA) - I) ΔB = (exp(ΔA) - 1) / A · B              (2)
    x_t = Ā x_{t-1} + B̄ u_t,   y_t = 2 Re(C x_t) + D u_t                               (3)

Unrolled, (3) is the causal convolution y = K * u + D u with the kernel (the Vandermonde product)

    K_l = 2 Re( Σ_{n<N/2} C_n B̄_n Ā_n^l ),   l = 0 .. T-1                               (4)

computed here in parallel and applied with a zero-padded FFT (`_fftconv`, length 2T: no wrap).
S4D-Lin initialisation: A_n = -1/2 + iπn, B_n = 1 (fixed, folded into C as the paper's minimal
listing does), C_n ~ CN(0, 1), log Δ ~ U[log Δ_min, log Δ_max], D ~ N(0, 1).
Layer output (the paper's S4 block): GELU(y), then a position-wise linear map, `glu`:
Linear(d, 2d) + GLU (the S4/S4D default) or `linear`: Linear(d, d).

State at inference: x_t, N/2 complex numbers per channel, counted as N real elements:
state_size = d_model · N.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._fftconv import fft_causal_conv

OUTPUTS = ("glu", "linear")


class S4DKernel(nn.Module):
    """S4D-Lin diagonal SSM for `channels` independent channels, N = d_state real state numbers
    (N/2 complex modes) each. `forward(T)` gives the kernel (4), [channels, T]."""

    def __init__(self, channels: int, d_state: int, dt_min: float, dt_max: float):
        super().__init__()
        n_modes = d_state // 2
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        # A = -exp(log_A_real) + i A_imag keeps Re(A) < 0 (a stable SSM) for any learned value
        self.log_A_real = nn.Parameter(torch.full((channels, n_modes), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n_modes).float().repeat(channels, 1))
        # C ~ CN(0, 1): real and imaginary parts N(0, 1/2), stored as [..., 2] reals
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, n_modes, dtype=torch.cfloat)))
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._no_weight_decay = True  # the SSM's dynamics (S4: no weight decay on A and Δ)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ΔA, Ā, B̄, C), each [channels, N/2] complex, by (2) with B = 1."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = A * torch.exp(self.log_dt)[:, None]
        A_bar = torch.exp(dtA)
        return dtA, A_bar, (A_bar - 1.0) / A, torch.view_as_complex(self.C)

    def forward(self, seq_len: int) -> torch.Tensor:
        dtA, _, B_bar, C = self.discretize()
        l = torch.arange(seq_len, device=dtA.device)
        vandermonde = torch.exp(dtA[:, :, None] * l)  # [channels, N/2, T]: Ā_n^l = exp(l ΔA_n)
        return 2.0 * torch.einsum("cn,cnl->cl", C * B_bar, vandermonde).real  # (4)

    def recurrence(self, u: torch.Tensor) -> torch.Tensor:
        """The step-by-step SSM (3) without the D term, a plain loop over t: u [..., channels, T]
        -> y [..., channels, T]. The definition the FFT path must reproduce (tests only)."""
        _, A_bar, B_bar, C = self.discretize()
        state = torch.zeros(*u.shape[:-1], A_bar.shape[-1], dtype=A_bar.dtype, device=u.device)
        ys = []
        for t in range(u.shape[-1]):
            state = A_bar * state + B_bar * u[..., t, None]  # x_t = Ā x_{t-1} + B̄ u_t
            ys.append(2.0 * (C * state).sum(-1).real)  # y_t = 2 Re(C x_t)
        return torch.stack(ys, dim=-1)


class S4D(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, output: Literal["glu", "linear"] = "glu"):
        super().__init__()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"S4D: d_state={d_state} must be even and >= 2 (N/2 complex conjugate pairs)")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"S4D: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if output not in OUTPUTS:
            raise ValueError(f"S4D(output={output!r}): expected one of {OUTPUTS}")
        self.d_model, self.layer_idx, self.d_state, self.output = d_model, layer_idx, d_state, output
        self.kernel = S4DKernel(d_model, d_state, dt_min, dt_max)
        self.D = nn.Parameter(torch.randn(d_model))
        self.out = nn.Linear(d_model, 2 * d_model if output == "glu" else d_model)

    def _readout(self, y: torch.Tensor) -> torch.Tensor:
        """GELU, then the position-wise output map; y [B, T, D] -> [B, T, D]."""
        y = self.out(F.gelu(y))
        return F.glu(y, dim=-1) if self.output == "glu" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        u = x.transpose(1, 2)  # [B, D, T]: convolve along the last dim
        y = fft_causal_conv(u, self.kernel(T)) + self.D[:, None] * u  # (3) as y = K * u + D u
        return self._readout(y.transpose(1, 2))

    def recurrent_reference(self, x: torch.Tensor) -> torch.Tensor:
        """forward() by the step-by-step recurrence (3), a plain loop over t (tests)."""
        u = x.transpose(1, 2)  # [B, D, T]
        y = self.kernel.recurrence(u) + self.D[:, None] * u
        return self._readout(y.transpose(1, 2))

    def state_size(self, seq_len: int) -> int:
        return self.d_model * self.d_state  # N/2 complex numbers = N reals per channel
