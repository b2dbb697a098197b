"""Kernel-test setup: on a machine without CUDA, import triton in interpreter mode.

Triton decides at import time whether its own @jit helpers (tl.zeros, tl.cdiv, ...) are compiled or
interpreted, so TRITON_INTERPRET=1 must be set before the first `import triton`. This conftest is loaded
before the kernel test modules are collected; it imports triton with the flag set and then restores the
variable, so that tests outside tests/kernels (mixers on CPU) keep the fast PyTorch dispatch. Kernel tests
that want the interpreter request the `interpret` fixture, which sets the flag for their duration.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    except ImportError:  # no triton: the interpreter tests fail on their own import
        pass
    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture
def interpret(monkeypatch):
    """Route CPU tensors to the Triton kernels, run by Triton's interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield
