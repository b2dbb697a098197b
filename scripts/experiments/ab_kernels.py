"""A/B timing of two versions of a kernel module in one process (GPU).

The working tree's version against a commit's, or against an edited copy; session 10's before/after
figures for the exp2 changes come from it.

    python scripts/experiments/ab_kernels.py ss git:a67b953              # selective scan: a67b953 vs now
    python scripts/experiments/ab_kernels.py la git:a67b953 --decays scalar,channel
    python scripts/experiments/ab_kernels.py ss /tmp/triton_scan_variant.py   # an edited copy

Each version is loaded as its own module (kernels/<op>/_ab_<name>.py, removed at exit), so their
Triton kernels are separate JIT functions; forward+backward is replayed from a CUDA graph
(`kernels.bench.time_graph`), three times per version in alternation, and the outputs' and
gradients' largest relative difference to the first version is printed.

Readings (H100 80GB HBM3, torch 2.11, triton 3.6, bf16, fwd+bwd ms; session 10, the selective scan's
with its own draws of the inputs that `kernels.tune_scans._ss_inputs` now gives, same distributions):
  ss git:a67b953 (the exp2 softplus and forward gate, 5c06123): B=256 D=256 L=256 N=16 0.937 -> 0.918,
    B=8 D=2048 L=4096 4.457 -> 4.415. With `_sigmoid` also in the time backward (its four tl.sigmoid
    calls replaced, an edited copy): 1.03 at the Zoology shape.
  la git:a67b953 (exp2, scale folded; 3e080d4): per channel B=8 T=4096 H=8 K=V=64 0.792 -> 0.721,
    scalar 0.320 -> 0.307; per channel K=V=128 1.755 (3e080d4) -> 1.686 (8da5059, dk/dv with scale
    outside the exponent), T=16384 6.71 -> 6.48.
Session 11 (`la <file> --decays none,scalar`, old = the session's starting chunk.py, 93573ae):
  the unchained sums (f59dc1a): scalar B=8 T=4096 H=8 K=V=128 1.01 -> 0.67, T=16384 3.81 -> 2.49;
    no decay K=V=128 0.529 -> 0.470, T=16384 1.92 -> 1.69; K=V=64 unchanged (4 warps).
  then q and x one chunk ahead (161563b): scalar K=V=64 T=4096 0.291 -> 0.278, Zoology 0.240 -> 0.224.
  then q . dq as a [BT, 1] column (d9a9352): scalar K=V=128 0.676 -> 0.647, T=16384 2.485 -> 2.345.
  93573ae vs d9a9352 with --called: from a graph scalar K=V=64 T=4096 0.300 -> 0.274, K=V=128 1.029 ->
    0.648, T=16384 3.78 -> 2.33; no decay K=V=128 0.533 -> 0.471, T=16384 1.93 -> 1.70; as called the
    T=4096 and Zoology shapes ranged 0.56-1.9 ms for one version within the run (the host), and at
    T=16384 followed the graph (no decay 1.97 -> 1.72, scalar 3.79 -> 2.36).
  Not kept: q . dq from dq rounded to bf16 (1-2% faster, but dlog_decay moved by up to 5% relative;
    `kernel_variants.py la-dq-rounded`).
  la <3236791's chunk.py> --decays channel (the intra-chunk gradient pass at 4 warps above K=64):
    K=V=128 T=4096 1.680 -> 1.644, T=16384 6.49 -> 6.32; K=V=64 and Zoology unchanged.
  ss: the dB/dC atomics split into halves of 8 steps (not kept; `kernel_variants.py ss-atomics`):
    B=8 D=2048 L=4096 4.41 -> 4.72, B=256 D=256 L=256 0.92 -> 1.29.
Session 12 (`la <baf1bfe's chunk.py> --decays none,scalar,channel`, new = 45efc07: the local dS from the dq
  sweep, 64-wide per-channel segment passes, the segment passes in pieces over the read segments, scalar
  dlog_decay's sums in their own kernel at 8 warps), B=8 H=8: K=V=64 T=4096 none 0.247 -> 0.229, scalar
  0.275 -> 0.251, per channel 0.725 -> 0.600; K=V=128 T=4096 none 0.473 -> 0.431, scalar 0.646 -> 0.597,
  per channel 1.651 -> 1.526; T=16384 K=V=128 none 1.695 -> 1.542, scalar 2.346 -> 2.127, per channel
  6.327 -> 5.763; Zoology B=256 T=256 H=4 K=V=64 unchanged (none 0.178, scalar 0.218 -> 0.216, per
  channel 0.558).
Session 13 (`la <055eb6f's chunk.py> --decays none,scalar`, then against 52dc654's; scalar decay at 8
  warps): k . dk in two parts per token (52dc654) K=V=128 T=4096 0.595 -> 0.585, T=16384 2.111 -> 2.067;
  then A^T and dA^T formed directly and q e^G's scale in the exponent (8a45804) 0.584 -> 0.564 and 2.075 ->
  1.998; no decay and K=V=64 unchanged (results/bench/tune_linear_attention.md runs 21-25).
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import pathlib
import subprocess
import sys

import torch
import torch.nn.functional as F
import triton

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from kernels.bench import time_graph  # noqa: E402

MODULES = {"ss": "kernels/selective_scan/triton_scan.py", "la": "kernels/linear_attention/chunk.py"}


def _load(op: str, source: str, name: str):
    """The module of `source` ("git:REV", a file, or "now" for the working tree), imported as its own copy."""
    if source == "now":
        return importlib.import_module(MODULES[op][:-3].replace("/", "."))
    if source.startswith("git:"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{source[4:]}:{MODULES[op]}"], check=True,
                              capture_output=True, text=True).stdout
    else:
        text = pathlib.Path(source).read_text()
    path = ROOT / MODULES[op].replace(pathlib.Path(MODULES[op]).name, f"_ab_{name}.py")
    path.write_text(text)
    atexit.register(path.unlink, missing_ok=True)   # kept until then: triton reads kernels' source at jit
    return importlib.import_module(str(path.relative_to(ROOT))[:-3].replace("/", "."))


def _ss_cases(dtype: torch.dtype):
    from kernels.tune_scans import _ss_inputs

    for B, D, L, N in [(256, 256, 256, 16), (8, 2048, 4096, 16)]:
        xs, cot = _ss_inputs(B, D, L, N, dtype)     # [u, δ, A, B, C, D, z, δ_bias], as tune_scans
        yield (f"B={B} D={D} L={L} N={N} {str(dtype)[6:]}", lambda mod, xs=xs, cot=cot: torch.autograd.grad(
            mod.triton_selective_scan(*xs, True), xs, cot))


def _la_cases(decays):
    shapes = [(8, 4096, 8, 64, 64), (8, 4096, 8, 128, 128), (256, 256, 4, 64, 64), (8, 16384, 8, 128, 128),
              (8, 16384, 8, 64, 64)]
    for B, T, H, K, V in shapes:
        gen = torch.Generator(device="cuda").manual_seed(0)
        q, k = (torch.randn(B, T, H, K, device="cuda", generator=gen).to(torch.bfloat16) for _ in range(2))
        v, do = (torch.randn(B, T, H, V, device="cuda", generator=gen).to(torch.bfloat16) for _ in range(2))
        for decay in decays:
            g = None
            if decay != "none":
                gshape = (B, T, H) if decay == "scalar" else (B, T, H, K)
                # channel-strong: about -3 per step, so that every chunk exceeds the reference point's range
                strength = 4.0 if decay == "channel-strong" else 1 / 8
                g = (F.logsigmoid(torch.randn(gshape, device="cuda", generator=gen)) * strength).to(torch.bfloat16)
            leaves = [t.detach().requires_grad_() for t in (q, k, v, g) if t is not None]
            args = leaves + [None] * (4 - len(leaves))
            yield (f"B={B} T={T} H={H} K={K} {decay}", lambda mod, a=args, lv=leaves: torch.autograd.grad(
                mod.chunk_linear_attention_triton(*a)[0], lv, do))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op", choices=sorted(MODULES))
    parser.add_argument("old", help='"git:REV", a file path, or "now"')
    parser.add_argument("new", nargs="?", default="now", help='the same; default "now" (the working tree)')
    parser.add_argument("--decays", default="scalar,channel",
                        help="la: comma-separated none, scalar, channel, channel-strong (every chunk beyond the "
                             "reference point's range)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="ss: the inputs' dtype")
    parser.add_argument("--called", action="store_true",
                        help="also time fwd+bwd as called (triton.testing.do_bench, the host's launches included)")
    args = parser.parse_args()
    mods = {"old": _load(args.op, args.old, "old"), "new": _load(args.op, args.new, "new")}
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; {args.op}: old = {args.old}, "
          f"new = {args.new}; fwd+bwd ms from a CUDA graph, three times each")
    cases = _ss_cases(getattr(torch, args.dtype)) if args.op == "ss" else _la_cases(args.decays.split(","))
    for label, step in cases:
        times, called, outs = {n: [] for n in mods}, {n: [] for n in mods}, {}
        for _ in range(3):
            for n, mod in mods.items():
                outs[n] = step(mod)
                times[n].append(time_graph(lambda m=mod: step(m)))
                if args.called:
                    called[n].append(triton.testing.do_bench(lambda m=mod: step(m), warmup=25, rep=100))
        diff = max(((a.float() - b.float()).norm() / b.float().norm()).item()
                   for a, b in zip(outs["new"], outs["old"]))
        print(f"{label}: old {[round(t, 3) for t in times['old']]}  new {[round(t, 3) for t in times['new']]}  "
              f"largest relative difference of the gradients {diff:.1e}", flush=True)
        if args.called:
            print(f"  as called: old {[round(t, 3) for t in called['old']]}  "
                  f"new {[round(t, 3) for t in called['new']]}", flush=True)


if __name__ == "__main__":
    main()
