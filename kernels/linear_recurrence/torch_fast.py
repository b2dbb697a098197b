"""Vectorised PyTorch form of the diagonal linear recurrence, the CPU fallback.

    h_t = a_t ⊙ h_{t-1} + b_t

The pairs (a_t, b_t) compose associatively, (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2), so the
inclusive scan can run in log2(T) vectorised steps (Hillis & Steele 1986; Blelloch 1990; used for
RNNs by Martin & Cundy 2018, arXiv 1709.04057). Unlike the log-space cumulative-sum form
(h = exp(cumsum log a) * cumsum(b / exp(cumsum log a))), it never divides by a product of decays,
so it is exact for a = 0 and decays near 0 and does not overflow for long T. The scan runs over
chunks of `chunk` steps, carrying the state between chunks, which bounds the working memory and the
work (O(T log chunk) instead of O(T log T)).
"""
from __future__ import annotations

import torch


def _scan_inplace(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hillis-Steele inclusive scan along dim 1 of (a, b): [B, C, D] -> (prod a, h with h_{-1}=0)."""
    C, k = a.shape[1], 1
    while k < C:
        # step k: element t absorbs element t-k (the pair to its left); t < k is already final
        b = torch.cat([b[:, :k], a[:, k:] * b[:, :-k] + b[:, k:]], dim=1)
        a = torch.cat([a[:, :k], a[:, k:] * a[:, :-k]], dim=1)
        k *= 2
    return a, b


def chunked_linear_recurrence(a: torch.Tensor, b: torch.Tensor,
                              initial_state: torch.Tensor | None = None, *,
                              chunk: int = 64) -> torch.Tensor:
    """a, b: [B, T, D]; initial_state: [B, D] or None -> h: [B, T, D] (dtype of b), fp32 math."""
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    Bsz, T, D = b.shape
    h = b.new_zeros(Bsz, D, dtype=acc) if initial_state is None else initial_state.to(acc)
    out = []
    for t0 in range(0, T, chunk):
        ac, bc = _scan_inplace(a[:, t0:t0 + chunk].to(acc), b[:, t0:t0 + chunk].to(acc))
        hc = ac * h[:, None] + bc   # [B, C, D]: add the carried state, decayed by the prefix products
        out.append(hc)
        h = hc[:, -1]
    return torch.cat(out, dim=1).to(b.dtype)
