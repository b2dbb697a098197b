"""Triton kernels for the recurrent parts of sequence mixers, each beside its PyTorch reference.

    import kernels
    o = kernels.chunked_linear_attention(q, k, v, log_decay=None, scale=None)
    y = kernels.selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False)
    h = kernels.linear_recurrence(a, b, initial_state=None)

Dispatch: CUDA tensors run the Triton kernels; CPU tensors run the PyTorch path, unless
`TRITON_INTERPRET=1` (then the Triton kernels run in Triton's interpreter, for testing).
This package does not import `zoo`.
"""
from .linear_attention import chunked_linear_attention
from .linear_recurrence import linear_recurrence
from .selective_scan import selective_scan

__all__ = ["chunked_linear_attention", "linear_recurrence", "selective_scan"]
