"""Mamba-2 (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality", arXiv 2405.21060): the SSD layer in the parallel Mamba-2
block (§7.1, Fig. 6).

With E = expand · d_model inner channels, H = E / P heads of size P (headdim), state size N and
G groups of (B, C) shared by H / G heads each:

    (z, x, B, C, dt) = in_proj(u)          one parallel projection (§7.1): z, x ∈ R^E, B, C ∈ R^{G×N}, dt ∈ R^H
    (x, B, C) = SiLU(conv1d_causal(x, B, C))   depthwise, kernel d_conv
    Δ_t = softplus(dt_t + dt_bias),  A = −exp(A_log)       one scalar A per head
    h_t = exp(Δ_t A) h_{t-1} + B_t (Δ_t x_t)ᵀ     h ∈ R^{N×P} per head     (SSM recurrence, §3)
    y_t = h_tᵀ C_t + D x_t                                                 (A = scalar · I: the SSD case, §5)
    out = out_proj(RMSNorm(y ⊙ SiLU(z)))      gated norm before the output projection (§7.1)

The SSD part is causal linear attention with a scalar decay per head, computed by
`kernels.chunked_linear_attention(q=C, k=B, v=Δ·x, log_decay=Δ·A, scale=1)`: with g_t = Δ_t A ≤ 0,
y_t = Σ_{s≤t} (C_t · B_s) exp(g_{s+1} + … + g_t) Δ_s x_s, the semiseparable matrix form (§3).

Initialisation as Mamba: dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 0.1]; D = 1. A per head
uniform in [1, 16] (the range used by the authors' Mamba-2 models), stored as A_log. dt_bias, A_log,
D are excluded from weight decay. The gated RMSNorm runs over all E channels (one group).

State at inference, per layer: H·P·N for the SSM states plus the conv buffer over (x, B, C):
state_size = H·P·N + (d_conv − 1)·(E + 2·G·N).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

import kernels
from .mamba import inverse_softplus, sample_dt


class Mamba2(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, d_state: int = 64, d_conv: int = 4,
                 expand: int = 2, headdim: int = 64, ngroups: int = 1, dt_min: float = 1e-3,
                 dt_max: float = 0.1, A_init_range: tuple[float, float] = (1.0, 16.0),
                 conv_bias: bool = True, bias: bool = False, norm_eps: float = 1e-5):
        super().__init__()
        E = expand * d_model
        for name, value in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand),
                            ("headdim", headdim), ("ngroups", ngroups)):
            if value < 1:
                raise ValueError(f"Mamba2: {name}={value} must be >= 1")
        if E % headdim:
            raise ValueError(f"Mamba2: expand*d_model={E} is not divisible by headdim={headdim}; "
                             f"pick a headdim dividing {E}")
        H = E // headdim
        if H % ngroups:
            raise ValueError(f"Mamba2: nheads={H} is not divisible by ngroups={ngroups}; pick a "
                             f"divisor of {H}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba2: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        lo, hi = A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"Mamba2: A_init_range={A_init_range!r} must satisfy 0 < lo <= hi")
        self.d_model, self.layer_idx, self.d_state, self.d_conv = d_model, layer_idx, d_state, d_conv
        self.expand, self.headdim, self.ngroups = expand, headdim, ngroups
        self.d_inner, self.nheads = E, H
        self.conv_dim = E + 2 * ngroups * d_state  # channels of (x, B, C)

        self.in_proj = nn.Linear(d_model, 2 * E + 2 * ngroups * d_state + H, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias)
        self.dt_bias = nn.Parameter(inverse_softplus(sample_dt(H, dt_min, dt_max)))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(lo, hi)))
        self.D = nn.Parameter(torch.ones(H))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = nn.RMSNorm(E, eps=norm_eps)
        self.out_proj = nn.Linear(E, d_model, bias=bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        Bsz, T, _ = u.shape
        E, G, N, H = self.d_inner, self.ngroups, self.d_state, self.nheads
        # one parallel projection: z [B, T, E], (x, B, C) [B, T, E + 2GN], dt [B, T, H]
        z, xBC, dt = self.in_proj(u).split([E, self.conv_dim, H], dim=-1)
        # causal depthwise conv over time: [B, T, C] -> [B, C, T] -> first T outputs -> [B, T, C]
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2))
        x, Bm, Cm = xBC.split([E, G * N, G * N], dim=-1)
        x = rearrange(x, "b t (h p) -> b t h p", h=H)  # [B, T, H, P]
        # groups -> heads: head h uses group h // (H / G)
        Bm = repeat(Bm, "b t (g n) -> b t (g r) n", g=G, r=H // G)
        Cm = repeat(Cm, "b t (g n) -> b t (g r) n", g=G, r=H // G)
        dt = F.softplus(dt + self.dt_bias)  # Δ: [B, T, H]
        A = -torch.exp(self.A_log.float())  # [H]
        v = (x * dt[..., None]).to(x.dtype)  # Δ_t x_t (dt is fp32 under autocast)
        y = kernels.chunked_linear_attention(Cm, Bm, v, log_decay=dt.float() * A, scale=1.0)
        y = y + self.D[:, None] * x  # D skip, per head; y [B, T, H, P]
        y = rearrange(y, "b t h p -> b t (h p)")
        # gated RMSNorm: normalise y ⊙ SiLU(z) (the gate before the norm, §7.1)
        return self.out_proj(self.norm(y * F.silu(z)))

    def state_size(self, seq_len: int) -> int:
        """H·P·N (SSM states) + (d_conv − 1)·(E + 2·G·N) (conv buffer over x, B, C)."""
        return self.nheads * self.headdim * self.d_state + (self.d_conv - 1) * self.conv_dim
