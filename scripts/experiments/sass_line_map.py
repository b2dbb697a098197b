"""Which source lines put barriers and shared-memory round trips into a linear-attention sweep's loop (no GPU).

A sweep bound by latency (one 8-warp program per SM at K=V=128) spends its chunk in phases separated by
BAR.SYNC; most of them are layout conversions through shared memory (STS, BAR, LDS) that triton inserts
between tl.dots and around loads and stores. This compiles one kernel as `kernels.sass_stats` does (sm_90,
the shipped configs, optionally a tune.py variant's TUNE), finds its innermost loop in cuobjdump's listing,
reads the source line of each instruction from `nvdisasm -g` (triton's bundled tools) and prints, per line
of chunk.py, the loop's BAR, STS and LDS:

    python scripts/experiments/sass_line_map.py bwd_dkv_kernel --k 128
    python scripts/experiments/sass_line_map.py fwd_kernel --decay scalar

Session 18, triton 3.6, per-channel dk/dv at K=V=128: 20 barriers per 16-token chunk: the pipelined loads'
stages (q, do), v dS^T, k e^(G_C - G), the intra-chunk tl.dot, the select of the A pass's tile (flagged
chunks' A^T, converted every chunk), A^T do, the stores of dv, dk and dg (2 each), dg's tf32 suffix sums
(x_hi, x_lo to a tl.dot operand) and the dS update.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from kernels import sass_stats  # noqa: E402


def _disassemble(kernel: sass_stats.Kernel) -> tuple[str, str]:
    """(cuobjdump -sass listing, nvdisasm -g listing) of the kernel compiled for sm_90."""
    sig, consts, attrs = sass_stats._specialise(kernel.fn, kernel.types, kernel.consts, kernel.ints, kernel.ptrs,
                                                kernel.floats)
    options = dict(num_warps=kernel.warps, **({"maxnreg": kernel.maxnreg} if kernel.maxnreg else {}))
    compiled = triton.compile(ASTSource(fn=kernel.fn, signature=sig, constexprs=consts, attrs=attrs),
                              target=GPUTarget("cuda", 90, 32), options=options)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = pathlib.Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run([sass_stats._tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
        lines = subprocess.run([sass_stats._tool("nvdisasm"), "-g", "-c", str(cubin)], capture_output=True,
                               text=True, check=True).stdout
    return sass, lines


def _source_lines(listing: str) -> dict[int, tuple[str, int]]:
    """address -> (file name, line) from an nvdisasm -g listing."""
    out, where = {}, None
    for text in listing.splitlines():
        m = re.search(r'//## File "([^"]+)", line (\d+)', text)
        if m:
            where = (pathlib.Path(m.group(1)).name, int(m.group(2)))
            continue
        m = re.search(r"/\*([0-9a-f]{4,})\*/", text)
        if m and where:
            out[int(m.group(1), 16)] = where
    return out


OPS = ("BAR", "STS", "LDS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", help="e.g. bwd_dkv_kernel, bwd_dq_kernel, fwd_kernel")
    parser.add_argument("--k", type=int, default=64, help="K = V (default 64)")
    parser.add_argument("--decay", default="channel", choices=["none", "scalar", "channel"])
    parser.add_argument("--variant", default=None, help="a kernels.linear_attention.tune variant's TUNE")
    args = parser.parse_args()
    label = f"linear_attention {args.kernel} decay={args.decay}"
    kernel = next(k for k in sass_stats._linear_attention_kernels(args.k, None, args.variant) if k.label == label)
    sass, listing = _disassemble(kernel)
    instrs = sass_stats.parse_sass(sass)
    lo, hi = max(sass_stats.innermost_loops(instrs), key=lambda r: r[1] - r[0])   # the chunk loop: the longest
    where = _source_lines(listing)
    count = collections.Counter((where.get(addr, ("?", 0)), op) for addr, op, _ in instrs
                                if lo <= addr <= hi and op in OPS)
    src = (ROOT / "kernels/linear_attention/chunk.py").read_text().splitlines()
    total = collections.Counter(op for (_, op), n in count.items() for _ in range(n))
    print(f"{label} K=V={args.k}: loop {lo:#x}-{hi:#x}, {sum(1 for a, _, _ in instrs if lo <= a <= hi)} "
          f"instructions; BAR {total['BAR']}, STS {total['STS']}, LDS {total['LDS']}")
    for ((name, line), op), n in sorted(count.items(), key=lambda x: (x[0][0][1], x[0][1])):
        text = src[line - 1].strip() if name == "chunk.py" and 0 < line <= len(src) else ""
        print(f"  {op:<3} x{n:<2} {name}:{line}  {text[:100]}")


if __name__ == "__main__":
    main()
