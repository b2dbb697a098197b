"""Step-loop reference for the diagonal linear recurrence: the definition, obviously correct.

    h_t = a_t ⊙ h_{t-1} + b_t,   h_{-1} = initial_state (or 0)

This is the gated recurrence of HGRN (Qin et al. 2023, arXiv 2311.04823, eq. 3), of the MLGRU in
MatMul-free LMs (Zhu et al. 2024, arXiv 2406.02528, eq. 5) and, with complex a, of the LRU.
"""
from __future__ import annotations

import torch


def naive_linear_recurrence(a: torch.Tensor, b: torch.Tensor,
                            initial_state: torch.Tensor | None = None) -> torch.Tensor:
    """a, b: [B, T, D]; initial_state: [B, D] or None -> h: [B, T, D] (dtype of b).

    Accumulates in fp32 (fp64 if the inputs are fp64); differentiable through autograd."""
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    h = b.new_zeros(b.shape[0], b.shape[2], dtype=acc) if initial_state is None else initial_state.to(acc)
    out = []
    for t in range(b.shape[1]):
        h = a[:, t].to(acc) * h + b[:, t].to(acc)   # [B, D]
        out.append(h)
    return torch.stack(out, dim=1).to(b.dtype)      # [B, T, D]
