"""Benchmark rows for chunked linear attention (collected by `python -m kernels.bench`).

Implementations, bf16 inputs, forward and forward+backward (triton.testing.do_bench, median ms):
  triton         ours (kernels.linear_attention.chunk), no, scalar and per-channel decay
  torch-chunk    the chunked PyTorch path (kernels.linear_attention.chunk_torch)
  torch-quadratic  o = ((Q K^T * scale) . D) V with the masked [T, T] decay matrix D (scalar decay)
  sdpa           F.scaled_dot_product_attention(causal): softmax attention, the yardstick
  fla            FLA's chunk_linear_attn (normalize=False) / chunk_simple_gla / chunk_gla if importable
                 (skipped otherwise); a backward FLA refuses (FLA 0.6: gated kernels on Hopper with
                 triton < 3.7.1) is recorded as such, with its forward time
Bytes the algorithm must move: q, k, v, log_decay read and o written once (forward); the backward
reads them again with do and writes dq, dk, dv, dlog_decay, about 3x the forward bytes in all.
GB/s = those bytes / fwd+bwd time, and frac_copy_bw = GB/s / the measured device copy bandwidth.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..bench import add_graph_time, copy_bandwidth_gbps
from .chunk_torch import chunk_linear_attention_torch

ZOOLOGY = [(256, 256, h, d, d) for h in (1, 4) for d in (16, 64)]
LONG = [(8, t, 8, d, d) for t in (4096, 16384) for d in (64, 128)]
QUICK = [(256, 256, 4, 64, 64), (8, 4096, 8, 128, 128)]
DECAYS = ("scalar", "channel", "none")   # `python -m kernels.bench --decays` narrows it
QUADRATIC_MAX_BYTES = 16 * 2**30          # the quadratic form's [B, H, T, T] decay-weighted scores, fp32
SHAPE_FILTER: tuple = ()                  # `--shapes K=128,...`: only shapes whose name contains one of these


def _shapes(quick: bool, long: bool) -> list[tuple[str, tuple]]:
    """(name, (B, T, H, K, V)) of the shapes `run` times, e.g. "B=8 T=4096 H=8 K=64 V=64"."""
    shapes = QUICK if quick else LONG if long else ZOOLOGY + LONG
    return [(f"B={B} T={T} H={H} K={K} V={V}", (B, T, H, K, V)) for B, T, H, K, V in shapes]


def shape_names(quick: bool = False, long: bool = False) -> list[str]:
    return [name for name, _ in _shapes(quick, long)]


def shape_selected(name: str) -> bool:
    """Whether SHAPE_FILTER keeps this shape (a substring of the name followed by a space; empty keeps all)."""
    return not SHAPE_FILTER or any(f in name + " " for f in SHAPE_FILTER)


def _quadratic(q, k, v, g, scale):
    """Masked quadratic (parallel) form with scalar decay: D[t, s] = exp(G_t - G_s) for s <= t."""
    G = g.float().cumsum(1).transpose(1, 2)                               # [B, H, T]
    mask = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool, device=q.device).tril()
    D = (G[..., :, None] - G[..., None, :]).masked_fill(~mask, float("-inf")).exp()
    A = torch.einsum("bthk,bshk->bhts", q, k).float() * scale * D          # [B, H, T, T]
    return torch.einsum("bhts,bshv->bthv", A.to(v.dtype), v)


def _sdpa(q, k, v, g, scale):
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True, scale=scale)
    return o.transpose(1, 2)


def _fla(decay: str):
    """FLA's chunk kernels with our argument order, or None if FLA is not installed."""
    try:
        from fla.ops.gla import chunk_gla
        from fla.ops.linear_attn import chunk_linear_attn
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError:
        return None
    if decay == "none":
        return lambda q, k, v, g, scale: chunk_linear_attn(q, k, v, scale=scale, normalize=False)[0]
    if decay == "channel":
        return lambda q, k, v, g, scale: chunk_gla(q, k, v, g, scale=scale)[0]
    return lambda q, k, v, g, scale: chunk_simple_gla(q, k, v, g, scale=scale)[0]


def _impls(decay: str) -> dict:
    from . import chunked_linear_attention

    impls = {"triton": lambda q, k, v, g, scale: chunked_linear_attention(q, k, v, g, scale)}
    if decay == "none":
        impls["sdpa"] = _sdpa
    else:
        impls["torch-chunk"] = lambda q, k, v, g, scale: chunk_linear_attention_torch(q, k, v, g, scale)[0]
    if decay == "scalar":
        impls["torch-quadratic"] = _quadratic
    fla = _fla(decay)
    if fla is not None:
        impls["fla"] = fla
    return impls



def _time(fn, args, grads: bool) -> float:
    from triton.testing import do_bench

    if not grads:
        with torch.no_grad():
            return do_bench(lambda: fn(*args))
    leaves = [a for a in args if isinstance(a, torch.Tensor)]
    for a in leaves:
        a.requires_grad_(True)
    o = fn(*args)
    do = torch.randn_like(o)
    ms = do_bench(lambda: fn(*args).backward(do), grad_to_none=leaves)
    for a in leaves:
        a.requires_grad_(False)
        a.grad = None
    return ms


def _with_graph_time(row: dict, fn, args, nbytes: float, copy_bw: float) -> dict:
    leaves = [a for a in args if isinstance(a, torch.Tensor)]
    for a in leaves:
        a.requires_grad_(True)
    do = torch.randn_like(fn(*args))
    try:
        return add_graph_time(row, lambda: torch.autograd.grad(fn(*args), leaves, do), nbytes, copy_bw)
    finally:
        for a in leaves:
            a.requires_grad_(False)


def run(quick: bool = False, only: set[str] | None = None, long: bool = False) -> list[dict]:
    """One row per (shape, decay, impl); see kernels/bench.py for the row keys."""
    rows = []
    copy_bw = copy_bandwidth_gbps()
    dtype = torch.bfloat16
    for shape, (B, T, H, K, V) in _shapes(quick, long):
        if not shape_selected(shape):
            continue
        q, k = (torch.randn(B, T, H, K, device="cuda", dtype=dtype) for _ in range(2))
        v = torch.randn(B, T, H, V, device="cuda", dtype=dtype)
        scale = K**-0.5
        cases = [(d, name, fn) for d in DECAYS for name, fn in _impls(d).items()
                 if only is None or name in only]
        for decay, name, fn in cases:
            g = None
            if decay != "none":
                gshape = (B, T, H) if decay == "scalar" else (B, T, H, K)
                g = F.logsigmoid(torch.randn(gshape, device="cuda")).to(dtype) / 8
            row = dict(op="chunked_linear_attention", shape=shape, impl=name, dtype=str(dtype).split(".")[-1],
                       fwd_ms=math.nan, fwdbwd_ms=math.nan, gbps=math.nan, frac_copy_bw=math.nan,
                       note=f"decay={decay}")
            # bytes: (q, k, v, g) read + o written; the backward re-reads them with do, writes 4 grads
            if name == "torch-quadratic" and B * H * T * T * 4 > QUADRATIC_MAX_BYTES:
                row["note"] += f"; skipped: its [B, H, T, T] fp32 matrix takes {B * H * T * T * 4 / 2**30:.0f} GiB"
                rows.append(row)
                continue
            io = (q.numel() + k.numel() + v.numel() + (0 if g is None else g.numel()) + v.numel()) * 2
            try:
                row["fwd_ms"] = _time(fn, (q, k, v, g, scale), grads=False)
                row["fwdbwd_ms"] = _time(fn, (q, k, v, g, scale), grads=True)
                row["gbps"] = 3 * io / row["fwdbwd_ms"] / 1e6
                row["frac_copy_bw"] = row["gbps"] / copy_bw
                row = _with_graph_time(row, fn, (q, k, v, g, scale), 3 * io, copy_bw)
            except torch.OutOfMemoryError:
                row["note"] += "; out of memory"
            except RuntimeError as e:   # FLA refusing a kernel on this GPU/triton
                if name != "fla":
                    raise
                row["note"] += f"; backward refused: {str(e).splitlines()[0][:120]}"
            torch.cuda.empty_cache()
            rows.append(row)
            print(f"{shape} {row['note']} {name}: fwd {row['fwd_ms']:.3f} ms, fwd+bwd {row['fwdbwd_ms']:.3f} ms",
                  flush=True)
    return rows
