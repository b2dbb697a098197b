"""Chunked linear attention with optional scalar or per-channel decay (forward + backward).

    o = chunked_linear_attention(q, k, v, log_decay=None, scale=None)
    o, S_T = chunked_linear_attention(q, k, v, log_decay, initial_state=S_0, output_final_state=True)

Files: `naive.py` (token loop, the definition), `chunk_torch.py` (chunked PyTorch, the CPU path),
`chunk.py` (Triton kernels + autograd), `bench.py` (`run(quick)` rows for `python -m kernels.bench`),
`tune.py` (GPU sweep over segments, warps, stages, chunk and tile sizes: `python -m kernels.linear_attention.tune`).
Dispatch: CUDA tensors -> Triton; CPU tensors -> chunked PyTorch, unless `TRITON_INTERPRET=1`, in which
case the Triton kernels run in Triton's interpreter (how the tests exercise them on a CPU).
"""
from __future__ import annotations

import os

import torch

from .chunk_torch import chunk_linear_attention_torch
from .naive import naive_linear_attention

__all__ = ["chunked_linear_attention", "chunk_linear_attention_torch", "naive_linear_attention"]


def _use_triton(x: torch.Tensor) -> bool:
    """CUDA tensors, or CPU tensors under TRITON_INTERPRET=1, go to the Triton kernels (if triton imports)."""
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"):
        return False
    try:
        from . import chunk  # noqa: F401  (imports triton)
    except ImportError:
        if x.is_cuda:
            raise
        return False
    return True


def _check(q, k, v, log_decay, initial_state) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"chunked_linear_attention: q, k must both be [B, T, H, K], got {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    B, T, H, K = q.shape
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"chunked_linear_attention: v must be [B, T, H, V] = [{B}, {T}, {H}, V], "
                         f"got {tuple(v.shape)}")
    if log_decay is not None and log_decay.shape not in ((B, T, H), (B, T, H, K)):
        raise ValueError(f"chunked_linear_attention: log_decay must be None, [B, T, H] = {[B, T, H]} "
                         f"(scalar per head) or [B, T, H, K] = {[B, T, H, K]} (per channel), "
                         f"got {tuple(log_decay.shape)}")
    if initial_state is not None and initial_state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"chunked_linear_attention: initial_state must be [B, H, K, V] = "
                         f"{[B, H, K, v.shape[-1]]}, got {tuple(initial_state.shape)}")


def chunked_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Causal linear attention with decay, o_t = scale * S_t^T q_t, S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T.

    q, k: [B, T, H, K]; v: [B, T, H, V]; log_decay (g, values <= 0): None, [B, T, H] (one decay per
    head: RetNet, Mamba-2/SSD) or [B, T, H, K] (per key channel: GLA); scale: None means K**-0.5;
    initial_state: [B, H, K, V] (S_0, fp32). Returns o: [B, T, H, V] in v's dtype, or (o, S_T) with
    S_T: [B, H, K, V] fp32 when output_final_state=True. Differentiable in q, k, v, log_decay, S_0.
    """
    _check(q, k, v, log_decay, initial_state)
    if _use_triton(q):
        from .chunk import chunk_linear_attention_triton
        o, ht = chunk_linear_attention_triton(q, k, v, log_decay, scale, initial_state=initial_state,
                                              output_final_state=output_final_state)
    else:
        o, ht = chunk_linear_attention_torch(q, k, v, log_decay, scale, initial_state=initial_state,
                                             output_final_state=output_final_state)
    return (o, ht) if output_final_state else o
