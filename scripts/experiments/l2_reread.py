"""Experiment (session 21, prepared without a GPU): does a backward that walks short blocks, dq then dk/dv per
block, read each block's inputs from L2 the second time?

Per-channel linear attention at K=V=64 is bound by bytes (its sweeps move theirs at 72-82% of copy
bandwidth), and its dq and dk/dv sweeps each read q, k, v, g, do over the whole segment: 5 U twice (U = one
[B, T, H, 64] bf16 tensor), 23 U in all with the int8 residual (results/bench/roofline.md, session 21). A
backward whose programs walk their segment in blocks of BLK tokens from the end, each block first forward as
the dq sweep does (from the forward's state at the block's start) and then in reverse as dk/dv does, would read
the block a second time a few microseconds after the first; if that reading hits L2, the op moves about 20.5 U.

This times that access pattern alone, with the sweeps' arithmetic replaced by a running sum (a chain from
chunk to chunk, as the state is), 16-token chunks, 4 warps, B=8 H=8 K=V=64 bf16, G groups per batch*head
(256 programs at G=4, as the sweeps' segments):
  separate  two launches, as now: a dq-like pass (reads q, k, v, g, do; writes dq bf16 and an int8 residual)
            forward over each group, then a dk/dv-like pass (reads those 7; writes dk, dv, dg) in reverse;
  blocked   one launch: per group, blocks of BLK tokens from the last, each the dq-like walk forward and then
            the dk/dv-like walk in reverse.
Both make the same loads and stores (16 U at K=64: 6.5 + 9.5) and the same outputs (checked). If the blocked
form's second reading hits L2 it should take about 9.5/16 of the separate form's time where both are bound by
bytes; if not, the same.

    python scripts/experiments/l2_reread.py                  # GPU: the table below
    python scripts/experiments/l2_reread.py --check          # any machine (interpreter on a CPU): outputs agree

Readings (session 22; NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, triton 3.6.0, copy bandwidth 3020 GB/s;
`--T 4096 --blk 64,128,256`, results/bench/runs/s22_l2_reread_h100.log): separate 0.234 ms (76% of copy
bandwidth) at every block size; blocked 0.157 ms at 64 tokens (113%), 0.180 at 128 (99%), 0.209 at 256 (85%).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

NAMES_IN = ("q", "k", "v", "g", "do")


@triton.jit
def _dq_walk(q, k, v, g, do, dq, res, base, c0, n, HK: tl.constexpr, K: tl.constexpr, BT: tl.constexpr):
    """Chunks c0 .. c0+n-1 forward: read the five inputs, write dq (bf16) and an int8 residual."""
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    acc = tl.zeros([BT, K], dtype=tl.float32)
    for j in range(n):
        off = base + ((c0 + j) * BT + o_i)[:, None] * HK + o_k[None, :]
        x = tl.load(q + off).to(tl.float32) + tl.load(k + off).to(tl.float32) + tl.load(v + off).to(tl.float32) \
            + tl.load(g + off).to(tl.float32) + tl.load(do + off).to(tl.float32)
        acc = acc * 0.5 + x
        tl.store(dq + off, acc.to(dq.dtype.element_ty))
        tl.store(res + off, (acc * 4.0).to(tl.int32).to(tl.int8))


@triton.jit
def _dkv_walk(q, k, v, g, do, dq, res, dk, dv, dg, base, c0, n, HK: tl.constexpr, K: tl.constexpr,
              BT: tl.constexpr):
    """Chunks c0+n-1 .. c0 in reverse: read the five inputs, dq and the residual, write dk, dv, dg."""
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    acc = tl.zeros([BT, K], dtype=tl.float32)
    for j in range(n):
        off = base + ((c0 + n - 1 - j) * BT + o_i)[:, None] * HK + o_k[None, :]
        x = tl.load(q + off).to(tl.float32) + tl.load(k + off).to(tl.float32) + tl.load(v + off).to(tl.float32) \
            + tl.load(g + off).to(tl.float32) + tl.load(do + off).to(tl.float32) \
            + tl.load(dq + off).to(tl.float32) + tl.load(res + off).to(tl.float32)
        acc = acc * 0.5 + x
        tl.store(dk + off, acc.to(dk.dtype.element_ty))
        tl.store(dv + off, (acc * 2.0).to(dv.dtype.element_ty))
        tl.store(dg + off, (acc * 3.0).to(dg.dtype.element_ty))


@triton.jit
def _separate_dq_kernel(q, k, v, g, do, dq, res, T, H: tl.constexpr, K: tl.constexpr, G: tl.constexpr,
                        BT: tl.constexpr, CPB: tl.constexpr):
    i_p = tl.program_id(0)
    i_bh, i_g = i_p // G, i_p % G
    base = ((i_bh // H) * T * H + i_bh % H).to(tl.int64) * K
    nb = T // (BT * CPB) // G                       # blocks per group
    for b in range(nb):
        _dq_walk(q, k, v, g, do, dq, res, base, (i_g * nb + b) * CPB, CPB, H * K, K, BT)


@triton.jit
def _separate_dkv_kernel(q, k, v, g, do, dq, res, dk, dv, dg, T, H: tl.constexpr, K: tl.constexpr,
                         G: tl.constexpr, BT: tl.constexpr, CPB: tl.constexpr):
    i_p = tl.program_id(0)
    i_bh, i_g = i_p // G, i_p % G
    base = ((i_bh // H) * T * H + i_bh % H).to(tl.int64) * K
    nb = T // (BT * CPB) // G
    for b in range(nb):
        _dkv_walk(q, k, v, g, do, dq, res, dk, dv, dg, base, (i_g * nb + nb - 1 - b) * CPB, CPB, H * K, K, BT)


@triton.jit
def _blocked_kernel(q, k, v, g, do, dq, res, dk, dv, dg, T, H: tl.constexpr, K: tl.constexpr, G: tl.constexpr,
                    BT: tl.constexpr, CPB: tl.constexpr):
    i_p = tl.program_id(0)
    i_bh, i_g = i_p // G, i_p % G
    base = ((i_bh // H) * T * H + i_bh % H).to(tl.int64) * K
    nb = T // (BT * CPB) // G
    for b in range(nb):
        c0 = (i_g * nb + nb - 1 - b) * CPB
        _dq_walk(q, k, v, g, do, dq, res, base, c0, CPB, H * K, K, BT)
        _dkv_walk(q, k, v, g, do, dq, res, dk, dv, dg, base, c0, CPB, H * K, K, BT)


def _tensors(B, T, H, K, device):
    torch.manual_seed(0)
    ins = [torch.randn(B, T, H, K, device=device).to(torch.bfloat16) for _ in NAMES_IN]
    outs = [torch.empty(B, T, H, K, device=device, dtype=torch.bfloat16),
            torch.empty(B, T, H, K, device=device, dtype=torch.int8)]
    outs += [torch.empty(B, T, H, K, device=device, dtype=torch.bfloat16) for _ in range(3)]
    return ins, outs


def _runs(B, T, H, K, G, BT, blk, ins, outs):
    cpb = blk // BT
    assert T % (blk * G) == 0, "T must be a whole number of blocks per group"
    grid = (B * H * G,)
    meta = dict(H=H, K=K, G=G, BT=BT, CPB=cpb, num_warps=4)

    def separate():
        _separate_dq_kernel[grid](*ins, *outs[:2], T, **meta)
        _separate_dkv_kernel[grid](*ins, *outs, T, **meta)

    def blocked():
        _blocked_kernel[grid](*ins, *outs, T, **meta)

    return {"separate": separate, "blocked": blocked}


def check(B=1, T=128, H=2, K=16, G=2, BT=16, blk=32) -> None:
    """Both forms write the same five outputs."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ins, outs = _tensors(B, T, H, K, device)
    got = {}
    for name, fn in _runs(B, T, H, K, G, BT, blk, ins, outs).items():
        for o in outs:
            o.fill_(0)
        fn()
        got[name] = [o.clone() for o in outs]
    for a, b in zip(got["separate"], got["blocked"]):
        assert torch.equal(a, b), "the two forms disagree"
    assert all(o.abs().sum() > 0 for o in got["blocked"])
    print(f"ok: both forms agree (B={B} T={T} H={H} K={K} G={G} BT={BT} BLK={blk}, {device})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that both forms agree (small shape)")
    parser.add_argument("--T", default="4096,16384")
    parser.add_argument("--blk", default="64,128,256,512", help="block sizes in tokens")
    parser.add_argument("--groups", type=int, default=4)
    args = parser.parse_args()
    check()
    if args.check:
        return
    if not torch.cuda.is_available():
        sys.exit("timing needs a CUDA GPU (--check runs anywhere)")
    from triton.testing import do_bench

    from kernels.bench import copy_bandwidth_gbps

    B, H, K, BT = 8, 8, 64, 16
    bw = copy_bandwidth_gbps()
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; "
          f"copy bandwidth {bw:.0f} GB/s")
    print(f"{'T':>6} {'BLK':>4} {'form':>9} {'ms':>8} {'16 U at GB/s':>13} {'of copy bw':>10}")
    for T in map(int, args.T.split(",")):
        ins, outs = _tensors(B, T, H, K, "cuda")
        u = B * T * H * K * 2
        for blk in map(int, args.blk.split(",")):
            for name, fn in _runs(B, T, H, K, args.groups, BT, blk, ins, outs).items():
                ms = do_bench(fn, warmup=10, rep=50)
                gbps = 16 * u / ms / 1e6
                print(f"{T:>6} {blk:>4} {name:>9} {ms:>8.3f} {gbps:>13.0f} {gbps / bw:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
