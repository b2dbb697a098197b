"""Tile/variant tuning for the scan kernels on a GPU: `python -m kernels.tune_scans` (~2-4 min, H100).

For `selective_scan` (variants "time" and "seq" of `triton_scan`, a few tile configs each) and `linear_recurrence`
(a few (BLOCK_T, BLOCK_D, num_warps) per dtype) at the shapes of issue #7 (Zoology B=256 L=256 D=256
N=16; long B=8 L=4096 D=2048 N=16; selective scan also B=2 D=256 L=8192, where the "time" backward
has few programs and `bwd_chunks` matters), it
  1. checks each variant once against the PyTorch fallback in fp32 (relative RMS error of the output
     and every gradient; selective scan on a shorter slice of the shape, same D), so a broken variant
     cannot win;
  2. times fwd and fwd+bwd with `triton.testing.do_bench` (median ms);
  3. prints one table (GB/s by the bytes the op must move, as in the bench modules: selective scan
     fwd 4·BDL + 2·BNL, fwd+bwd 11·BDL + 6·BNL elements; linear recurrence 3 and 8 ·BTD) and the best
     correct variant per shape, with the TILES entry that selects it.
`--only ss|lr` runs one op; `--variants time` only those selective-scan variants.
"""
from __future__ import annotations

import argparse
import math

import torch

from .bench import copy_bandwidth_gbps, rel_error, time_fwd_bwd

# (B, D, L, N): Zoology, long, and few (batch, channel) programs with a long L (the chunked backward)
SS_SHAPES = [(256, 256, 256, 16), (8, 2048, 4096, 16), (2, 256, 8192, 16)]
LR_SHAPES = [(256, 256, 256), (8, 4096, 2048)]                     # (B, T, D)
# selective scan, triton_scan.TILES[variant] entries (the first of each is the shipped default):
# "seq": [BLOCK_D, N] state per program, one step per iteration
SS_SEQ = [dict(block_t=32, fwd_block_d=8, fwd_warps=4, bwd_block_d=8, bwd_warps=1),
          dict(block_t=32, fwd_block_d=4, fwd_warps=1, bwd_block_d=2, bwd_warps=1)]
# "time": time along the lanes; the forward scans [fd, N, ft] tiles (all states at once), the backward a
# [bd, bt] tile per state (bt = block_t = the checkpoint spacing)
_SS_DEFAULT = dict(block_t=256, fwd_block_t=32, fwd_block_d=2, fwd_warps=1, bwd="time", bwd_block_d=2, bwd_warps=1,
                   rev="gather", bwd_chunks=True, fwd="lane", lane_block_d=None, da_parts=True, rev_lean=None)
# the shipped config first; earlier candidates and their readings: results/bench/tune_scans.md runs 1-11.
# fwd "lane": one channel per lane (lane_block_d channels per one-warp program; None: 32 or 16 by the
# number of programs, triton_scan._lane_block_d), sequential in time; "states": [fd, N, ft] tiles
# scanned along time
SS_TIME = [_SS_DEFAULT,
           dict(_SS_DEFAULT, fwd="states"),
           dict(_SS_DEFAULT, lane_block_d=32),
           dict(_SS_DEFAULT, lane_block_d=16)]
# linear recurrence: (BLOCK_T, BLOCK_D, num_warps) per element size, each timed at every length (the
# shipped choice depends on T: triton_scan.TILES below LONG_T, TILES_LONG from it)
LR_CFGS = {2: [(64, 64, 4), (4, 256, 1), (8, 256, 1), (16, 256, 1), (8, 512, 2), (8, 1024, 4)],
           4: [(16, 256, 4), (32, 128, 4), (8, 128, 1), (16, 128, 1), (8, 256, 2), (16, 512, 4)]}
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
DEVICE = "cuda"   # a test may run the script's logic on the CPU under TRITON_INTERPRET=1



def _cfg_str(cfg: dict) -> str:
    """Compact config text: block_t=32 fwd_warps=1 ... -> 'bt32 fw1 ...'."""
    short = {"block_t": "bt", "fwd_block_t": "ft", "fwd_warps": "fw", "bwd_warps": "bw", "fwd_block_d": "fd",
             "bwd_block_d": "bd", "fwd_maxnreg": "fr", "bwd_maxnreg": "br", "lane_block_d": "ld"}
    return " ".join(f"{short.get(k, k)}{v}" for k, v in cfg.items())



def _ss_inputs(Bsz, D, L, N, dtype, seed=0):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    dev = dict(device=DEVICE, dtype=dtype, generator=gen)
    xs = [torch.randn(Bsz, D, L, **dev), 0.5 * torch.randn(Bsz, D, L, **dev) - 4,
          -8 * torch.rand(D, N, device=DEVICE, generator=gen), torch.randn(Bsz, N, L, **dev),
          torch.randn(Bsz, N, L, **dev), torch.randn(D, device=DEVICE, generator=gen),
          torch.randn(Bsz, D, L, **dev), torch.randn(D, device=DEVICE, generator=gen)]
    return [x.requires_grad_() for x in xs], torch.randn(Bsz, D, L, **dev)


def tune_selective_scan(copy_bw: float, only_variants: set[str] | None = None) -> list[dict]:
    from .selective_scan import (
        chunked_selective_scan,
        triton_scan,
        triton_selective_scan,
    )
    default = {k: dict(v) for k, v in triton_scan.TILES.items()}
    variants = [("time", c) for c in SS_TIME] + [("seq", c) for c in SS_SEQ]
    variants = [(v, c) for v, c in variants if only_variants is None or v in only_variants]
    rows, dtype = [], torch.bfloat16
    for Bsz, D, L, N in SS_SHAPES:
        # correctness slice: same D (same tiles), shorter L and B; fp32 reference from the same inputs
        xs_c, cot_c = _ss_inputs(min(Bsz, 2), D, min(L, 4096), N, dtype, seed=1)
        xd = [x.detach().float().requires_grad_() for x in xs_c]
        y_ref = chunked_selective_scan(*xd, delta_softplus=True)
        ref = [y_ref, *torch.autograd.grad(y_ref, xd, cot_c.float())]
        xs, cot = _ss_inputs(Bsz, D, L, N, dtype)
        fwd_bytes = (4 * Bsz * D * L + 2 * Bsz * N * L) * 2
        all_bytes = (11 * Bsz * D * L + 6 * Bsz * N * L) * 2
        for variant, cfg in variants:
            triton_scan.TILES[variant] = dict(cfg)
            f = lambda *x, v=variant: triton_selective_scan(*x, delta_softplus=True, variant=v)  # noqa: E731
            try:
                y = triton_selective_scan(*xs_c, delta_softplus=True, variant=variant)
                err = rel_error([y, *torch.autograd.grad(y, xs_c, cot_c)], ref)
                fwd, fb, _ = time_fwd_bwd(f, xs, cot, rep=40)
            except Exception as e:  # a config that does not compile or run loses, the others go on  # noqa: BLE001
                print(f"{variant} {_cfg_str(cfg)} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                err = fwd = fb = math.nan
            rows.append(dict(op="selective_scan", shape=f"B={Bsz} D={D} L={L} N={N}", dtype="bfloat16",
                             variant=variant, config=_cfg_str(cfg), err=err,
                             ok=bool(err <= TOL[dtype]), fwd_ms=fwd, fwdbwd_ms=fb, fwd_gbps=fwd_bytes / fwd / 1e6,
                             gbps=all_bytes / fb / 1e6, frac=all_bytes / fb / 1e6 / copy_bw))
            _print_row(rows[-1])
            triton_scan.TILES.update({k: dict(v) for k, v in default.items()})
        del xs, cot, xs_c, xd, ref
        torch.cuda.empty_cache()
    return rows


def tune_linear_recurrence(copy_bw: float) -> list[dict]:
    from .linear_recurrence import (
        chunked_linear_recurrence,
        triton_linear_recurrence,
        triton_scan,
    )
    default, rows = dict(triton_scan.TILES), []
    for B, T, D in LR_SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            size = torch.empty(0, dtype=dtype).element_size()
            gen = torch.Generator(device=DEVICE).manual_seed(0)
            dev = dict(device=DEVICE, dtype=dtype, generator=gen)
            a = torch.rand(B, T, D, **dev).requires_grad_()
            b = torch.randn(B, T, D, **dev).requires_grad_()
            h0 = torch.randn(B, D, **dev).requires_grad_()
            cot = torch.randn(B, T, D, **dev)
            xd = [x.detach().float().requires_grad_() for x in (a, b, h0)]
            h_ref = chunked_linear_recurrence(*xd)
            ref = [h_ref, *torch.autograd.grad(h_ref, xd, cot.float())]
            del h_ref, xd
            for cfg in LR_CFGS[size]:
                triton_scan.TILES[size] = triton_scan.TILES_LONG[size] = cfg
                try:
                    h = triton_linear_recurrence(a, b, h0)
                    err = rel_error([h, *torch.autograd.grad(h, [a, b, h0], cot)], ref)
                    fwd, fb, _ = time_fwd_bwd(triton_linear_recurrence, [a, b, h0], cot, rep=40)
                except Exception as e:  # noqa: BLE001
                    print(f"{cfg} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    err = fwd = fb = math.nan
                n = B * T * D * size
                rows.append(dict(op="linear_recurrence", shape=f"B={B} T={T} D={D}", dtype=str(dtype)[6:],
                                 variant="tile", config=cfg, err=err, ok=bool(err <= TOL[dtype]), fwd_ms=fwd,
                                 fwdbwd_ms=fb, fwd_gbps=3 * n / fwd / 1e6, gbps=8 * n / fb / 1e6,
                                 frac=8 * n / fb / 1e6 / copy_bw))
                _print_row(rows[-1])
            triton_scan.TILES.update(default)
            del a, b, h0, cot, ref
            torch.cuda.empty_cache()
    return rows


KEYS = ["op", "shape", "dtype", "variant", "config", "err", "ok", "fwd_ms", "fwdbwd_ms", "fwd_gbps",
        "gbps", "frac"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if v < 1e-2 else f"{v:.3f}" if v < 100 else f"{v:.0f}"
    return str(v)


def _print_row(r: dict) -> None:
    print("| " + " | ".join(_fmt(r[k]) for k in KEYS) + " |", flush=True)


def summarise(rows: list[dict]) -> None:
    """Best correct variant per (op, shape, dtype) by fwd+bwd time, and the TILES line for it."""
    print("\n## best per shape (fwd+bwd; correct variants only)", flush=True)
    groups = {}
    for r in rows:
        groups.setdefault((r["op"], r["shape"], r["dtype"]), []).append(r)
    for (op, shape, dtype), rs in groups.items():
        ok = [r for r in rs if r["ok"] and not math.isnan(r["fwdbwd_ms"])]
        if not ok:
            print(f"- {op} {shape} {dtype}: no correct variant", flush=True)
            continue
        best, fastest_fwd = min(ok, key=lambda r: r["fwdbwd_ms"]), min(ok, key=lambda r: r["fwd_ms"])
        print(f"- {op} {shape} {dtype}: {best['variant']} {best['config']} fwd {best['fwd_ms']:.3f} ms, "
              f"fwd+bwd {best['fwdbwd_ms']:.3f} ms ({best['frac']:.0%} of copy bw); fastest fwd: "
              f"{fastest_fwd['variant']} {fastest_fwd['config']} {fastest_fwd['fwd_ms']:.3f} ms", flush=True)
    print("\nconfig keys: selective_scan triton_scan.TILES[variant] (bt block_t, fw/bw fwd/bwd warps, fd/bd "
          "fwd/bwd BLOCK_D, bwd the time variant's backward, rev its reverse scan; shipped variant: "
          "triton_scan.VARIANT); linear_recurrence triton_scan.TILES[elem_size] = (BLOCK_T, BLOCK_D, num_warps)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["ss", "lr"], default=None)
    parser.add_argument("--variants", default=None, help="selective-scan variants to time, e.g. time")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("kernels.tune_scans needs a CUDA GPU")
    import triton

    copy_bw = copy_bandwidth_gbps()
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; "
          f"copy bandwidth {copy_bw:.0f} GB/s\n", flush=True)
    print("| " + " | ".join(KEYS) + " |\n|" + "---|" * len(KEYS), flush=True)
    rows = []
    if args.only in (None, "ss"):
        rows += tune_selective_scan(copy_bw, set(args.variants.split(",")) if args.variants else None)
    if args.only in (None, "lr"):
        rows += tune_linear_recurrence(copy_bw)
    summarise(rows)


if __name__ == "__main__":
    main()
