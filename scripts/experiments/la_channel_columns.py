"""Experiment (session 5): versions of kernels/linear_attention/chunk.py against each other with
per-channel decay: relative error against the fp32 PyTorch chunked reference (B=1, T=2048 slice), then
fwd and fwd+bwd times (triton.testing.do_bench, bf16). GPU only:

    git show <commit>:kernels/linear_attention/chunk.py > /tmp/chunk_<name>.py    # per version
    PYTHONPATH=. python scripts/experiments/la_channel_columns.py name=/tmp/chunk_name.py ...

Each file is imported as a sibling of chunk.py (for its relative imports). Session 5 readings (H100,
torch 2.11, triton 3.6; "orig" = 2f43c57^'s [BT, BT, BK] diagonal blocks in all three kernels,
"columns" = 2f43c57, one column at a time in all three; "rows" = 7048e12, dk/dv one row at a time;
the shipped version = columns in the forward and dq, [BT, BT, BK] in dk/dv):

    shape (B T H K=V)    orig fwd / fwd+bwd   columns         rows            shipped
    8 4096 8 64          0.80 / 2.58-2.63     0.62 / 3.00     0.61 / 2.37     0.61 / 2.00
    8 4096 8 128         2.77 / 9.64-9.80     2.34 / 9.33     1.92 / 7.92     1.93 / 7.02
    256 256 4 64         0.57 / 2.30-2.34     0.52 / 2.46     0.52 / 2.23     0.51 / 1.82
    8 16384 8 64         3.01 / 9.94-10.05    2.35 / 11.54    2.37 / 9.44     2.34 / 7.62

(ms; every version's error equal to orig's: 4.8e-3 at K=64, 2.6e-2 at K=128 in bf16 against fp32.)
Then K in one block for the forward and dq ("bk64" = edca836, against "bk32" = its parent):

    shape (B T H K=V)    bk32 fwd / fwd+bwd   bk64
    8 4096 8 64          0.62 / 1.97          0.52 / 1.90
    8 4096 8 128         1.91 / 6.99          2.33 / 7.33      (two K blocks of 64: not shipped)
    256 256 4 64         0.51 / 1.83          0.44 / 1.69
    8 16384 8 64         2.38 / 7.59          1.93 / 7.23

Then the forward's A kept for dk/dv ("storeA1" = 41fd0a3^, with one K block only, fp32; "storeAall" =
41fd0a3, any K: partial sums over K blocks; one K block in the input dtype), against "noA" = e985ce6:

    shape (B T H K=V)    noA fwd+bwd   storeA1   storeAall
    8 4096 8 64          1.89          1.74      4.09 in this script, 1.72 in kernels.bench (see below)
    8 4096 8 128         7.01          7.00      6.16
    256 256 4 64         1.69          1.56-1.57 1.56
    8 16384 8 64         7.29          6.67-6.81 6.84

(storeAall's 4.09 ms at K=64 was a single reading: `python -m kernels.bench --ops linear_attention
--impls triton` on the same code, in the same call, measured 1.721 ms; results/bench/kernels.md.)

Session 6 (same GPU kind and versions): A by a fully parallel pass over all chunks, loaded by the
forward's sweep ("asplit" = the commit after e507893 with dq's parallel pass switched off), against
"before" = e507893 (16-bit inputs: V <= 128 and, for the forward and dq, K <= 128 in one block), and
"split" = also dq's intra-chunk part by a parallel pass (dA's columns picked from a [BT, BT] tl.dot;
not shipped: its pass alone took 0.41 ms at K=64, `python -m kernels.profile --ops la`):

    shape (B T H K=V)    before fwd / fwd+bwd   asplit          split
    8 4096 8 64          0.51 / 1.67            0.45 / 1.61     0.45 / 1.71
    8 4096 8 128         1.22 / 4.02            1.02 / 3.81     1.02 / 3.85
    256 256 4 64         0.43 / 1.49            0.35 / 1.37     0.35 / 1.51
    8 16384 8 64         1.97 / 6.45            1.66 / 6.14     1.66 / 6.56

(errors equal across versions: 4.8e-3 at K=64, 6.6e-3 at K=128.)
"""
from __future__ import annotations

import importlib
import math
import pathlib
import shutil
import sys

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from kernels.bench import rel_error
from kernels.linear_attention.chunk_torch import chunk_linear_attention_torch

SHAPES = [(8, 4096, 8, 64, 64), (8, 4096, 8, 128, 128), (256, 256, 4, 64, 64), (8, 16384, 8, 64, 64)]


def load_versions(specs: list[str]) -> dict:
    """name=path -> the module, copied next to chunk.py as _exp_<name>.py and imported."""
    package = pathlib.Path(importlib.import_module("kernels.linear_attention").__file__).parent
    versions = {}
    for spec in specs:
        name, path = spec.split("=", 1)
        shutil.copy(path, package / f"_exp_{name}.py")
        versions[name] = importlib.import_module(f"kernels.linear_attention._exp_{name}")
    return versions


def main() -> None:
    versions = load_versions(sys.argv[1:])
    for B, T, H, K, V in SHAPES:
        gen = torch.Generator(device="cuda").manual_seed(0)
        q, k = (torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(2))
        v = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16, generator=gen)
        g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda", generator=gen)) / 8).to(torch.bfloat16)
        do = torch.randn_like(v)
        xs = [x.requires_grad_() for x in (q, k, v, g)]
        # the error on a B=1, T<=2048 slice (the fp32 reference is slow and large at full size)
        xr = [x.detach().float()[:1, :2048].requires_grad_() for x in xs]
        o_ref, _ = chunk_linear_attention_torch(*xr, K**-0.5)
        refs = [o_ref, *torch.autograd.grad(o_ref, xr, do[:1, :2048].float())]
        for name, module in versions.items():
            def f(*a, module=module):
                return module.chunk_linear_attention_triton(*a, K**-0.5)[0]
            xc = [x.detach()[:1, :2048].requires_grad_() for x in xs]
            o = f(*xc)
            err = rel_error([o, *torch.autograd.grad(o, xc, do[:1, :2048])], refs)
            fwd = do_bench(lambda f=f, xs=xs: f(*[x.detach() for x in xs]), rep=50)
            fb = do_bench(lambda f=f, xs=xs, do=do: torch.autograd.grad(f(*xs), xs, do), rep=50)
            err = err if math.isfinite(err) else math.nan
            print(f"B={B} T={T} H={H} K={K} V={V} channel {name}: err {err:.2e} fwd {fwd:.3f} ms "
                  f"fwd+bwd {fb:.3f} ms", flush=True)
        del q, k, v, g, do, xs, xr, refs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
