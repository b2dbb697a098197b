"""Where an op's time goes on the GPU: `python -m kernels.profile [--ops la,ss,lr] [--iters 20]`.

For each op at the benchmark's long shape and one Zoology shape (bf16), runs forward+backward under
`torch.profiler` and prints, per iteration: the wall time (host included, as `do_bench` sees a
host-bound op), the summed time of the GPU kernels, and the five most expensive kernels. A wall time
well above the kernel sum means launch/host overhead, not the kernels, sets the speed.
`--host` (CPU) times the Python work of a linear-attention forward+backward with its launches stubbed.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F


def _cases(ops: set[str]):
    dev = dict(device="cuda", dtype=torch.bfloat16)
    if "la" in ops:
        from . import chunked_linear_attention

        for B, T, H, K in [(8, 4096, 8, 64), (8, 4096, 8, 128), (256, 256, 4, 64)]:
            for decay in ("none", "scalar", "channel"):
                q, k, v = (torch.randn(B, T, H, K, **dev, requires_grad=True) for _ in range(3))
                g = None
                if decay != "none":
                    gshape = (B, T, H) if decay == "scalar" else (B, T, H, K)
                    g = (F.logsigmoid(torch.randn(gshape, device="cuda")) / 8).to(torch.bfloat16).requires_grad_()
                args = (q, k, v, g)
                yield (f"linear_attention {decay} B={B} T={T} H={H} K=V={K}",
                       lambda a=args, sc=K**-0.5: chunked_linear_attention(*a, sc), [x for x in args if x is not None])
    if "ss" in ops:
        from . import selective_scan
        from .tune_scans import _ss_inputs

        for B, D, L, N in [(8, 2048, 4096, 16), (256, 256, 256, 16)]:
            args, _cot = _ss_inputs(B, D, L, N, torch.bfloat16)     # [u, δ, A, B, C, D, z, δ_bias]
            yield (f"selective_scan B={B} D={D} L={L} N={N}",
                   lambda a=args: selective_scan(*a[:5], D=a[5], z=a[6], delta_bias=a[7], delta_softplus=True), args)
    if "lr" in ops:
        from . import linear_recurrence

        for B, T, D in [(8, 4096, 2048), (256, 256, 256)]:
            a = torch.sigmoid(torch.randn(B, T, D, device="cuda")).to(torch.bfloat16).requires_grad_()
            b = torch.randn(B, T, D, **dev, requires_grad=True)
            yield f"linear_recurrence B={B} T={T} D={D}", lambda a_=a, b_=b: linear_recurrence(a_, b_), (a, b)


def _step(fn, leaves, cot):
    out = fn()
    out = out[0] if isinstance(out, tuple) else out
    out.backward(cot if cot is not None and cot.shape == out.shape else torch.ones_like(out))
    for t in leaves:
        t.grad = None


def profile(name, fn, leaves, iters: int) -> None:
    out = fn()
    out = out[0] if isinstance(out, tuple) else out
    cot = torch.randn_like(out)
    for _ in range(3):
        _step(fn, leaves, cot)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        _step(fn, leaves, cot)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / iters * 1e3
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(iters):
            _step(fn, leaves, cot)
        torch.cuda.synchronize()
    kernels = []
    for e in prof.key_averages():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue  # host ranges (e.g. an autograd Function) also carry their launches' device time
        t = getattr(e, "self_device_time_total", None)
        t = getattr(e, "self_cuda_time_total", 0) if t is None else t
        if t > 0:
            kernels.append((t / iters / 1e3, e.count // iters, e.key))
    kernels.sort(reverse=True)
    total = sum(t for t, _, _ in kernels)
    print(f"\n{name}: wall {wall:.3f} ms/iter, GPU kernels {total:.3f} ms/iter ({len(kernels)} kinds)")
    for t, n, key in kernels[:6]:
        print(f"   {t:8.3f} ms  x{n:<3d} {key[:110]}")


def host_overhead(iters: int = 2000) -> float:
    """Microseconds of Python per chunked-linear-attention forward+backward outside the kernel
    launches (launches stubbed out; tiny CPU tensors, scalar decay): our autograd Function's own
    host work, which a small GPU problem cannot hide."""
    from .linear_attention import chunk

    q, k, v = (torch.randn(1, 64, 1, 64, requires_grad=True) for _ in range(3))
    g = (-torch.rand(1, 64, 1)).requires_grad_()
    cot = torch.ones(1, 64, 1, 64)
    launch, chunk._launch = chunk._launch, lambda *a, **kw: None
    try:
        for _ in range(10):
            chunk._ChunkLinearAttention.apply(q, k, v, g, None, 0.125)[0].backward(cot)
        t0 = time.perf_counter()
        for _ in range(iters):
            chunk._ChunkLinearAttention.apply(q, k, v, g, None, 0.125)[0].backward(cot)
        return (time.perf_counter() - t0) / iters * 1e6
    finally:
        chunk._launch = launch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="la,ss,lr")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--host", action="store_true",
                        help="CPU only: the Python time of a linear-attention fwd+bwd without its launches")
    args = parser.parse_args()
    if args.host:
        print(f"linear attention fwd+bwd, host work without launches: {host_overhead():.0f} us "
              f"(torch {torch.__version__}, {platform.processor() or 'cpu'})")
        return
    if not torch.cuda.is_available():
        raise SystemExit("python -m kernels.profile needs a CUDA GPU")
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    for name, fn, leaves in _cases(set(args.ops.split(","))):
        try:
            profile(name, fn, leaves, args.iters)
        except Exception as e:  # noqa: BLE001 - one op failing must not hide the others
            print(f"\n{name}: failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
