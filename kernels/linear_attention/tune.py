"""GPU tuning sweep for the chunked linear attention kernels: `python -m kernels.linear_attention.tune`.

For a few shapes (long sequences, where segments matter, and a Zoology shape, where launch overhead
does), bf16, scalar and per-channel decay, times forward and forward+backward
(triton.testing.do_bench, median ms, host included; and fwd+bwd replayed from a CUDA graph, graph_ms,
the device's time alone) for a short list of variants of `chunk.TUNE`: the number of
sequence segments NS (auto, 1, more), num_warps, num_stages, and for scalar decay the chunk BT and the
tile cap. Each variant's output and gradients are first compared with the default's (relative RMS
error of o, dq, dk, dv, and separately of dlog_decay); a variant above BAD_ERR / BAD_ERR_DG is marked BAD
and cannot be the best. Prints one table (frac_bw, frac_g: bench.py's bytes / fwd+bwd time as called, or
from the CUDA graph / copy bandwidth) and the best variant per (shape, decay) by graph_ms. Two to three
minutes on an H100 the first time, mostly compilation (triton's cache makes a rerun faster). num_stages unset = triton's default (3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..bench import copy_bandwidth_gbps, rel_error, time_graph
from . import chunk, chunked_linear_attention

DEVICE, DTYPE = "cuda", torch.bfloat16
SHAPES = [(8, 4096, 8, 64, 64), (8, 4096, 8, 128, 128), (256, 256, 4, 64, 64)]
# name -> chunk.TUNE overrides ({} = the defaults); "ns" forces the segment count
VARIANTS = {
    "default": {},
    "ns=1": {"ns": 1},
    "seg_target=1": {"seg_target": 1},
    "seg_target=2": {"seg_target": 2},
    "seg_target=4": {"seg_target": 4},
    "seg_target=8": {"seg_target": 8},
    "seg_target=16": {"seg_target": 16},
    "warps=4": {"num_warps": 4},
    "warps=8": {"num_warps": 8},
    "warps=8 seg2": {"num_warps": 8, "seg_target": 2},
    "warps=16": {"num_warps": 16},
    "warps=16 dsl=1": {"num_warps": 16, "dsl": True},
    "stages=1": {"num_stages": 1},
    "stages=2": {"num_stages": 2},
    "BT=128": {"BT": 128},
    "tile<=64": {"max_tile": 64},
    "tile<=32": {"max_tile": 32},
    "BT=32": {"BT": 32},
    "BT=32 w4": {"BT": 32, "num_warps": 4},
    "BV=128": {"BV": 128},
    "BV=128 w4": {"BV": 128, "num_warps": 4},
    "BV=128 wk128 w4": {"BV": 128, "wide_bk": 128, "num_warps": 4},
    "BV=128 wk128 ww8": {"BV": 128, "wide_bk": 128, "num_warps": 4, "wide_warps": 8},
    "wk128 ww8": {"wide_bk": 128, "wide_warps": 8},
    "dkv BK64 w8": {"dkv_bk": 64, "dkv_warps": 8},
    "dkv BK64 w4": {"dkv_bk": 64},
    "dq BK64 w4": {"dq_bk": 64},
    "dq BK64 w8": {"dq_bk": 64, "dq_warps": 8},
    "intra w8": {"intra_warps": 8},
    "intra w2": {"intra_warps": 2},
    "BV=128 BK16 w4": {"BV": 128, "BK": 16, "num_warps": 4},
    "fwd_bt=16": {"fwd_bt": 16},
    "fwd_bt=32": {"fwd_bt": 32},
    "fwd_bt=128": {"fwd_bt": 128},
    "fwd_bt=64": {"fwd_bt": 64},
    "igrad w4": {"intra_grad_warps": 4},
    "dsl=0": {"dsl": False},
    "pieces=1": {"pieces": 1},
    "pieces=2": {"pieces": 2},
    "pieces=4": {"pieces": 4},
    "pieces=8": {"pieces": 8},
    "pieces=4 segreg128": {"pieces": 4, "seg_maxnreg": 128},
    "dsl=1": {"dsl": True},
    "igrad w8": {"intra_grad_warps": 8},
    "dkv w4": {"dkv_warps": 4},
    "dq w4": {"dq_bk": 128, "dq_warps": 4},
    "wide w4": {"wide_warps": 4},
    "a_in_sweep=0": {"a_in_sweep": False},
    "a_in_sweep=1": {"a_in_sweep": True},
    "ref=0": {"ref": False},
    "ref=0 a_in=0": {"ref": False, "a_in_sweep": False},
    "channel_bt=32": {"channel_bt": 32},
    "channel_bt=32 w8": {"channel_bt": 32, "dkv_warps": 8, "num_warps": 8},
    "channel_bt=64 fwd_bt=64 w8": {"channel_bt": 64, "fwd_bt": 64, "dkv_warps": 8, "num_warps": 8},
    "intra w1": {"intra_warps": 1},
    "intra w4": {"intra_warps": 4},
    "ns=1 BV=64": {"ns": 1, "BV": 64},
    "ns=1 BV=32": {"ns": 1, "BV": 32},
    "BV=64": {"BV": 64},
    "seg BK64": {"BK": 64},
    "seg_bk=32": {"seg_bk": 32},
    "seg_bk=64": {"seg_bk": 64},
    "seg BK128": {"BK": 128},
    "xparts=1": {"xq_parts": 1, "xk_parts": 1},
    "xk_parts=1": {"xk_parts": 1},
    "xq_parts=2": {"xq_parts": 2},
    "dg_split=0": {"dg_split": False},
    "a_t=0": {"a_t": False},
    "a_t=1": {"a_t": True},
    "igrad cap0": {"intra_grad_maxnreg": 0},
    "sweep_reg168": {"sweep_maxnreg": 168},
    "sweep_reg168 seg_target=3": {"sweep_maxnreg": 168, "seg_target": 3},
    "seg_target=6": {"seg_target": 6},
    "seg_target=3": {"seg_target": 3},
    "fused_scan=0": {"fused_scan": False},
    "fused_scan=1": {"fused_scan": True},
    "sweep_reg168 seg_target=6": {"sweep_maxnreg": 168, "seg_target": 6},
    "sweep_reg128 seg_target=8": {"sweep_maxnreg": 128, "seg_target": 8},
    "wide w8 reg128": {"wide_warps": 8, "sweep_maxnreg": 128},
    "wide w16": {"wide_warps": 16},
    "res8=1": {"res8": True},
    "res_chunk=1": {"res_chunk": True},
    "pdl=1": {"pdl": True},
    "blocked 64": {"blocked_bwd": 64},
    "blocked 128": {"blocked_bwd": 128},
    "blocked 64 res_chunk=1": {"blocked_bwd": 64, "res_chunk": True},
    "fused_bwd ns16 span4 res_chunk=1": {"fused_bwd": True, "seg_target": 16, "fwd_span": 4, "res_chunk": True},
    "fused_bwd ns32 span8 res_chunk=1": {"fused_bwd": True, "seg_target": 32, "fwd_span": 8, "res_chunk": True},
    "pdl=1 res_chunk=1": {"pdl": True, "res_chunk": True},
    "fwd BV32": {"fwd_bv": 32},
    "fwd span2 BV32": {"fwd_span": 2, "fwd_bv": 32},
    "fwd span2 BV32 w2": {"fwd_span": 2, "fwd_bv": 32, "fwd_warps": 2},
    "dq BK64 w4 dsl0": {"dq_bk": 64, "dsl": False},
    "dq BK32": {"dq_bk": 32},
    "dq BK32 w2": {"dq_bk": 32, "dq_warps": 2},
    "dq BK32 dsl0": {"dq_bk": 32, "dsl": False},
    "dq BK64 w8 dsl0": {"dq_bk": 64, "dq_warps": 8, "dsl": False},
    "fwd BV64": {"fwd_bv": 64},
    "fwd BV64 w4": {"fwd_bv": 64, "fwd_warps": 4},
    "fwd BV64 w4 dq BK64 w4 dsl0": {"fwd_bv": 64, "fwd_warps": 4, "dq_bk": 64, "dsl": False},
    "fwd BV64 dq BK64 w4 dsl0": {"fwd_bv": 64, "dq_bk": 64, "dsl": False},
}
# relative RMS vs the default variant above which a variant is BAD (bf16; the test file's tolerances)
BAD_ERR, BAD_ERR_DG = 3e-2, 0.15


def _effective(variant: dict, B, T, H, K, V, decay: int) -> tuple:
    """The launch configuration a variant gives at this shape (variants that change nothing are skipped)."""
    chunk.TUNE.clear()
    chunk.TUNE.update(variant)
    cfg = chunk._config(K, V, decay, DTYPE)
    NK, NV = -(-K // cfg["BK"]), -(-V // cfg["BV"])
    fwd = chunk._fwd_config(cfg, K)
    ns, _ = chunk._segments(B * H * NK * NV, T, fwd["BT"], torch.device(DEVICE),
                            chunk._seg_target(decay, cfg["num_warps"]))
    wide = chunk._wide_k(cfg, K)     # dq's (and the forward's tiles)
    cfg_q = chunk._dq_config(cfg, K)   # as chunk.py's backward
    return tuple(sorted(cfg.items())) + (("NS", ns), ("wide", (wide["BK"], wide["num_warps"])),
                                         ("fwd", tuple(sorted(fwd.items()))),
                                         ("intra_warps", chunk.TUNE.get("intra_warps", chunk.A_PASS_WARPS)
                                          if decay == 2 else None),
                                         ("dkv", tuple(sorted(chunk._dkv_config(cfg, K).items()))),
                                         ("dq", (cfg_q["BK"], cfg_q["num_warps"])),
                                         ("intra_grad", chunk._intra_grad_warps(wide["BK"]) if decay == 2 else None),
                                         ("seg_bk", chunk._seg_config(cfg, K)["BK"]),
                                         ("dsl", chunk._fused_dsl(cfg, K) and ns > 1),
                                         ("pieces", chunk.TUNE.get("pieces") if ns > 1 else None),
                                         ("seg_maxnreg", chunk.TUNE.get("seg_maxnreg") if ns > 1 else None),
                                         ("sweep_maxnreg", chunk.TUNE.get("sweep_maxnreg")),
                                         ("intra_grad_cap", chunk._intra_grad_cap().get("maxnreg") if decay == 2 else None),
                                         ("x_parts", tuple(chunk._x_parts(chunk._dkv_config(cfg, K), w)
                                                           for w in ("xq", "xk"))
                                          if decay == 1 and chunk._dg_split(chunk._dkv_config(cfg, K)) else None),
                                         ("a_t", chunk._a_transposed(chunk._dkv_config(cfg, K))),
                                         ("a_in_sweep", chunk._a_in_sweep(-(-K // fwd["BK"]), fwd["BK"],
                                                                          chunk._ref_path(cfg, K, DTYPE))
                                          if decay == 2 else None),
                                         ("ref", chunk._ref_path(cfg, K, DTYPE)),
                                         ("fused_scan", chunk.TUNE.get("fused_scan") if ns > 1 else None),
                                         ("res8", chunk._res8(K) if decay == 2 else None),
                                         ("res_chunk", chunk._res_chunk(K) if decay == 2 else None),
                                         ("fwd_span", chunk._fwd_span(ns, decay)),
                                         ("pdl", bool(chunk.TUNE.get("pdl"))),
                                         ("fused_bwd", chunk._fused_bwd() if decay == 2 else None),
                                         ("blocked_bwd", chunk._blocked_bwd() if decay == 2 else None))


def _fwd_bwd(*leaves_do):
    """[o, dq, dk, dv (, dlog_decay)] of one forward + backward; leaves_do = (q, k, v[, g], do)."""
    *leaves, do = leaves_do
    for t in leaves:
        t.grad = None
    o = chunked_linear_attention(*leaves)
    o.backward(do)
    out = [o.detach()] + [t.grad for t in leaves]
    for t in leaves:
        t.grad = None   # do_bench's first call would accumulate into these
    return out


def _time(leaves: list, do: torch.Tensor) -> tuple[float, float, float]:
    """(forward ms, forward+backward ms, forward+backward ms from a CUDA graph): medians of
    triton.testing.do_bench, which include the host's launch overhead, and `time_graph`, which does not."""
    from triton.testing import do_bench

    with torch.no_grad():
        fwd = do_bench(lambda: chunked_linear_attention(*leaves), warmup=10, rep=40)
    fb = do_bench(lambda: chunked_linear_attention(*leaves).backward(do), warmup=10, rep=40, grad_to_none=leaves)
    graph = time_graph(lambda: torch.autograd.grad(chunked_linear_attention(*leaves), leaves, do))
    return fwd, fb, graph



def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=None, help="B,T,H,K,V;... (default: SHAPES)")
    parser.add_argument("--variants", default=None, help=f"comma-separated names (default: all): {list(VARIANTS)}")
    parser.add_argument("--decays", default="scalar,channel", help="comma-separated: none, scalar, channel")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes.split(";")] if args.shapes else SHAPES
    names = ["default", *[n for n in args.variants.split(",") if n != "default"]] if args.variants else list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    variants = {n: VARIANTS[n] for n in names}
    kinds = {"none": 0, "scalar": 1, "channel": 2}
    unknown = sorted(set(args.decays.split(",")) - set(kinds))
    if unknown:
        raise SystemExit(f"--decays: unknown {unknown}; choose from {list(kinds)}")
    decays = [(d, kinds[d]) for d in args.decays.split(",")]
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("tune.py needs a CUDA GPU")
    copy_bw = copy_bandwidth_gbps()
    print(f"GPU: {torch.cuda.get_device_name()}; copy bandwidth {copy_bw:.0f} GB/s")
    head = (f"{'shape':<26} {'decay':<8} {'variant':<15} {'NS':>3} {'fwd_ms':>8} {'fwdbwd_ms':>9} {'frac_bw':>7} "
            f"{'graph_ms':>8} {'frac_g':>6} {'err':>8} {'err_dg':>8}")
    print(head)
    best = []
    for B, T, H, K, V in shapes:
        shape = f"B={B} T={T} H={H} K={K} V={V}"
        gen = torch.Generator(device=DEVICE).manual_seed(0)
        q, k = (torch.randn(B, T, H, K, device=DEVICE, generator=gen).to(DTYPE) for _ in range(2))
        v = torch.randn(B, T, H, V, device=DEVICE, generator=gen).to(DTYPE)
        do = torch.randn(B, T, H, V, device=DEVICE, generator=gen).to(DTYPE)
        for decay_name, decay in decays:
            gshape = (B, T, H) if decay == 1 else (B, T, H, K)
            g = (F.logsigmoid(torch.randn(gshape, device=DEVICE, generator=gen)) / 8).to(DTYPE) if decay else None
            leaves = [t.requires_grad_() for t in (q, k, v, g) if t is not None]
            io = 2 * (q.numel() + k.numel() + 2 * v.numel() + (g.numel() if decay else 0))   # bench.py's byte count
            seen, rows, ref = set(), [], None
            for name, variant in variants.items():
                key = _effective(variant, B, T, H, K, V, decay)
                if key in seen:
                    continue
                seen.add(key)
                ns = dict(key)["NS"]
                out = _fwd_bwd(*leaves, do)
                ref = out if ref is None else ref
                err = rel_error(out[:4], ref[:4])   # o, dq, dk, dv
                err_dg = rel_error(out[4:], ref[4:]) if decay else 0.0
                fwd, fb, graph = _time(leaves, do)
                frac, frac_g = (3 * io / ms / 1e6 / copy_bw for ms in (fb, graph))
                flag = "" if err <= BAD_ERR and err_dg <= BAD_ERR_DG else " BAD"
                print(f"{shape:<26} {decay_name:<8} {name:<15} {ns:>3} {fwd:>8.3f} {fb:>9.3f} {frac:>7.3f} "
                      f"{graph:>8.3f} {frac_g:>6.3f} {err:>8.1e} {err_dg:>8.1e}{flag}", flush=True)
                if not flag:
                    rows.append((graph, fb, fwd, name))
            chunk.TUNE.clear()
            for t in leaves:
                t.requires_grad_(False)
                t.grad = None
            graph, fb, fwd, name = min(rows)
            best.append(f"{shape:<26} {decay_name:<8} best: {name:<15} fwd {fwd:.3f} ms, fwd+bwd {fb:.3f} ms "
                        f"({graph:.3f} from a CUDA graph)")
        torch.cuda.empty_cache()
    print("\n".join(["", "best variant per shape (by fwd+bwd from a CUDA graph):"] + best))


if __name__ == "__main__":
    main()
