"""Kernel-test setup: on a machine without CUDA, import triton in interpreter mode.

Triton decides at import time whether its own @jit helpers (tl.zeros, tl.cdiv, ...) are compiled or
interpreted, so TRITON_INTERPRET=1 must be set before the first `import triton`. This conftest is loaded
before the kernel test modules are collected; it imports triton with the flag set and then restores the
variable, so that tests outside tests/kernels (mixers on CPU) keep the fast PyTorch dispatch; the scan
modules, which decorate their kernels at import, are imported here too. Kernel tests that want the
interpreter request the `interpret` fixture, which sets the flag for their duration.
"""
from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch


def _interpreted_scan_kernels() -> None:
    """The scan modules decorate their kernels when imported: import them now, in interpreter mode,
    and re-import them if another test module imported them earlier for compilation."""
    lr = importlib.import_module("kernels.linear_recurrence")
    ss = importlib.import_module("kernels.selective_scan")
    if lr.triton_scan is None or ss.triton_scan is None:
        return
    if not (lr.triton_scan.INTERPRETED and ss.triton_scan.INTERPRETED):
        for module in (lr.triton_scan, lr, ss.triton_scan, ss):
            importlib.reload(module)


if not torch.cuda.is_available():
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        if "triton" not in sys.modules:
            import triton.language
        _interpreted_scan_kernels()
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


@pytest.fixture
def interpret_on_cpu(monkeypatch):
    """The interpreter on a machine without CUDA; compiled kernels where CUDA is present."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield
