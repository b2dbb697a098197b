"""kernels.selective_scan: Triton (interpreted on CPU, compiled on GPU) and the PyTorch fallback
against the fp64 step loop, on y, h_L and every gradient (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)."""
from __future__ import annotations

import importlib

import pytest
import torch

lr = importlib.import_module("kernels.linear_recurrence")   # the module (kernels re-exports the function)
ss = importlib.import_module("kernels.selective_scan")
from kernels.selective_scan import chunked_selective_scan, naive_selective_scan

pytestmark = pytest.mark.usefixtures("interpret_on_cpu")

TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}   # relative RMS error
GPU_TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
# dA uses a_t h_{t-1} = h_t - x_t; when exp(ΔA) ~ 0 that difference is ~0 and carries the rounding
# error of x_t, so dA (itself ~0 there) gets a looser relative bound; everything else keeps TOL.
NEAR0_DA_TOL = 1e-3
NAMES = ["y", "h_last", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make_inputs(Bsz, D, L, N, G, dtype, *, full=True, decay="mixed", device="cpu", seed=0):
    """[u, delta, A, B, C, D, z, delta_bias] (the last three None unless full) and the cotangents."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    A = -torch.rand(D, N, generator=gen) * {"mixed": 2.0, "near0": 200.0, "near1": 1e-3}[decay]
    delta = 0.5 * rnd(Bsz, D, L) + (2.0 if decay == "near0" else 0.0)   # softplus(δ) ~ 2: exp(ΔA) ~ 0
    bc_shape = (Bsz, N, L) if G is None else (Bsz, G, N, L)
    xs = [rnd(Bsz, D, L), delta, A, rnd(*bc_shape), rnd(*bc_shape)]
    xs += [rnd(D), rnd(Bsz, D, L), 0.5 * rnd(D)] if full else [None, None, None]
    cot = (rnd(Bsz, D, L).to(device), rnd(Bsz, D, N).to(device))
    return [None if x is None else x.to(device, dtype).requires_grad_() for x in xs], cot


def fwd_bwd(fn, inputs, cot, softplus, upcast=False):
    """Output, last state and the gradient of every given input, keyed by NAMES."""
    if upcast:
        inputs = [None if x is None else x.detach().double().requires_grad_() for x in inputs]
    y, h_last = fn(*inputs, delta_softplus=softplus, return_last_state=True)
    loss = (y.double() * cot[0].double()).sum() + (h_last.double() * cot[1].double()).sum()
    wrt = [x for x in inputs if x is not None]
    names = [n for n, x in zip(NAMES[2:], inputs) if x is not None]
    return dict(zip(["y", "h_last", *names], [y, h_last, *torch.autograd.grad(loss, wrt)]))


def rel_rms(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-8)).item()


def assert_close(out, ref, tol, loose=()):
    assert out.keys() == ref.keys()
    for name in ref:
        tol_n = max(tol, NEAR0_DA_TOL) if name in loose else tol
        assert out[name].shape == ref[name].shape, name
        assert torch.isfinite(out[name]).all(), f"{name}: non-finite values (unwritten output?)"
        err = rel_rms(out[name], ref[name])
        assert err <= tol_n, f"{name}: relative RMS error {err:.2e} > {tol_n:.0e}"


CASES = [  # Bsz, D, L, N, G, dtype, full (D, z, bias, softplus), decay, chunk_len
    (1, 2, 1, 1, None, torch.float32, True, "mixed", None),      # L = 1, N = 1
    (2, 4, 19, 3, 2, torch.float32, True, "mixed", 8),           # groups, ragged L, 3 chunks
    (1, 3, 20, 16, None, torch.float32, False, "mixed", None),   # bare: no D, z, bias, softplus
    (1, 2, 12, 5, 1, torch.float32, True, "near0", None),        # exp(ΔA) ~ 0
    (1, 2, 17, 4, None, torch.float32, False, "near1", 8),       # exp(ΔA) ~ 1
    (1, 2, 9, 64, None, torch.float32, False, "mixed", None),    # N = 64
    (1, 4, 10, 4, 2, torch.float16, True, "mixed", None),
]


def test_triton_path_is_interpreted_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the compiled kernels run")
    assert ss.triton_scan.INTERPRETED and ss.use_triton(torch.zeros(1))


# the shipped "time" variant (its backward without a reverse scan: lane gathers and a forward scan),
# with a reverse scan in triton's argument order ("time-revplain") or the order-proof one
# ("time-revindex"), with its backward not chunked over time ("time-nochunks"; shipped: chunked when
# it has few programs, the cases with chunk_len), or followed by the sequential backward
# ("time-bwdseq", whose checkpoints lie inside the forward's tiles; otherwise the forward's tiles are
# shorter than the checkpoint spacing); "seq"
# "time-prefetch": the loops that load one step ahead (shipped for 16-bit inputs only) on every case.
# The "time" forward is the lane kernel (one channel per lane, sequential in time); "time-states" the
# forward over [BLOCK_D, N, BLOCK_T] tiles, "time-lane16" (GPU) the lane kernel with two lanes per channel
VARIANTS = ["time", "time-states", "time-revindex", "time-revplain", "time-nochunks", "time-bwdseq", "time-prefetch",
            "seq"]


def _variant(name, monkeypatch):
    """The triton_selective_scan variant for a test id; switches the "time" backward if asked."""
    if name == "time-bwdseq":       # the "time" forward with checkpoints inside its tiles
        monkeypatch.setitem(ss.triton_scan.TILES["time"], "bwd", "seq")
        return "time"
    if name == "time-states":
        monkeypatch.setitem(ss.triton_scan.TILES["time"], "fwd", "states")
        return "time"
    if name == "time-lane16":
        monkeypatch.setitem(ss.triton_scan.TILES["time"], "lane_block_d", 16)
        return "time"
    if name == "time-prefetch":
        monkeypatch.setattr(ss.triton_scan, "PREFETCH_16BIT_ONLY", False)
        return "time"
    if name == "time-nochunks":
        monkeypatch.setitem(ss.triton_scan.TILES["time"], "bwd_chunks", False)
        return "time"
    if name in ("time-revindex", "time-revplain"):
        monkeypatch.setitem(ss.triton_scan.TILES["time"], "rev", name[len("time-rev"):])
        return "time"
    return name


def test_shipped_variant_is_time():
    assert ss.triton_scan.VARIANT == "time"
    assert ss.triton_scan.TILES["time"]["bwd"] == "time" and ss.triton_scan.TILES["time"]["rev"] == "gather"
    assert ss.triton_scan.TILES["time"]["fwd"] == "lane"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("Bsz,D,L,N,G,dtype,full,decay,chunk_len", CASES)
def test_triton_matches_naive(Bsz, D, L, N, G, dtype, full, decay, chunk_len, variant, poison, monkeypatch):
    variant = _variant(variant, monkeypatch)
    inputs, cot = make_inputs(Bsz, D, L, N, G, dtype, full=full, decay=decay)
    ref = fwd_bwd(naive_selective_scan, inputs, cot, full, upcast=True)
    impl = lambda *a, **k: ss.triton_selective_scan(*a, **k, chunk_len=chunk_len, variant=variant)
    out = fwd_bwd(impl, inputs, cot, full)
    assert out["y"].dtype == dtype and out["h_last"].dtype == torch.float32
    assert_close(out, ref, TOL[dtype], loose=("dA",) if decay == "near0" else ())


# (shape, the variants run by `make test`): the first shape (several recompute tiles per backward program,
# 3 chunks) takes about 10 s per variant in the interpreter, so the variants the GPU does not run by
# default ("time" with prefetch is its bf16 path) go to `make test-slow`; the second runs them all
Y_ONLY_SHAPES = [((2, 5, 41, 7, None, True, "mixed", 16), {"time", "time-prefetch"}),
                 ((1, 6, 23, 2, 3, True, "near1", None), set(VARIANTS))]


@pytest.mark.parametrize("Bsz,D,L,N,G,full,decay,chunk_len,variant", [
    pytest.param(*shape, variant, marks=() if variant in fast else pytest.mark.slow)
    for shape, fast in Y_ONLY_SHAPES for variant in VARIANTS])
def test_triton_y_only_matches_naive(Bsz, D, L, N, G, full, decay, chunk_len, variant, poison, monkeypatch):
    """Only y is used: the backward runs without ∂L/∂h_L (dlast is None)."""
    variant = _variant(variant, monkeypatch)
    inputs, (cot, _) = make_inputs(Bsz, D, L, N, G, torch.float32, full=full, decay=decay)
    wrt = [x for x in inputs if x is not None]
    xd = [None if x is None else x.detach().double().requires_grad_() for x in inputs]
    y_ref = naive_selective_scan(*xd, delta_softplus=full)
    ref = torch.autograd.grad(y_ref, [x for x in xd if x is not None], cot.double())
    y = ss.triton_selective_scan(*inputs, delta_softplus=full, chunk_len=chunk_len, variant=variant)
    out = torch.autograd.grad(y, wrt, cot)
    assert rel_rms(y, y_ref) <= TOL[torch.float32]
    for name, o, r in zip(NAMES[2:], out, ref):
        assert torch.isfinite(o).all(), name
        assert rel_rms(o, r) <= TOL[torch.float32], name


def test_rejects_unknown_variant():
    inputs, _ = make_inputs(1, 2, 3, 2, None, torch.float32)
    with pytest.raises(ValueError, match="variant"):
        ss.triton_selective_scan(*inputs, variant="blelloch")


def test_dispatch_runs_triton_under_interpreter(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    calls = []
    real = ss.triton_selective_scan
    monkeypatch.setattr(ss, "triton_selective_scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs, _ = make_inputs(1, 2, 5, 3, None, torch.float32)
    y = ss.selective_scan(*inputs)
    assert calls and torch.allclose(y, naive_selective_scan(*inputs), atol=1e-5)


@pytest.mark.parametrize("Bsz,D,L,N,G,dtype,full,decay", [
    (1, 2, 1, 1, None, torch.float32, True, "mixed"),
    (2, 6, 70, 3, 3, torch.float32, True, "near0"),
    (2, 4, 45, 16, None, torch.float32, False, "near1"),
    (2, 4, 33, 4, 2, torch.bfloat16, True, "mixed"),
])
def test_fallback_matches_naive(Bsz, D, L, N, G, dtype, full, decay):
    inputs, cot = make_inputs(Bsz, D, L, N, G, dtype, full=full, decay=decay)
    ref = fwd_bwd(naive_selective_scan, inputs, cot, full, upcast=True)
    out = fwd_bwd(chunked_selective_scan, inputs, cot, full)
    assert_close(out, ref, TOL[dtype])


def test_fallback_runs_a_given_chunk_step_once_per_chunk():
    """The benchmark's torch.compile row passes a compiled `chunk_step` as `step`: it must be the step
    that runs, once per chunk (the last one shorter), with the default step's results."""
    from kernels.selective_scan.torch_fast import chunk_step

    inputs, _cot = make_inputs(2, 4, 70, 3, None, torch.float32, full=True, decay="mixed")
    u, delta, A, B, C, D, z, bias = (x.detach() for x in inputs)
    calls = []

    def step(*args):
        calls.append(args[1].shape[-1])
        return chunk_step(*args)

    kw = dict(D=D, z=z, delta_bias=bias, delta_softplus=True, chunk=32)
    out = chunked_selective_scan(u, delta, A, B, C, step=step, **kw)
    assert calls == [32, 32, 6]
    assert torch.equal(out, chunked_selective_scan(u, delta, A, B, C, **kw))


def test_rejects_bad_groups():
    u = torch.rand(1, 6, 4)
    with pytest.raises(ValueError, match="divisible by G"):
        ss.selective_scan(u, u, -torch.rand(6, 2), torch.rand(1, 4, 2, 4), torch.rand(1, 4, 2, 4))


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("variant", VARIANTS + ["time-lane16"])
@pytest.mark.parametrize("dtype", list(GPU_TOL))
@pytest.mark.parametrize("Bsz,D,L,N,G,full,decay", [
    (2, 64, 1000, 16, None, True, "mixed"),
    (1, 256, 4096, 16, 4, True, "mixed"),      # few programs: chunked forward
    (2, 48, 300, 3, 2, False, "near0"),
    (1, 32, 257, 64, None, True, "near1"),
    (4200, 64, 3, 16, None, True, "mixed"),    # B*D/BLOCK_D > 65535 programs on grid axis 0
])
def test_gpu_matches_reference(Bsz, D, L, N, G, full, decay, dtype, variant, monkeypatch):
    variant = _variant(variant, monkeypatch)
    inputs, cot = make_inputs(Bsz, D, L, N, G, dtype, full=full, decay=decay, device="cuda")
    ref = fwd_bwd(chunked_selective_scan, inputs, cot, full, upcast=True)
    out = fwd_bwd(lambda *a, **k: ss.triton_selective_scan(*a, **k, variant=variant), inputs, cot, full)
    assert ss.use_triton(inputs[0])
    assert_close(out, ref, GPU_TOL[dtype], loose=("dA",) if decay == "near0" else ())


def test_kernels_softplus_is_fp32_accurate():
    """Δ = softplus(δ + bias) inside the kernels (max(x, 0) + a polynomial log1p(exp(-|x|))) against
    torch's softplus in fp64: relative error within a few fp32 ulps from x = -80 to 100 (torch's
    threshold: x itself above 20). Measured 2.5e-7 (the interpreter's exp2 is exact; the GPU's
    ex2.approx adds up to 2 ulp); log(1 + exp(x)), the formula before, errs by 100% below x ~ -17, and
    exp2 of the rounded x log2 e, as tl.exp computes, by up to 3.6e-6 at x = -60."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the kernels' softplus is covered by the GPU tests")
    import triton
    import triton.language as tl

    @triton.jit
    def probe(x_ptr, out_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        dt, _raw = ss.triton_scan._delta_of(tl.load(x_ptr + offs), offs >= 0, 0.0, False, True)
        tl.store(out_ptr + offs, dt)

    x = torch.cat([torch.linspace(-80, 100, 4093), torch.tensor([0.0, 20.0, -1e-3])])
    x = torch.cat([x, torch.zeros(4096 - len(x))])
    out = torch.empty_like(x)
    probe[(1,)](x, out, BLOCK=4096)
    ref = torch.nn.functional.softplus(x.double())
    assert ((out.double() - ref).abs() / ref).max() < 5e-7


def test_reverse_scan_probe_holds_in_the_interpreter():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the probe runs compiled (covered by the GPU tests)")
    assert ss.triton_scan.reverse_scan_in_order(torch.device("cpu"), 2, 8, 4)


def test_time_backward_uses_the_order_proof_scan_when_the_probe_fails(poison, monkeypatch):
    """A triton whose reverse scans reorder the combine's arguments must not give wrong gradients:
    the backward then passes REV_INDEX=True and still matches the reference."""
    ts = ss.triton_scan
    seen, real = [], ts._ss_bwd_time_kernel

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.append(kwargs["REV_INDEX"])
                return real[grid](*args, **kwargs)
            return launch

    monkeypatch.setitem(ts.TILES["time"], "rev", "plain")
    monkeypatch.setattr(ts, "reverse_scan_in_order", lambda *a: False)
    monkeypatch.setattr(ts, "_ss_bwd_time_kernel", Spy())
    inputs, cot = make_inputs(1, 4, 13, 3, None, torch.float32, full=True)
    ref = fwd_bwd(naive_selective_scan, inputs, cot, True, upcast=True)
    out = fwd_bwd(lambda *a, **k: ss.triton_selective_scan(*a, **k, variant="time"), inputs, cot, True)
    assert seen == [True]
    assert_close(out, ref, TOL[torch.float32])


def test_time_backward_chunks_over_time(poison, monkeypatch):
    """With bwd_chunks on, a forced chunk length splits the backward into a carry pass (state only)
    and a gradient pass from the true carries, whatever ∂L/∂h_L is; results match the reference."""
    ts = ss.triton_scan
    launches, real = [], ts._ss_bwd_time_kernel

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append((kwargs["STATE_ONLY"], kwargs["HAS_GINIT"], args[-2]))   # n_chunks
                return real[grid](*args, **kwargs)
            return launch

    monkeypatch.setitem(ts.TILES["time"], "bwd_chunks", True)
    monkeypatch.setattr(ts, "_ss_bwd_time_kernel", Spy())
    inputs, cot = make_inputs(2, 3, 30, 4, None, torch.float32, full=True, decay="near1")
    ref = fwd_bwd(naive_selective_scan, inputs, cot, True, upcast=True)
    out = fwd_bwd(lambda *a, **k: ss.triton_selective_scan(*a, **k, variant="time", chunk_len=8), inputs, cot, True)
    assert launches == [(True, False, 4), (False, True, 4)]     # L = 30: 4 tiles of 8, one per chunk
    assert_close(out, ref, TOL[torch.float32])


@pytest.mark.parametrize("da_parts, lean", [(True, True), (True, False), (False, False)],
                         ids=["da-parts-lean", "da-parts-plain", "da-registers-plain"])
def test_time_backward_with_the_gpu_tiles(poison, monkeypatch, da_parts, lean):
    """The shipped GPU tiles, interpreted (the other interpreter tests use tiles of 4-8 steps): the backward
    at BLOCK_D = 2, BLOCK_T = 256 over two tiles (the second partial), with dA summed per lane in DA_P = 32
    parts of 8 steps (`_da_parts`) and dy reversed once per tile (`_rev_lean`), or dA in the register tile
    and C dy reversed per state (TILES["time"]["da_parts"], ["rev_lean"] off: the register tile is what
    one-tile programs use, partials without the lean form what fp32 inputs use at long L), and the lane
    forward at 32 channels per program."""
    ts = ss.triton_scan
    monkeypatch.setattr(ts, "INTERPRETED", False)                # _blocks and _lane_block_d as on a GPU
    monkeypatch.setitem(ts.TILES["time"], "da_parts", da_parts)
    monkeypatch.setitem(ts.TILES["time"], "rev_lean", lean)
    monkeypatch.setattr(ts, "_sm_count", lambda device: 132)
    assert ts._blocks("time", 16, 4, backward=True) == (2, 16, 256, 1) and ts._da_parts(256) == 32
    inputs, cot = make_inputs(1, 4, 300, 16, None, torch.float32, full=True, decay="mixed")
    ref = fwd_bwd(naive_selective_scan, inputs, cot, True, upcast=True)
    out = fwd_bwd(lambda *a, **k: ss.triton_selective_scan(*a, **k, variant="time"), inputs, cot, True)
    assert_close(out, ref, TOL[torch.float32])
