"""RWKV-6 "Finch" time mixing (Peng, Goldstein, Anthony et al. 2024, "Eagle and Finch: RWKV with
Matrix-Valued States and Dynamic Recurrence", arXiv 2404.05892): Finch's time mixing, its steps
numbered here in the paper's order.

Per head of size K = d_model / H, with x_{t−1} the previous token (zero before the first):

    lora_□(y) = λ_□ + tanh(y A_□) B_□                                                       (1)
    ddlerp_□(a, b) = a + (b − a) ⊙ lora_□(a + (b − a) ⊙ μ_x)    □ ∈ {r, k, v, w, g}          (2)
    d_t = lora_d(ddlerp_w(x_t, x_{t−1})),   w_t = exp(−exp(d_t)) ∈ (0, 1)^K                   (3)
    □_t = ddlerp_□(x_t, x_{t−1}) W_□ for □ ∈ {r, k, v, g},  g_t ← SiLU(g_t)                     (4)
    o_t = r_t · (S_{t−1} + diag(u) k_tᵀ v_t),   S_t = diag(w_t) S_{t−1} + k_tᵀ v_t           (5)
    y_t = W_o (GroupNorm_H(o_t) ⊙ g_t)                                                        (6)

The current token enters with the bonus u, not through the decayed state, so the output is split in
two: r_t · S_{t−1} is `kernels.chunked_linear_attention` on keys and values shifted one step right
(k'_t = k_{t−1}, v'_t = v_{t−1}) with the decay shifted too (log w'_t = log w_{t−1}), which gives
Σ_{i<t} r_t · (Π_{i<j<t} w_j) k_iᵀ v_i exactly; the bonus (r_t · (u ⊙ k_t)) v_t is added directly.
No 1/√K scale (RWKV has none; GroupNorm follows). `mode="recurrent"` runs the token loop (for tests).

The channel mix of an RWKV block (squared-ReLU FFN with token shift) is not part of this mixer: the
backbone's state mixer (`model.state_mixer`) plays that role. Initialisation follows the authors'
release, which depends on depth (`n_layers`) through r0 = layer_idx / (n_layers − 1) and
r1 = 1 − layer_idx / n_layers: μ and λ_{w,k,v,r,g} from per-channel powers of i/d, decay biases
λ_d = −6 + 5 (i/(d−1))^{0.7+1.3 r0}, bonus u from r0 with a ±0.1 zig-zag, LoRA A = 0 and
B ~ U(−0.01, 0.01), W_r, W_v orthogonal, W_k, W_g orthogonal × 0.1, W_o = 0. The time-mixing
parameters (μ, λ, LoRA, u) are excluded from weight decay.

State at inference, per layer: H · K · K for S plus the previous token x_{t−1} (d_model):
state_size = d_model² / H + d_model.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import kernels

MODES = ("chunk", "recurrent")


def rwkv6_recurrent(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_w: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
    """Step (5) as a loop over t (the definition). r, k, log_w: [B, T, H, K]; v: [B, T, H, V];
    u: [H, K]. Returns o [B, T, H, V] (fp32, fp64 for fp64 inputs)."""
    B, T, H, K = r.shape
    dt = torch.float64 if r.dtype == torch.float64 else torch.float32
    r, k, v, log_w, u = r.to(dt), k.to(dt), v.to(dt), log_w.to(dt), u.to(dt)
    S = r.new_zeros(B, H, K, v.shape[-1])
    outs = []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]                     # k_tᵀ v_t, [B, H, K, V]
        outs.append(torch.einsum("bhk,bhkv->bhv", r[:, t], S + u[..., None] * kv))
        S = log_w[:, t, :, :, None].exp() * S + kv
    return torch.stack(outs, dim=1)


def rwkv6_chunked(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_w: torch.Tensor,
                  u: torch.Tensor) -> torch.Tensor:
    """Same as `rwkv6_recurrent`, through `kernels.chunked_linear_attention` on shifted k, v, log w."""
    shift = lambda x: F.pad(x, (0, 0, 0, 0, 1, -1))  # noqa: E731  x'_t = x_{t−1}, x'_0 = 0; [B, T, H, ·]
    o = kernels.chunked_linear_attention(r, shift(k), shift(v), shift(log_w), scale=1.0)
    bonus = (r * u * k).sum(-1, keepdim=True) * v                            # (r_t · (u ⊙ k_t)) v_t
    return o + bonus



def depth_schedule(layer_idx: int, n_layers: int, D: int):
    """The RWKV reference inits' depth and channel ramps: r0 (0 -> 1 with depth), r1 (1 -> ~0 with
    depth), ddd = d / D and n = d / (D - 1) over the channels d (shared by RWKV-6 and RWKV-7)."""
    r0 = min(layer_idx / (n_layers - 1), 1.0) if n_layers > 1 else 0.0
    r1 = max(1.0 - layer_idx / n_layers, 0.0)
    ddd = torch.arange(D, dtype=torch.float32) / D
    n = torch.arange(D, dtype=torch.float32) / max(D - 1, 1)
    return r0, r1, ddd, n

class RWKV6(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, n_layers: int = 2, num_heads: int = 2,
                 mix_rank: int = 32, decay_rank: int = 64, norm_eps: float = 64e-5,
                 mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"RWKV6: d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"pick a divisor of {d_model}")
        if mix_rank < 1 or decay_rank < 1 or n_layers < 1:
            raise ValueError(f"RWKV6: need mix_rank, decay_rank, n_layers >= 1, got {mix_rank}, "
                             f"{decay_rank}, {n_layers}")
        if mode not in MODES:
            raise ValueError(f"RWKV6(mode={mode!r}): expected one of {MODES}")
        self.d_model, self.layer_idx, self.num_heads, self.mode = d_model, layer_idx, num_heads, mode
        D, H = d_model, num_heads
        self.maa_x = nn.Parameter(torch.empty(D))                  # μ_x
        self.maa = nn.Parameter(torch.empty(5, D))                 # λ_□ for □ = w, k, v, r, g
        self.maa_A = nn.Parameter(torch.empty(D, 5 * mix_rank))    # A_□, side by side
        self.maa_B = nn.Parameter(torch.empty(5, mix_rank, D))     # B_□
        self.decay = nn.Parameter(torch.empty(D))                  # λ_d
        self.decay_A = nn.Parameter(torch.empty(D, decay_rank))
        self.decay_B = nn.Parameter(torch.empty(decay_rank, D))
        self.u = nn.Parameter(torch.empty(H, D // H))              # bonus
        self.r, self.k, self.v, self.g = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.out = nn.Linear(D, D, bias=False)
        self.norm = nn.GroupNorm(H, D, eps=norm_eps)               # one group per head
        self._init(n_layers)

    @torch.no_grad()
    def _init(self, n_layers: int) -> None:
        D = self.d_model
        r0, r1, ddd, n = depth_schedule(self.layer_idx, n_layers, D)
        self.maa_x.copy_(1 - ddd**r1)
        self.maa.copy_(torch.stack([1 - ddd**r1, 1 - ddd**r1, 1 - (ddd**r1 + 0.3 * r0),
                                    1 - ddd**(0.5 * r1), 1 - ddd**(0.5 * r1)]))  # w, k, v, r, g
        self.decay.copy_(-6 + 5 * n ** (0.7 + 1.3 * r0))
        zigzag = ((torch.arange(D) + 1) % 3 - 1).float() * 0.1
        self.u.copy_((r0 * (1 - n) + zigzag).view_as(self.u))
        nn.init.zeros_(self.maa_A)
        nn.init.uniform_(self.maa_B, -0.01, 0.01)
        nn.init.zeros_(self.decay_A)
        nn.init.uniform_(self.decay_B, -0.01, 0.01)
        nn.init.orthogonal_(self.r.weight)
        nn.init.orthogonal_(self.v.weight)
        nn.init.orthogonal_(self.k.weight, gain=0.1)
        nn.init.orthogonal_(self.g.weight, gain=0.1)
        nn.init.zeros_(self.out.weight)
        for p in (self.maa_x, self.maa, self.maa_A, self.maa_B, self.decay, self.decay_A,
                  self.decay_B, self.u):
            p._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.num_heads
        dx = F.pad(x, (0, 0, 1, -1)) - x                            # x_{t−1} − x_t (token shift)
        # steps (1-2): one shared lerp, five LoRAs at once: [B, T, D] -> [5, B, T, D]
        y = torch.tanh((x + dx * self.maa_x) @ self.maa_A)         # [B, T, 5·rank]
        y = rearrange(y, "b t (five r) -> five (b t) r", five=5) @ self.maa_B  # [5, B·T, D]
        mix = self.maa[:, None] + y                                 # lora_□, [5, B·T, D]
        xw, xk, xv, xr, xg = (x + dx * m.view(B, T, D) for m in mix)
        # step (3): log w_t = −exp(d_t) ≤ 0, per channel
        d = self.decay + torch.tanh(xw @ self.decay_A) @ self.decay_B
        log_w = -d.float().exp()                                    # fp32 under autocast
        r, k, v, log_w = (rearrange(z, "b t (h k) -> b t h k", h=H)
                          for z in (self.r(xr), self.k(xk), self.v(xv), log_w))
        if self.mode == "chunk":
            o = rwkv6_chunked(r, k, v, log_w, self.u)
        else:
            o = rwkv6_recurrent(r, k, v, log_w, self.u).to(v.dtype)
        # step (6): GroupNorm per head on [B·T, D], then the output gate
        o = self.norm(rearrange(o, "b t h k -> (b t) (h k)")).view(B, T, D)
        return self.out(o * F.silu(self.g(xg)))

    def state_size(self, seq_len: int) -> int:
        """H·K·K = d_model²/H (WKV state) + d_model (previous token for the token shift)."""
        return self.d_model**2 // self.num_heads + self.d_model
