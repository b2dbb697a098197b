"""H3, Hungry Hungry Hippos (Fu, Dao, Saab, Thomas, Rudra, Ré 2023, "Hungry Hungry Hippos: Towards
Language Modeling with State Space Models", arXiv 2212.14052), Algorithm 1.

Projections Q = u W_Q, K = u W_K, V = u W_V ∈ R^{T×d}, then two stacked SSMs and a gate:

1. Shift SSM on K, per channel (A = the N×N shift matrix, B = e_1, learned C, skip D):
       s_t = shift(s_{t-1}) + e_1 k_t = [k_t, k_{t-1}, .., k_{t-N+1}],
       k̄_t = C s_t + D k_t = Σ_{i<N} C_i k_{t-i} + D k_t                                   (1)
   i.e. a learned causal filter of length N: it remembers the last N tokens (the "previous token"
   that recall needs).
2. Heads: H = d / d_h heads of head dim d_h. Per head, the outer products k̄_t v_tᵀ ∈ R^{d_h×d_h}
   (every entry a channel) go through a diagonal SSM (S4D-Lin, one SSM per head shared by its d_h²
   entries, N/2 complex modes, see `s4d.py`) with skip D:
       X_t = Ā X_{t-1} + B̄ k̄_t v_tᵀ,   Ŝ_t = 2 Re(C X_t) + D k̄_t v_tᵀ                      (2)
   This is linear attention with an SSM in place of the running sum.
3. Multiplicative gate by Q, per head: o_t = q_tᵀ Ŝ_t ∈ R^{d_h}                               (3)
4. Output projection: y_t = W_O concat_h(o_t).                                              (4)

Both SSMs are LTI, so (1) and (2) are causal convolutions, computed with a zero-padded FFT
(`_fftconv`); `recurrent_reference` is the loop over t that defines them (tests).
With d_h = 1 (the paper's default) step 2-3 are elementwise: o = q ⊙ SSM_diag(SSM_shift(k) ⊙ v).

State at inference, counted in real elements: the shift SSM's s_t, d·N; the diagonal SSM's X_t,
H·d_h²·N (N/2 complex modes per entry). state_size = d·N + H·d_h²·N.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._fftconv import fft_causal_conv
from .s4d import S4DKernel


class H3(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, d_state: int = 64, head_dim: int = 1,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if d_model % head_dim:
            raise ValueError(f"H3: d_model={d_model} is not divisible by head_dim={head_dim}")
        if d_state < 2 or d_state % 2:
            raise ValueError(f"H3: d_state={d_state} must be even and >= 2 (N/2 complex modes)")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"H3: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.layer_idx, self.d_state, self.head_dim = d_model, layer_idx, d_state, head_dim
        self.num_heads = d_model // head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model)
        # shift SSM (1): C ~ N(0, 1/N) keeps k̄ at the scale of k at init; D ~ N(0, 1)
        self.shift_C = nn.Parameter(torch.randn(d_model, d_state) / d_state**0.5)
        self.shift_D = nn.Parameter(torch.randn(d_model))
        # diagonal SSM (2): one S4D-Lin SSM per head
        self.diag = S4DKernel(self.num_heads, d_state, dt_min, dt_max)
        self.diag_D = nn.Parameter(torch.randn(self.num_heads))
        self.out = nn.Linear(d_model, d_model)

    def _shift_kernel(self, T: int) -> torch.Tensor:
        """The shift SSM's impulse response: K_l = C_l for l < N, 0 after; [d, T]."""
        K = self.shift_C[:, :T]
        return nn.functional.pad(K, (0, T - K.shape[-1]))

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v, each [B, H, d_h, T]."""
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h d t", three=3, h=self.num_heads)
        return q, k, v

    def _gate_out(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(3)-(4): q [B, H, d_h, T], Ŝ [B, H, d_h(k), d_h(v), T] -> y [B, T, d]."""
        o = (q[:, :, :, None] * s).sum(2)  # [B, H, d_h(v), T]: q_tᵀ Ŝ_t
        return self.out(rearrange(o, "b h d t -> b t (h d)"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        q, k, v = self._heads(x)
        K_shift = rearrange(self._shift_kernel(T), "(h d) t -> h d t", h=self.num_heads)
        k = fft_causal_conv(k, K_shift) + self.shift_D.view(self.num_heads, self.head_dim, 1) * k  # (1)
        kv = k[:, :, :, None] * v[:, :, None]  # [B, H, d_h, d_h, T]: k̄_t v_tᵀ per head
        K_diag = self.diag(T)[:, None, None]  # [H, 1, 1, T]: shared by a head's d_h² entries
        s = fft_causal_conv(kv, K_diag) + self.diag_D[:, None, None, None] * kv  # (2)
        return self._gate_out(q, s)

    def recurrent_reference(self, x: torch.Tensor) -> torch.Tensor:
        """forward() by the two recurrences, a plain loop over t (tests)."""
        B, T, _ = x.shape
        q, k, v = self._heads(x)
        C = self.shift_C.view(self.num_heads, self.head_dim, self.d_state)
        D = self.shift_D.view(self.num_heads, self.head_dim)
        shift_state = k.new_zeros(B, self.num_heads, self.head_dim, self.d_state)  # s_t
        k_bar = []
        for t in range(T):
            shift_state = torch.cat([k[..., t, None], shift_state[..., :-1]], dim=-1)  # shift in k_t
            k_bar.append((C * shift_state).sum(-1) + D * k[..., t])  # (1)
        kv = torch.stack(k_bar, dim=-1)[:, :, :, None] * v[:, :, None]  # [B, H, d_h, d_h, T]
        _, A_bar, B_bar, C_diag = self.diag.discretize()  # [H, N/2] each
        A_bar, B_bar, C_diag = (z[:, None, None] for z in (A_bar, B_bar, C_diag))  # [H, 1, 1, N/2]
        X = torch.zeros(*kv.shape[:-1], self.d_state // 2, dtype=A_bar.dtype, device=x.device)
        s = []
        for t in range(T):
            X = A_bar * X + B_bar * kv[..., t, None]  # (2)
            s.append(2.0 * (C_diag * X).sum(-1).real + self.diag_D[:, None, None] * kv[..., t])
        return self._gate_out(q, torch.stack(s, dim=-1))

    def state_size(self, seq_len: int) -> int:
        shift = self.d_model * self.d_state
        diag = self.num_heads * self.head_dim**2 * self.d_state  # N/2 complex = N reals per entry
        return shift + diag
