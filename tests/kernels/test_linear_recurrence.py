"""kernels.linear_recurrence: Triton (interpreted on CPU, compiled on GPU) and the PyTorch fallback
against the fp64 step loop, on h and every gradient (da, db, dinitial_state)."""
from __future__ import annotations

import importlib

import pytest
import torch

lr = importlib.import_module("kernels.linear_recurrence")   # the module (kernels re-exports the function)
from kernels.linear_recurrence import chunked_linear_recurrence, naive_linear_recurrence

pytestmark = pytest.mark.usefixtures("interpret_on_cpu")

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}   # relative RMS error
GPU_TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make_inputs(B, T, D, dtype, decay="mixed", h0=True, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = {"mixed": (0.0, 1.0), "near0": (0.0, 1e-3), "near1": (0.999, 1.0)}[decay]
    a = lo + (hi - lo) * torch.rand(B, T, D, generator=gen)
    if decay == "near0":
        a[..., ::2] = 0.0                                   # exact zeros: forget everything
    b = torch.randn(B, T, D, generator=gen)
    init = torch.randn(B, D, generator=gen) if h0 else None
    dh = torch.randn(B, T, D, generator=gen)
    cast = lambda x: None if x is None else x.to(device, dtype).requires_grad_()
    return [cast(a), cast(b), cast(init)], dh.to(device)


def fwd_bwd(fn, inputs, dh, upcast=False):
    """{'h', 'da', 'db', 'dh0'} for fn(a, b, h0), upcast to fp64 for the reference."""
    if upcast:
        inputs = [None if x is None else x.detach().double().requires_grad_() for x in inputs]
    h = fn(*inputs)
    wrt = [x for x in inputs if x is not None]
    grads = torch.autograd.grad(h, wrt, dh.to(h.dtype))
    return dict(zip(["h", "da", "db", "dh0"], [h, *grads]))


def rel_rms(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-8)).item()


def assert_close(out, ref, tol):
    assert out.keys() == ref.keys()
    for name in ref:
        assert out[name].shape == ref[name].shape, name
        assert torch.isfinite(out[name]).all(), f"{name}: non-finite values (unwritten output?)"
        err = rel_rms(out[name], ref[name])
        assert err <= tol, f"{name}: relative RMS error {err:.2e} > {tol:.0e}"


CASES = [  # B, T, D, dtype, decay, h0, chunk_len (None: the kernel's choice)
    (1, 1, 3, torch.float32, "mixed", True, None),        # T = 1
    (2, 37, 5, torch.float32, "mixed", True, 16),         # T not a multiple of the tile; 3 chunks
    (2, 40, 20, torch.float32, "near0", False, None),     # a = 0 exactly; D > BLOCK_D
    (1, 50, 4, torch.float32, "near1", True, 16),         # weak decay, chunked
    (2, 21, 6, torch.float16, "mixed", True, 16),
]


def test_triton_path_is_interpreted_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the compiled kernels run")
    assert lr.triton_scan.INTERPRETED and lr.use_triton(torch.zeros(1))


@pytest.mark.parametrize("prefetch", [False, True], ids=["load-at-use", "prefetch"])
@pytest.mark.parametrize("B,T,D,dtype,decay,h0,chunk_len", CASES)
def test_triton_matches_naive(B, T, D, dtype, decay, h0, chunk_len, prefetch, poison, monkeypatch):
    """Both tile loops: loads at their use (short sequences) and issued one tile ahead (from PREFETCH_T
    steps on; lowered here so that these short cases take that path)."""
    if prefetch:
        monkeypatch.setattr(lr.triton_scan, "PREFETCH_T", 0)
    inputs, dh = make_inputs(B, T, D, dtype, decay, h0)
    ref = fwd_bwd(naive_linear_recurrence, inputs, dh, upcast=True)
    out = fwd_bwd(lambda *x: lr.triton_linear_recurrence(*x, chunk_len=chunk_len), inputs, dh)
    assert out["h"].dtype == dtype
    assert_close(out, ref, TOL[dtype])


def test_dispatch_runs_triton_under_interpreter(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    calls = []
    real = lr.triton_linear_recurrence
    monkeypatch.setattr(lr, "triton_linear_recurrence", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs, _ = make_inputs(1, 5, 3, torch.float32)
    h = lr.linear_recurrence(*inputs)
    assert calls and torch.allclose(h, naive_linear_recurrence(*inputs), atol=1e-6)


@pytest.mark.parametrize("B,T,D,dtype,decay,h0", [
    (1, 1, 3, torch.float32, "mixed", True),
    (2, 150, 7, torch.float32, "near0", True),
    (2, 130, 7, torch.float32, "near1", False),
    (2, 70, 5, torch.bfloat16, "mixed", True),
])
def test_fallback_matches_naive(B, T, D, dtype, decay, h0):
    inputs, dh = make_inputs(B, T, D, dtype, decay, h0)
    ref = fwd_bwd(naive_linear_recurrence, inputs, dh, upcast=True)
    out = fwd_bwd(lambda *x: chunked_linear_recurrence(*x, chunk=32), inputs, dh)
    assert_close(out, ref, TOL[dtype])


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="initial_state"):
        lr.linear_recurrence(torch.rand(2, 3, 4), torch.rand(2, 3, 4), torch.rand(2, 5))


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", list(GPU_TOL))
@pytest.mark.parametrize("B,T,D,decay,chunk_len", [
    (2, 4096, 256, "mixed", None),       # few programs: chunked across time
    (1, 1000, 300, "near1", 128),
    (4, 333, 64, "near0", None),
    (1100, 4, 4096, "mixed", None),      # B*D/BLOCK_D > 65535 programs on grid axis 0
])
def test_gpu_matches_reference(B, T, D, decay, chunk_len, dtype):
    """T = 4096 takes the prefetching tile loop (PREFETCH_T), the others load at use."""
    inputs, dh = make_inputs(B, T, D, dtype, decay, device="cuda")
    ref = fwd_bwd(lambda *x: chunked_linear_recurrence(*x, chunk=64), inputs, dh, upcast=True)
    out = fwd_bwd(lambda *x: lr.triton_linear_recurrence(*x, chunk_len=chunk_len), inputs, dh)
    assert lr.use_triton(inputs[0])
    assert_close(out, ref, GPU_TOL[dtype])
