"""RWKV-7 "Goose" time mixing (Peng, Zhang, Goldstein et al. 2025, "RWKV-7 "Goose" with Expressive
Dynamic State Evolution", arXiv 2503.14456, §4): the generalised delta rule with vector-valued decay
and an in-context learning rate, its steps numbered here in the paper's order.

Per head of size N (= head_dim, capped at d_model), with x_{t−1} the previous token (zero first):

    x^□_t = x_t + (x_{t−1} − x_t) ⊙ μ_□              □ ∈ {r, w, k, v, a, g}   (token shift)   (1)
    r_t, k_t, v_t = x^r_t W_r, x^k_t W_k, x^v_t W_v                                            (2)
    d_t = λ_w + tanh(x^w_t A_w) B_w,   w_t = exp(−e^{−0.5} σ(d_t)) ∈ (0.545, 1)^N   (decay)      (3)
    a_t = σ(λ_a + x^a_t A_a B_a) ∈ (0, 1)^N                       (in-context learning rate)   (4)
    κ̂_t = (k_t ⊙ ξ) / ‖k_t ⊙ ξ‖  (per head),   k̃_t = k_t ⊙ (1 + (a_t − 1) ⊙ α)  (removal key,
                                                                          replacement key)   (5)
    S_t = S_{t−1} (diag(w_t) − κ̂_tᵀ (a_t ⊙ κ̂_t)) + v_tᵀ k̃_t                  (WKV, V × K)     (6)
    p_t = GroupNorm_H(S_t r_tᵀ) + (r_t · (ρ ⊙ k̃_t)) v_t                    (read-out + bonus)  (7)
    g_t = σ(x^g_t A_g) B_g,   y_t = (g_t ⊙ p_t) W_o                                 (output gate)  (8)

Unlike RWKV-6, the output reads the state *after* the update at t, and the bonus ρ is added after
the norm. The decay's lower bound exp(−e^{−0.5}) is what makes the chunked form below stable.

Computation. Written in K × V orientation (S here = the paper's Sᵀ), step (6) is the generalised
(diagonal-plus-low-rank) delta rule with a = −κ̂_t, b = κ̂_t ⊙ a_t:

    S_t = diag(w_t) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k̃_t v_tᵀ,   o_t = S_tᵀ r_t                (9)

`rwkv7_recurrent` loops (9) over t (the definition). `rwkv7_chunked` runs it in chunks of C tokens:
with G_t = Σ_{r≤t} log w_r (per channel, from the chunk start, G_0 = 0), S_0 the entering state and
u_t = S_{t−1}ᵀ a_t the "removed values", unrolling (9) gives S_t = e^{G_t} ⊙ S_0 +
Σ_{i≤t} e^{G_t − G_i} ⊙ (b_i u_iᵀ + k̃_i v_iᵀ), hence, with Ā = a ⊙ e^{G_{t−1}}, B̄ = b ⊙ e^{−G},
K̄ = k̃ ⊙ e^{−G}, R̄ = r ⊙ e^{G} and tril₋/tril the strict/inclusive lower triangles:

    (I − tril₋(Ā B̄ᵀ)) U = Ā S_0 + tril₋(Ā K̄ᵀ) V        → U = W S_0 + Ũ (one triangular solve) (10)
    O = R̄ S_0 + tril(R̄ B̄ᵀ) U + tril(R̄ K̄ᵀ) V                                                   (11)
    S_C = e^{G_C} ⊙ S_0 + (B̄ ⊙ e^{G_C})ᵀ U + (K̄ ⊙ e^{G_C})ᵀ V                                  (12)

W, Ũ and the masked products are computed for every chunk at once; only S_0 is carried from chunk to
chunk. The factorisation e^{G_t − G_i} = e^{G_t} e^{−G_i} is exact in fp32 because RWKV-7's decay is
bounded (−log w ≤ e^{−0.5} ≈ 0.61, so |G| ≤ 0.61·C ≤ 39 for C ≤ 64, far from overflow).

Simplifications (stated, for the 2-layer MQAR setting): no value residual (v_t ← lerp(v_t, v^{(0)}_t,
ν_t) needs the first layer's values, and the mixer contract has no channel across layers; so no
v LoRA); no channel mix (the backbone's `state_mixer` plays that role). LoRA ranks follow zoology's
`models_repo.py` RWKV-7 setting: decay 16, a 16, gate 64, head_dim 64. Initialisation modelled on the
authors' release (RWKV-LM v7; constants not checked against it are ours), depth-dependent through
r0 = layer_idx/(n_layers − 1) and r1 = 1 − layer_idx/n_layers: μ_□ = 1 − (i/D)^{p_□ r1} with
p = 0.2, 0.9, 0.7, 0.7, 0.9, 0.2 for r, w, k, v, a, g; λ_w = −6.5 + 5 (i/(D−1))^{0.85 + √r0} (slow to
fast decay across channels); λ_a = 0; ξ = 0.85, α = 1, ρ = 0; first LoRA factors zero, second ones
orthogonal × 0.1; W_r, W_v ~ U(±0.5/√D), W_k ~ U(±0.05/√D), W_o = 0. The time-mixing parameters
(μ, λ, LoRAs, ξ, α, ρ) are excluded from weight decay.

State at inference, per layer: the WKV state H · N · N (the corrected formula of zoology #34/#37:
num_heads · head_dim · head_dim, not key_dim · value_dim) plus the previous token for the token
shift (d_model, counted here as for RWKV-6; zoology omits it): state_size = H · N² + d_model.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .rwkv6 import depth_schedule

MODES = ("chunk", "recurrent")
MAX_CHUNK = 64  # |G| <= 0.61 * 64 < 40: e^{±G} stays far inside fp32's range


def rwkv7_recurrent(r: torch.Tensor, log_w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    a: torch.Tensor, b: torch.Tensor, *, initial_state: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (9) as a loop over t (the definition). r, log_w, k, a, b: [B, T, H, K]; v: [B, T, H, V];
    initial_state: [B, H, K, V]. Returns (o [B, T, H, V], S_T [B, H, K, V]) in fp32 (fp64 for fp64)."""
    B, T, H, K = r.shape
    dt = torch.float64 if r.dtype == torch.float64 else torch.float32
    r, log_w, k, v, a, b = (z.to(dt) for z in (r, log_w, k, v, a, b))
    S = r.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        removed = torch.einsum("bhk,bhkv->bhv", a[:, t], S)            # a_tᵀ S_{t−1} (undecayed)
        S = (log_w[:, t, ..., None].exp() * S + b[:, t, ..., None] * removed[..., None, :]
             + k[:, t, ..., None] * v[:, t, :, None, :])
        outs.append(torch.einsum("bhk,bhkv->bhv", r[:, t], S))        # read after the update
    return torch.stack(outs, dim=1), S


def rwkv7_chunked(r: torch.Tensor, log_w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  a: torch.Tensor, b: torch.Tensor, *, initial_state: torch.Tensor | None = None,
                  chunk_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (10)-(12); same arguments and results as `rwkv7_recurrent` (o in fp32). Needs
    −log_w · chunk_size <= ~40 (true for RWKV-7's decay with chunk_size <= 64). Runs in fp32 even
    under autocast: the triangular solve and the state recurrence need it."""
    with torch.autocast(r.device.type, enabled=False):
        return _rwkv7_chunked(r, log_w, k, v, a, b, initial_state, chunk_size)


def _rwkv7_chunked(r, log_w, k, v, a, b, initial_state, C):
    B, T, H, K = r.shape
    V = v.shape[-1]
    dt = torch.float64 if r.dtype == torch.float64 else torch.float32
    N = -(-T // C)
    pad = N * C - T

    def chunks(x: torch.Tensor) -> torch.Tensor:
        # [B, T, H, X] -> [B, H, N, C, X]; padded steps (all zeros, log w = 0) are identity updates
        x = F.pad(x.to(dt), (0, 0, 0, 0, 0, pad))
        return x.reshape(B, N, C, H, x.shape[-1]).movedim(3, 1)

    r, log_w, k, v, a, b = (chunks(z) for z in (r, log_w, k, v, a, b))
    G = log_w.cumsum(-2)                                                # G_t, [B, H, N, C, K]
    A_ = a * (G - log_w).exp()                                          # Ā = a ⊙ e^{G_{t−1}}
    B_, K_, R_ = b * (-G).exp(), k * (-G).exp(), r * G.exp()            # B̄, K̄, R̄
    strict = torch.ones(C, C, dtype=torch.bool, device=r.device).tril(-1)
    causal = torch.ones(C, C, dtype=torch.bool, device=r.device).tril()
    # eq. (10): U = W S_0 + Ũ via one unit-lower-triangular solve for all chunks
    L_ab = (A_ @ B_.transpose(-1, -2)).masked_fill(~strict, 0.0)       # [B, H, N, C, C]
    L_ak = (A_ @ K_.transpose(-1, -2)).masked_fill(~strict, 0.0)
    eye = torch.eye(C, dtype=dt, device=r.device)
    W, Ut = torch.linalg.solve_triangular(eye - L_ab, torch.cat([A_, L_ak @ v], -1), upper=False,
                                          unitriangular=True).split([K, V], -1)
    # eq. (11)-(12) pieces that do not depend on the state
    P_b = (R_ @ B_.transpose(-1, -2)).masked_fill(~causal, 0.0)        # tril(R̄ B̄ᵀ)
    P_k = (R_ @ K_.transpose(-1, -2)).masked_fill(~causal, 0.0)        # tril(R̄ K̄ᵀ)
    O_k = P_k @ v                                                       # [B, H, N, C, V]
    G_last = G[..., -1:, :]                                             # G_C, [B, H, N, 1, K]
    b_end, k_end = b * (G_last - G).exp(), k * (G_last - G).exp()      # B̄ ⊙ e^{G_C}, K̄ ⊙ e^{G_C}
    S_in = k_end.transpose(-1, -2) @ v                                  # (K̄ ⊙ e^{G_C})ᵀ V, [.., K, V]
    decay_end = G_last.transpose(-1, -2).exp()                          # e^{G_C}, [B, H, N, K, 1]

    S = r.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for n in range(N):                                                  # sequential over chunks only
        U = W[:, :, n] @ S + Ut[:, :, n]                                # eq. (10), [B, H, C, V]
        outs.append(R_[:, :, n] @ S + P_b[:, :, n] @ U + O_k[:, :, n])  # eq. (11)
        S = decay_end[:, :, n] * S + b_end[:, :, n].transpose(-1, -2) @ U + S_in[:, :, n]  # eq. (12)
    o = torch.stack(outs, dim=2)                                        # [B, H, N, C, V]
    return o.movedim(1, 3).reshape(B, N * C, H, V)[:, :T], S


class RWKV7(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, n_layers: int = 2, head_dim: int = 64,
                 decay_rank: int = 16, a_rank: int = 16, gate_rank: int = 64, norm_eps: float = 64e-5,
                 chunk_size: int = 32, mode: Literal["chunk", "recurrent"] = "chunk"):
        super().__init__()
        if head_dim < 1 or (d_model > head_dim and d_model % head_dim):
            raise ValueError(f"RWKV7: head_dim={head_dim} must be >= 1 and divide d_model={d_model} "
                             f"(or exceed it: one head of size d_model)")
        if min(decay_rank, a_rank, gate_rank, n_layers) < 1:
            raise ValueError(f"RWKV7: need decay_rank, a_rank, gate_rank, n_layers >= 1, got "
                             f"{decay_rank}, {a_rank}, {gate_rank}, {n_layers}")
        if not 1 <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"RWKV7: chunk_size={chunk_size} must be in [1, {MAX_CHUNK}] (the chunked "
                             f"form's e^(-G) factors overflow beyond)")
        if mode not in MODES:
            raise ValueError(f"RWKV7(mode={mode!r}): expected one of {MODES}")
        D = d_model
        self.d_model, self.layer_idx, self.mode, self.chunk_size = D, layer_idx, mode, chunk_size
        self.head_dim = min(head_dim, D)
        self.num_heads = H = D // self.head_dim
        self.mu = nn.Parameter(torch.empty(6, D))                         # μ_□, □ = r, w, k, v, a, g
        self.r, self.k, self.v, self.out = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.w_bias = nn.Parameter(torch.empty(D))                        # λ_w
        self.w_A, self.w_B = nn.Parameter(torch.empty(D, decay_rank)), nn.Parameter(torch.empty(decay_rank, D))
        self.a_bias = nn.Parameter(torch.empty(D))                        # λ_a
        self.a_A, self.a_B = nn.Parameter(torch.empty(D, a_rank)), nn.Parameter(torch.empty(a_rank, D))
        self.g_A, self.g_B = nn.Parameter(torch.empty(D, gate_rank)), nn.Parameter(torch.empty(gate_rank, D))
        self.k_k = nn.Parameter(torch.empty(D))                           # ξ (removal key scale)
        self.k_a = nn.Parameter(torch.empty(D))                           # α (replacement key mix)
        self.r_k = nn.Parameter(torch.empty(H, self.head_dim))            # ρ (bonus)
        self.norm = nn.GroupNorm(H, D, eps=norm_eps)                      # one group per head
        self._init(n_layers)

    @torch.no_grad()
    def _init(self, n_layers: int) -> None:
        D = self.d_model
        r0, r1, ddd, n = depth_schedule(self.layer_idx, n_layers, D)
        powers = torch.tensor([0.2, 0.9, 0.7, 0.7, 0.9, 0.2])[:, None] * r1     # r, w, k, v, a, g
        self.mu.copy_(1 - ddd[None] ** powers)
        self.w_bias.copy_(-6.5 + 5 * n ** (0.85 + r0**0.5))
        self.a_bias.zero_()
        for A, B_ in ((self.w_A, self.w_B), (self.a_A, self.a_B), (self.g_A, self.g_B)):
            nn.init.zeros_(A)
            nn.init.orthogonal_(B_, gain=0.1)
        self.k_k.fill_(0.85)
        self.k_a.fill_(1.0)
        self.r_k.zero_()
        bound = 1 / math.sqrt(D)
        nn.init.uniform_(self.r.weight, -0.5 * bound, 0.5 * bound)
        nn.init.uniform_(self.v.weight, -0.5 * bound, 0.5 * bound)
        nn.init.uniform_(self.k.weight, -0.05 * bound, 0.05 * bound)
        nn.init.zeros_(self.out.weight)
        for p in (self.mu, self.w_bias, self.w_A, self.w_B, self.a_bias, self.a_A, self.a_B,
                  self.g_A, self.g_B, self.k_k, self.k_a, self.r_k):
            p._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.num_heads
        dx = F.pad(x, (0, 0, 1, -1)) - x                                  # x_{t−1} − x_t
        xr, xw, xk, xv, xa, xg = x + dx * self.mu[:, None, None]          # step (1), 6 × [B, T, D]
        r, k, v = self.r(xr), self.k(xk), self.v(xv)                      # step (2)
        d = self.w_bias + torch.tanh(xw @ self.w_A) @ self.w_B            # step (3)
        log_w = -math.exp(-0.5) * torch.sigmoid(d.float())                # log w_t in (−0.61, 0)
        a = torch.sigmoid(self.a_bias + xa @ self.a_A @ self.a_B)         # step (4)
        g = torch.sigmoid(xg @ self.g_A) @ self.g_B                       # step (8)'s gate
        heads = lambda z: rearrange(z, "b t (h n) -> b t h n", h=H)       # [B, T, H, N]
        kk = F.normalize(heads(k * self.k_k), dim=-1)                     # step (5): κ̂, per head
        k = k * (1 + (a - 1) * self.k_a)                                  # k̃
        r, k, v, log_w, a = (heads(z) for z in (r, k, v, log_w, a))
        # step (6) as eq. (9): a = −κ̂, b = κ̂ ⊙ a_t
        if self.mode == "chunk":
            o, _ = rwkv7_chunked(r, log_w, k, v, -kk, kk * a, chunk_size=self.chunk_size)
        else:
            o, _ = rwkv7_recurrent(r, log_w, k, v, -kk, kk * a)
        o = self.norm(rearrange(o.to(v.dtype), "b t h n -> (b t) (h n)")).view(B, T, H, -1)
        o = o + (r * k * self.r_k).sum(-1, keepdim=True) * v              # step (7): bonus
        return self.out(rearrange(o, "b t h n -> b t (h n)") * g)         # step (8)

    def state_size(self, seq_len: int) -> int:
        """H·N·N (WKV state; zoology #34/#37's corrected formula) + d_model (token-shift buffer)."""
        return self.num_heads * self.head_dim**2 + self.d_model
