"""The (gated) delta rule, chunkwise in PyTorch (WY representation), and its step-by-step definition.

Shared by `deltanet.py` and `gated_deltanet.py`. With the state S ∈ R^{K×V} per head (the transpose
of the papers' V×K convention, so that o_t = S_tᵀ q_t matches `kernels.chunked_linear_attention`):

    S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ,    o_t = scale · S_tᵀ q_t             (1)

DeltaNet (Yang et al. 2024, arXiv 2406.06484) is α_t = 1; Gated DeltaNet (Yang, Kautz & Hatamizadeh
2025, arXiv 2412.06464) has a scalar α_t = exp(g_t) ∈ (0, 1] per head.

Chunked form (DeltaNet §3.1-3.2, Gated DeltaNet §3). Within a chunk of C tokens entering with state
S_0, let G_t = Σ_{r≤t} g_r (cumulative log decay from the chunk start, ≤ 0) and γ_t = exp(G_t).
Writing the update as S_t = α_t S_{t−1} + k_t u_tᵀ, the "pseudo-values" u_t satisfy

    u_t = β_t (v_t − γ_t S_0ᵀ k_t − Σ_{i<t} exp(G_t − G_i) (k_t·k_i) u_i)                     (2)

i.e. (I + A) U = diag(β) V − diag(β γ) K S_0 with A_ti = β_t (k_t·k_i) exp(G_t − G_i) for i < t.
The UT transform T = (I + A)⁻¹ (a unit-lower-triangular solve, i.e. forward substitution) gives the
WY factors, which need no state and are computed for every chunk at once:

    W = T diag(βγ) K,   Ũ = T diag(β) V,   U = Ũ − W S_0                                       (3)
    O = scale · [diag(γ) Q S_0 + (Q Kᵀ ⊙ Γ) U],   Γ_ti = exp(G_t − G_i) for i ≤ t, else 0     (4)
    S_C = γ_C S_0 + (K ⊙ exp(G_C − G))ᵀ U                                                     (5)

Only (3)-(5)'s dependence on S_0 is sequential: one loop step per chunk, none per token. Every
exponent is ≤ 0 (the masked ones are set to −inf before exp), so strong decay underflows to exact
zeros instead of overflowing. Computed in fp32 (fp64 if the inputs are fp64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def naive_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     log_alpha: torch.Tensor | None = None, scale: float = 1.0, *,
                     initial_state: torch.Tensor | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (1) as a plain loop over t: the definition the chunked form is tested against.

    q, k: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; log_alpha: None or [B, T, H] (≤ 0);
    initial_state: [B, H, K, V]. Returns (o [B, T, H, V], S_T [B, H, K, V]) in the compute dtype."""
    B, T, H, K = q.shape
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, beta = q.to(dt), k.to(dt), v.to(dt), beta.to(dt)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        if log_alpha is not None:
            S = log_alpha[:, t, :, None, None].to(dt).exp() * S
        k_t, b_t = k[:, t], beta[:, t, :, None]                        # [B, H, K], [B, H, 1]
        pred = torch.einsum("bhk,bhkv->bhv", k_t, S)                   # S_{t-1}ᵀ k_t (after decay)
        S = S + k_t[..., None] * (b_t * (v[:, t] - pred))[..., None, :]  # rank-1 delta update
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(outs, dim=1), S


def chunk_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     log_alpha: torch.Tensor | None = None, scale: float = 1.0, *,
                     initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                     chunk_size: int = 64) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (2)-(5); same arguments as `naive_delta_rule`. Returns o [B, T, H, V] in v's dtype, or
    (o, S_T [B, H, K, V] fp32) when output_final_state=True. Differentiable in every input.
    Runs in fp32 even under autocast: the state recurrence and the triangular solve need it."""
    with torch.autocast(q.device.type, enabled=False):
        o, S = _chunk_delta_rule(q, k, v, beta, log_alpha, scale, initial_state, chunk_size)
    return (o, S) if output_final_state else o


def _chunk_delta_rule(q, k, v, beta, log_alpha, scale, initial_state, chunk_size):
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    N = -(-T // C)
    pad = N * C - T

    def chunks(x: torch.Tensor) -> torch.Tensor:
        # [B, T, H, ...] -> [B, H, N, C, ...]; padded steps have k = v = β = g = 0: identity updates
        x = x.to(dt)
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, pad)) if pad else x
        return x.reshape(B, N, C, H, *x.shape[3:]).movedim(3, 1)

    qc, kc, vc, bc = chunks(q), chunks(k), chunks(v), chunks(beta)  # [B, H, N, C, K|V], [B, H, N, C]
    strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    if log_alpha is None:
        G = qc.new_zeros(B, H, N, C)
    else:
        G = chunks(log_alpha).cumsum(-1)                            # G_t, [B, H, N, C]
    diff = G[..., :, None] - G[..., None, :]                        # G_t − G_i, [B, H, N, C, C]

    # eq. (2)-(3): A, then the UT transform by a unit-lower-triangular solve (forward substitution)
    kk = kc @ kc.transpose(-1, -2)                                  # k_t·k_i, [B, H, N, C, C]
    A = bc[..., None] * kk * diff.masked_fill(~strict, float("-inf")).exp()
    eye = torch.eye(C, dtype=dt, device=q.device)
    rhs = torch.cat([bc[..., None] * vc, (bc * G.exp())[..., None] * kc], dim=-1)  # [.., C, V+K]
    Ut, W = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True).split([V, K], -1)

    # eq. (4)-(5) pieces that do not depend on the state
    P = (qc @ kc.transpose(-1, -2)) * diff.masked_fill(~causal, float("-inf")).exp()  # Q Kᵀ ⊙ Γ
    q_dec = qc * G.exp()[..., None]                                 # diag(γ) Q
    G_last = G[..., -1:]                                            # G_C, [B, H, N, 1]
    k_dec = kc * (G_last - G).exp()[..., None]                      # K ⊙ exp(G_C − G)

    S = qc.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for n in range(N):                                              # sequential over chunks only
        U = Ut[:, :, n] - W[:, :, n] @ S                            # eq. (3), [B, H, C, V]
        outs.append(q_dec[:, :, n] @ S + P[:, :, n] @ U)            # eq. (4)
        S = G_last[:, :, n, :, None].exp() * S + k_dec[:, :, n].transpose(-1, -2) @ U  # eq. (5)
    o = torch.stack(outs, dim=2) * scale                            # [B, H, N, C, V]
    o = o.movedim(1, 3).reshape(B, N * C, H, V)[:, :T].to(v.dtype)  # [B, T, H, V]
    return o, S
