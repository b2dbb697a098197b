"""Causal linear attention with a choice of feature maps (Katharopoulos, Vyas, Pappas, Fleuret 2020,
"Transformers are RNNs", arXiv 2006.16236). Per head, with q_t, k_t ∈ R^f, v_t ∈ R^{d_h}, the
causally masked linear attention of the paper's §3.3 / §3.4 (attention as an RNN):

    (LA1) o_t = Σ_{s≤t} φ(q_t)·φ(k_s) v_s / Σ_{s≤t} φ(q_t)·φ(k_s)              (normalised)
    (LA2) as a recurrence: S_t = S_{t-1} + φ(k_t) v_tᵀ,  z_t = z_{t-1} + φ(k_t),
          o_t = S_tᵀ φ(q_t) / (z_t·φ(q_t) + ε)

computed in chunked form by `kernels.chunked_linear_attention` on [v, 1] (numerator and the
running feature sum z at once). `normalize=False` drops the denominator.

Feature maps φ: R^f -> R^F:
- `identity`: φ(x) = x (F = f). Its normaliser q·z can be 0 or negative, so it needs normalize=False.
- `elu1`: φ(x) = elu(x) + 1 (Katharopoulos et al. eq. 7), F = f.
- `relu`: φ(x) = max(x, 0), F = f.
- `taylor`: φ(x) = [1, x / f^{1/4}, vec(x xᵀ) / (√2 √f)], F = 1 + f + f² (Based's 2nd-order Taylor
  approximation of exp(q·k / √f); Arora et al. 2024, arXiv 2402.18668, eq. 3).
- `cosformer` (Qin et al. 2022, arXiv 2202.08791, the cos-based re-weighting): ReLU features, weighted by
  cos(π/2 · (t - s)/M). With cos(a - b) = cos a cos b + sin a sin b the weight splits into two
  linear attentions, one on φ(x_t) cos(πt/2M) and one on φ(x_t) sin(πt/2M); their sum is one linear
  attention on the concatenated features [φ(x_t) cos(πt/2M), φ(x_t) sin(πt/2M)], F = 2f, which is
  how it runs here. M ≥ T keeps the weights > 0: `cosformer_len=None` takes M = T, the input length
  (then y_t depends on the length T, though never on later tokens' values, so a token-by-token
  decoder must know T in advance); an int fixes M (prefix-consistent, but T > M is an error).
- `performer`: FAVOR+ positive random features (Choromanski et al. 2021, arXiv 2009.14794, Lemma 1):
  φ(x) = exp(W x̃ - |x̃|²/2) / √m with x̃ = x / f^{1/4}, so E[φ(q)·φ(k)] = exp(q·k / √f); W [m, f] holds
  orthogonal random features (blocks of orthonormal rows rescaled by χ_f-distributed norms), drawn
  once at init from a generator seeded with `seed + layer_idx` and stored as a buffer. F = m. Each
  query's features are divided by their max (it cancels in the normalised ratio).

State at inference, per layer: S and z, H · F · (d_h + 1) elements (H · F · d_h without the
normaliser); cosformer also keeps the position t (one integer, not counted).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import kernels

from .based import taylor_features

FEATURE_MAPS = ("identity", "elu1", "relu", "taylor", "cosformer", "performer")


def orthogonal_random_features(m: int, f: int, generator: torch.Generator) -> torch.Tensor:
    """W [m, f]: stacked blocks of f orthonormal rows (QR of a Gaussian matrix), each row rescaled
    to the norm of an independent N(0, I_f) vector, so rows are marginally N(0, I_f) but orthogonal
    within a block (Performer's ORF, §2.4)."""
    blocks = []
    for _ in range(math.ceil(m / f)):
        q, r = torch.linalg.qr(torch.randn(f, f, generator=generator))
        q = q * torch.sign(torch.diagonal(r))                  # Haar-distributed (QR's sign convention)
        blocks.append(q.t())                                   # rows orthonormal
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, f, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


class LinearAttention(nn.Module):
    """Causal linear attention; `forward(x [B, T, D]) -> [B, T, D]`.

    Parameters: 2·D·H·f (q, k) + D² (v) + D² + D (output projection with bias)."""

    def __init__(self, d_model: int, *, layer_idx: int,
                 feature_map: Literal["identity", "elu1", "relu", "taylor", "cosformer", "performer"] = "elu1",
                 feature_dim: int = 16, num_heads: int = 1, num_random_features: int = 64,
                 cosformer_len: int | None = None, normalize: bool = True, eps: float = 1e-6, seed: int = 0):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"LinearAttention: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"LinearAttention(feature_map={feature_map!r}): expected one of {FEATURE_MAPS}")
        if feature_map == "identity" and normalize:
            raise ValueError("LinearAttention(feature_map='identity', normalize=True): the normaliser "
                             "Σ_s q_t·k_s can be zero or negative; set normalize=false or pick a positive "
                             "feature map (elu1, relu, taylor, cosformer, performer)")
        if feature_dim < 1 or num_random_features < 1:
            raise ValueError(f"LinearAttention: feature_dim and num_random_features must be >= 1, got "
                             f"{feature_dim}, {num_random_features}")
        if cosformer_len is not None and cosformer_len < 1:
            raise ValueError(f"LinearAttention: cosformer_len must be >= 1 or null (M = T), got {cosformer_len}")
        self.d_model, self.layer_idx, self.num_heads, self.feature_dim = d_model, layer_idx, num_heads, feature_dim
        self.feature_map, self.num_random_features, self.cosformer_len = feature_map, num_random_features, cosformer_len
        self.normalize, self.eps = normalize, eps
        self.qk = nn.Linear(d_model, 2 * num_heads * feature_dim, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        if feature_map == "performer":
            gen = torch.Generator().manual_seed(seed + layer_idx)
            self.register_buffer("projection", orthogonal_random_features(num_random_features, feature_dim, gen))

    @property
    def num_features(self) -> int:
        """F, the size of φ(x)."""
        f = self.feature_dim
        return {"taylor": 1 + f + f * f, "cosformer": 2 * f, "performer": self.num_random_features}.get(self.feature_map, f)

    def features(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        """φ(x) for x [B, T, H, f] -> [B, T, H, F] (t = position along dim 1)."""
        kind = self.feature_map
        if kind == "identity":
            return x
        if kind == "elu1":
            return F.elu(x) + 1
        if kind == "relu":
            return F.relu(x)
        if kind == "taylor":
            return taylor_features(x)
        if kind == "cosformer":
            T = x.shape[1]
            M = T if self.cosformer_len is None else self.cosformer_len
            if T > M:
                raise ValueError(f"LinearAttention: cosformer needs T <= cosformer_len = {M}, got T = {T}; "
                                 f"raise model.mixer.cosformer_len or set it to null (M = T)")
            angle = (math.pi / (2 * M)) * torch.arange(T, device=x.device, dtype=x.dtype)[:, None, None]
            phi = F.relu(x)                                     # [B, T, H, f]
            return torch.cat([phi * angle.cos(), phi * angle.sin()], dim=-1)
        # performer: log φ = W x̃ - |x̃|²/2 - log √m
        xs = x * self.feature_dim**-0.25
        logits = xs @ self.projection.t().to(x.dtype) - 0.5 * xs.pow(2).sum(-1, keepdim=True)
        if is_query and self.normalize:
            logits = logits - logits.amax(-1, keepdim=True).detach()   # cancels in the ratio
        return torch.exp(logits) * self.num_random_features**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = rearrange(self.qk(x), "b t (two h f) -> two b t h f", two=2, h=self.num_heads)
        v = rearrange(self.v(x), "b t (h d) -> b t h d", h=self.num_heads)  # [B, T, H, d_h]
        q, k = self.features(q, is_query=True), self.features(k, is_query=False)  # [B, T, H, F]
        if not self.normalize:
            o = kernels.chunked_linear_attention(q, k, v, scale=1.0)
        else:
            v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)       # [B, T, H, d_h + 1]
            o = kernels.chunked_linear_attention(q, k, v1, scale=1.0)
            o = o[..., :-1] / (o[..., -1:] + self.eps)                      # (LA2): S_tᵀφ(q) / z_t·φ(q)
        return self.out(rearrange(o, "b t h d -> b t (h d)"))

    def state_size(self, seq_len: int) -> int:
        """H · F · (d_h + 1) elements (S_t and z_t); H · F · d_h when normalize=False."""
        head_dim = self.d_model // self.num_heads
        return self.num_heads * self.num_features * (head_dim + int(self.normalize))
