"""RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era", arXiv 2305.13048):
time mixing and, optionally, channel mixing (§3.1), as in Zoology Fig. 2. Equation numbers follow
the paper's §3.1 (token shift 11-15, WKV 16, output gating 17-18).

Token shift: every projection sees an interpolation of x_t and x_{t−1} with learned μ ∈ R^d.

    r_t = W_r (μ_r ⊙ x_t + (1 − μ_r) ⊙ x_{t−1})                                      (11)
    k_t = W_k (μ_k ⊙ x_t + (1 − μ_k) ⊙ x_{t−1})                                      (12)
    v_t = W_v (μ_v ⊙ x_t + (1 − μ_v) ⊙ x_{t−1})                                      (13)
    wkv_t = (Σ_{i<t} e^{−(t−1−i)w + k_i} v_i + e^{u + k_t} v_t)
          / (Σ_{i<t} e^{−(t−1−i)w + k_i}     + e^{u + k_t})          per channel     (16)
    o_t = W_o (σ(r_t) ⊙ wkv_t)                                                        (17)
Channel mixing (channel_mix=true), with x' the time-mixed stream:
    r'_t = W'_r (μ'_r ⊙ x'_t + (1 − μ'_r) ⊙ x'_{t−1})                                 (14)
    k'_t = W'_k (μ'_k ⊙ x'_t + (1 − μ'_k) ⊙ x'_{t−1})                                 (15)
    o'_t = σ(r'_t) ⊙ W'_v max(k'_t, 0)²                                              (18)

w = exp(time_decay) > 0 is the per-channel decay, u = time_first the bonus of the current token.
WKV is a per-channel softmax over i ≤ t of the logits ℓ_{t,i} = k_i − (t−1−i)w (i < t), u + k_t (i = t),
so it is computed in log space, chunked (`wkv`): exact softmax inside chunks of 16 tokens, and
between chunks the max-rescaled (numerator, denominator) summaries carried by
`kernels.linear_recurrence`. No exponent ever exceeds 0, so large k cannot overflow.

Block: the backbone gives the mixer x = LN₁(x_res) and adds its output to the residual. With
channel_mix=true the mixer returns o + o'(LN₂(x + o)), so model=rwkv (state_mixer: none) is the
RWKV-4 block except that the channel mix's inner residual starts from LN₁(x_res), not x_res.

Init (the mixer does not know the depth, so the RWKV-4 release's layer-0 ratios are used): with
ρ_i = i/d, μ_k = μ_v = μ'_k = μ'_r = ρ_i, μ_r = ρ_i^{0.5}; time_decay_i = −5 + 8 (i/(d−1))^{0.7};
u_i = ln 0.3 + 0.5·((i+1) mod 3 − 1). μ's, time_decay and time_first are not weight-decayed.

State at inference, per layer and channel (the paper's five-element RNN state): numerator a,
denominator b and their shared exponent p (the stable form), the time mix's token-shift buffer
x_{t−1} and the channel mix's x'_{t−1}: state_size = 4·d (time mix) + d (channel_mix=true).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import kernels

CHUNK = 16  # intra-chunk exact softmax: memory B·T·CHUNK·d


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """x_{t−1} for x [B, T, D] (zeros at t = 0)."""
    return F.pad(x, (0, 0, 1, -1))


def wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        chunk: int = CHUNK) -> torch.Tensor:
    """RWKV-4's WKV operator (eq. 16), log-space and chunked. w > 0, u: [D]; k, v: [B, T, D].

    Returns wkv [B, T, D] in v's dtype; fp32 inside. Differentiable in w, u, k, v."""
    dtype = v.dtype
    w, u, k, v = w.float(), u.float(), k.float(), v.float()
    B, T, D = k.shape
    C = chunk
    n = -(-T // C)
    pad = n * C - T  # padding at the end only reaches outputs beyond T
    k = F.pad(k, (0, 0, 0, pad)).view(B, n, C, D)
    v = F.pad(v, (0, 0, 0, pad)).view(B, n, C, D)
    tau = torch.arange(C, device=k.device, dtype=torch.float32)

    # 1. intra-chunk logits ℓ[t, i] = k_i − (t−1−i)w (i < t), u + k_t (i = t), −∞ (i > t)
    lag = (tau[:, None] - 1 - tau[None, :])[..., None]                       # [C, C, 1]: t−1−i
    logits = k[:, :, None, :, :] - lag * w                                   # [B, n, C(t), C(i), D]
    eye = torch.eye(C, dtype=torch.bool, device=k.device)[..., None]
    logits = torch.where(eye, (u + k)[:, :, :, None, :], logits)
    logits = logits.masked_fill((lag < -1), float("-inf"))                   # i > t

    # 2. chunk summaries: s_c = Σ_{i∈c} e^{k_i − (C−1−i)w − m_c} [v_i, 1], m_c their max exponent
    to_end = k - (C - 1 - tau)[:, None] * w                                  # [B, n, C, D]
    m = to_end.amax(dim=2).detach()                                          # [B, n, D]
    e = torch.exp(to_end - m[:, :, None])
    s = torch.cat([(e * v).sum(2), e.sum(2)], dim=-1)                        # [B, n, 2D]

    # 3. state after chunk j, rescaled by e^{−M_j}: S_j = e^{−Cw} S_{j−1} + e^{m_j} s_j.
    # M_j = max_{c≤j} (m_c − (j−c)Cw) keeps every factor ≤ 1 (cummax; a stabiliser, no gradient).
    j = torch.arange(n, device=k.device, dtype=torch.float32)[:, None]       # [n, 1]
    M = (torch.cummax(m + j * C * w, dim=1).values - j * C * w).detach()     # [B, n, D]
    M_prev = torch.cat([M[:, :1], M[:, :-1]], dim=1)                          # S_{−1} = 0 anyway
    a = torch.exp(M_prev - M - C * w).repeat(1, 1, 2)
    S = kernels.linear_recurrence(a, torch.exp(m - M).repeat(1, 1, 2) * s)  # [B, n, 2D]
    S_prev = F.pad(S, (0, 0, 1, -1))                                          # state before chunk j

    # 4. output at t = jC + τ: inter-chunk part e^{M_{j−1} − τw} S_{j−1}, then joint normalisation
    g = M_prev[:, :, None, :] - tau[:, None] * w                             # [B, n, C, D]
    g = g.masked_fill(j[None, :, :, None] == 0, float("-inf"))               # no state before chunk 0
    top = torch.maximum(logits.amax(dim=3), g).detach()                      # [B, n, C, D]
    p = torch.exp(logits - top[:, :, :, None])                               # [B, n, C, C, D]
    q = torch.exp(g - top)
    num = (p * v[:, :, None]).sum(3) + q * S_prev[..., :D][:, :, None]
    den = p.sum(3) + q * S_prev[..., D:][:, :, None]
    out = (num / den).reshape(B, n * C, D)[:, :T]
    return out.to(dtype)


class RWKV(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, channel_mix: bool = True,
                 ffn_ratio: float = 4.0):
        super().__init__()
        if ffn_ratio <= 0:
            raise ValueError(f"RWKV: ffn_ratio={ffn_ratio} must be > 0 (RWKV-4 uses 4)")
        d = self.d_model = d_model
        self.layer_idx, self.channel_mix = layer_idx, channel_mix
        rho = torch.arange(d, dtype=torch.float32) / d
        idx = torch.arange(d, dtype=torch.float32)
        # time mixing
        self.mu_k, self.mu_v, self.mu_r = (nn.Parameter(rho.clone()), nn.Parameter(rho.clone()),
                                           nn.Parameter(rho.sqrt()))
        self.time_decay = nn.Parameter(-5 + 8 * (idx / max(d - 1, 1)) ** 0.7)  # w = exp(time_decay)
        self.time_first = nn.Parameter(math.log(0.3) + 0.5 * ((idx + 1) % 3 - 1))  # u
        self.key, self.value, self.receptance, self.output = (nn.Linear(d, d, bias=False) for _ in range(4))
        no_decay = [self.mu_k, self.mu_v, self.mu_r, self.time_decay, self.time_first]
        # channel mixing
        if channel_mix:
            hidden = int(ffn_ratio * d)
            self.norm = nn.LayerNorm(d)
            self.cm_mu_k, self.cm_mu_r = nn.Parameter(rho.clone()), nn.Parameter(rho.clone())
            self.cm_key = nn.Linear(d, hidden, bias=False)
            self.cm_value = nn.Linear(hidden, d, bias=False)
            self.cm_receptance = nn.Linear(d, d, bias=False)
            no_decay += [self.cm_mu_k, self.cm_mu_r]
        for p in no_decay:
            p._no_weight_decay = True

    @staticmethod
    def _mix(x: torch.Tensor, xx: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return x * mu + xx * (1 - mu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xx = token_shift(x)
        r = self.receptance(self._mix(x, xx, self.mu_r))  # (11)
        k = self.key(self._mix(x, xx, self.mu_k))  # (12)
        v = self.value(self._mix(x, xx, self.mu_v))  # (13)
        y = wkv(torch.exp(self.time_decay), self.time_first, k, v)  # (16)
        o = self.output(torch.sigmoid(r) * y)  # (17)
        if not self.channel_mix:
            return o
        h = self.norm(x + o)
        hh = token_shift(h)
        r2 = self.cm_receptance(self._mix(h, hh, self.cm_mu_r))  # (14)
        k2 = self.cm_key(self._mix(h, hh, self.cm_mu_k))  # (15)
        return o + torch.sigmoid(r2) * self.cm_value(torch.relu(k2).square())  # (18)

    def state_size(self, seq_len: int) -> int:
        """4·d (a, b, p, x_{t−1}) + d (x'_{t−1}, channel_mix=true)."""
        return 4 * self.d_model + (self.d_model if self.channel_mix else 0)
