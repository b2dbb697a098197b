"""Diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t (HGRN, MLGRU, LRU-style mixers).

    h = linear_recurrence(a, b, initial_state=None)   # a, b: [B, T, D]; initial_state: [B, D]

Implementations (same signature): `naive_linear_recurrence` (step loop, the definition),
`chunked_linear_recurrence` (vectorised PyTorch, CPU fallback), `triton_linear_recurrence`
(Triton forward + backward). Dispatch: CUDA tensors -> Triton; CPU tensors -> the PyTorch
fallback, unless TRITON_INTERPRET=1 (then the Triton kernels run in the interpreter).
"""
from __future__ import annotations

import os

import torch

from .naive import naive_linear_recurrence
from .torch_fast import chunked_linear_recurrence

try:
    from . import triton_scan
    from .triton_scan import triton_linear_recurrence
except ImportError:  # triton missing or broken: the PyTorch paths still work
    triton_scan = None
    triton_linear_recurrence = None


def use_triton(x: torch.Tensor) -> bool:
    """True when the Triton path runs for tensor x (CUDA, or the interpreter is switched on)."""
    if triton_scan is None:
        return False
    # the interpreter is chosen when the kernels are decorated (TRITON_INTERPRET at import); CPU
    # tensors use it only while TRITON_INTERPRET=1 is also set at call time, as the other ops do
    return x.is_cuda or (triton_scan.INTERPRETED and os.environ.get("TRITON_INTERPRET", "0") == "1")


def linear_recurrence(a: torch.Tensor, b: torch.Tensor,
                      initial_state: torch.Tensor | None = None) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t with fp32 accumulation.

    a, b: [B, T, D]; initial_state: [B, D] or None (zeros). Returns h: [B, T, D] in b's dtype.
    Differentiable in a, b and initial_state."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"linear_recurrence: a and b must both be [B, T, D], got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if initial_state is not None and initial_state.shape != (b.shape[0], b.shape[2]):
        raise ValueError(f"linear_recurrence: initial_state must be [B, D] = "
                         f"{(b.shape[0], b.shape[2])}, got {tuple(initial_state.shape)}")
    if use_triton(b):
        return triton_linear_recurrence(a, b, initial_state)
    return chunked_linear_recurrence(a, b, initial_state)


__all__ = ["linear_recurrence", "naive_linear_recurrence", "chunked_linear_recurrence",
           "triton_linear_recurrence", "use_triton"]
