"""Experiment: kernel variants measured and not kept, and timing probes, rebuilt from the shipped modules.

    python scripts/experiments/kernel_variants.py ss-atomics      # GPU: A/B against the shipped scan
    python scripts/experiments/kernel_variants.py la-dq-rounded   # GPU: A/B against the shipped chunk.py
    python scripts/experiments/kernel_variants.py ss-atomics --write /tmp/v.py   # only write the copy

Each variant is the shipped module with textual edits (each checked to apply exactly once, so the script
fails rather than time something else once the module moves on), written to a temporary file and handed
to `ab_kernels.py` as "new", the shipped module as "old".
Session 11, not kept:
  ss-atomics: the backward's dB/dC atomic adds on the first and last 4 of every 8 steps of a lane, so
    no lane shuffles precede them (742 -> 683 loop instructions, `kernels.sass_stats`). H100 bf16
    (torch 2.11, triton 3.6) at 93573ae's scan: fwd+bwd 4.41 -> 4.72 ms at B=8 D=2048 L=4096 N=16,
    0.92 -> 1.29 ms at B=256 D=256 L=256: the lanes' addresses 32 bytes apart doubled each atomic's memory.
  la-dq-rounded: scalar decay's q . dq from dq rounded to the input dtype (the store's layout, no fp32
    conversion). At 161563b: fwd+bwd -1 to -2% (K=V=128 T=16384 2.485 -> 2.43 ms), but dlog_decay moved
    by up to 5.4e-2 relative (ab_kernels.py's largest gradient difference).
Session 12, timing probes (wrong gradients: each shows what one part of a kernel costs):
  la-no-dg: scalar decay's dk/dv sweep without dlog_decay (no row sums k . dk, suffix sums or dg
    store; since 113afbe the sums over tokens are `_dg_scalar_kernel`'s at 8 warps, which still runs).
    At ac17a88: fwd+bwd from a graph 0.644 -> 0.580 ms at B=8 T=4096 H=8 K=V=128, 2.36 -> 2.13 at
    T=16384, 0.251 -> 0.249 at K=V=64 (results/bench/tune_linear_attention.md run 16); at 77f59e8 0.607
    -> 0.542, 2.17 -> 1.93 (run 19).
  la-no-cumsum: scalar decay's dq and dk/dv sweeps use g in place of its within-chunk cumulative sum
    (no tl.cumsum / tl.sum across warps). At ac17a88: slower, 0.64 -> 0.73 ms at K=V=128 T=4096. Not a
    clean measure of the scan's cost: the probe's G at the chunk end is a load inside the chunk (not
    one chunk ahead), whose latency it adds. Session 13's G formed once and loaded one chunk ahead lost
    too, through spills (results/bench/tune_linear_attention.md run 22).
  la-no-xq: scalar decay's dq sweep without q . dq (its row sum over K and, where nothing else reads q,
    the load of q). At 113afbe's kernels: K=V=128 T=4096 0.596 -> 0.555 ms, T=16384 2.12 -> 1.96;
    K=V=64 T=4096 0.250 -> 0.243; Zoology H=4 0.220 -> 0.203 (tune_linear_attention.md run 20).
  la-no-xk: the same for k . dk in the dk/dv sweep at 8 warps (`_dg_split`): K=V=128 T=4096 0.596 ->
    0.560, T=16384 2.12 -> 1.99.
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]

SS_ATOMICS = ("kernels/selective_scan/triton_scan.py", [
    ('''                tl.atomic_add(dB_ptr + bc_base + n * L + offs_t, tl.sum(g * du, axis=0), mask=mask_t,
                              sem="relaxed")
                tl.atomic_add(dC_ptr + bc_base + n * L + offs_t, tl.sum(hs * dy, axis=0), mask=mask_t,
                              sem="relaxed")
''', '''                _atomic_add_t(dB_ptr + bc_base + n * L, tile * BLOCK_T, L, tl.sum(g * du, axis=0))
                _atomic_add_t(dC_ptr + bc_base + n * L, tile * BLOCK_T, L, tl.sum(hs * dy, axis=0))
'''),
    ('''@triton.jit
def _ss_bwd_time_kernel(''', '''@triton.jit
def _atomic_add_t(base, t0, L, x):
    T: tl.constexpr = x.shape[0]
    x0, x1 = tl.split(tl.permute(tl.reshape(x, [T // 8, 2, 4]), (0, 2, 1)))
    o = t0 + (tl.arange(0, T // 8) * 8)[:, None] + tl.arange(0, 4)[None, :]
    tl.atomic_add(base + o, x0, mask=o < L, sem="relaxed")
    tl.atomic_add(base + o + 4, x1, mask=o + 4 < L, sem="relaxed")


@triton.jit
def _ss_bwd_time_kernel('''),
])

LA_DQ_ROUNDED = ("kernels/linear_attention/chunk.py", [
    ('''        tl.store(dq + o_t[:, None] * (H * K) + o_k[None, :], b_dq.to(dq.dtype.element_ty),
                 mask=m_t[:, None] & m_k[None, :])
''', '''        b_dq_out = b_dq.to(dq.dtype.element_ty)
        tl.store(dq + o_t[:, None] * (H * K) + o_k[None, :], b_dq_out, mask=m_t[:, None] & m_k[None, :])
'''),
    ('''tl.sum(b_q.to(tl.float32) * b_dq, axis=1, keep_dims=True)''',
     '''tl.sum(b_q.to(tl.float32) * b_dq_out.to(tl.float32), axis=1, keep_dims=True)'''),
])

LA_NO_DG = ("kernels/linear_attention/chunk.py", [
    ('''        elif DGS:   # k_t . dk_t as a [BT, 1] column''',
     '''        elif DGS and False:   # k_t . dk_t as a [BT, 1] column'''),
    ('''        elif DG:
            b_x = b_xqn - tl.sum(b_k.to(tl.float32) * b_dk, axis=1)''',
     '''        elif DG and False:
            b_x = b_xqn - tl.sum(b_k.to(tl.float32) * b_dk, axis=1)'''),
])

LA_NO_CUMSUM = ("kernels/linear_attention/chunk.py", [
    ('''            b_gn = tl.load(g + (o_t + BT) * H, mask=o_t + BT < T, other=0.0)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)''',
     '''            b_gn = tl.load(g + (o_t + BT) * H, mask=o_t + BT < T, other=0.0)
            b_G = b_g
            b_GC = tl.load(g + i_t * BT * H).to(tl.float32)'''),
    ('''            b_gn = tl.load(g + (o_t - BT) * H, mask=o_t >= BT, other=0.0)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)''',
     '''            b_gn = tl.load(g + (o_t - BT) * H, mask=o_t >= BT, other=0.0)
            b_G = b_g
            b_GC = tl.load(g + i_t * BT * H).to(tl.float32)'''),
])

LA_NO_XQ = ("kernels/linear_attention/chunk.py", [
    ('''tl.store(xq + o_t[:, None] * H, tl.sum(b_q.to(tl.float32) * b_dq, axis=1, keep_dims=True),''',
     '''tl.store(xq + o_t[:, None] * H, tl.zeros([BT, 1], tl.float32),'''),
])

LA_NO_XK = ("kernels/linear_attention/chunk.py", [
    ('''            tl.store(dg + o_t[:, None] * H, tl.sum(b_k.to(tl.float32) * b_dk, axis=1, keep_dims=True),''',
     '''            tl.store(dg + o_t[:, None] * H, tl.zeros([BT, 1], tl.float32),'''),
])

VARIANTS = {"ss-atomics": ("ss", SS_ATOMICS), "la-dq-rounded": ("la", LA_DQ_ROUNDED), "la-no-dg": ("la", LA_NO_DG),
            "la-no-cumsum": ("la", LA_NO_CUMSUM), "la-no-xq": ("la", LA_NO_XQ), "la-no-xk": ("la", LA_NO_XK)}


def variant_source(name: str) -> str:
    """The shipped module's text with the variant's edits, each applied exactly once."""
    path, edits = VARIANTS[name][1]
    text = (ROOT / path).read_text()
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"{name}: an edit no longer applies to {path} (found {text.count(old)} times)")
        text = text.replace(old, new)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--write", type=pathlib.Path, help="write the variant here and stop")
    args = parser.parse_args()
    text = variant_source(args.variant)
    if args.write:
        args.write.write_text(text)
        return
    op = VARIANTS[args.variant][0]
    with tempfile.TemporaryDirectory() as tmp:
        new = pathlib.Path(tmp) / "variant.py"
        new.write_text(text)
        extra = ["--decays", "scalar"] if op == "la" else []
        subprocess.run([sys.executable, str(ROOT / "scripts/experiments/ab_kernels.py"), op, "now", str(new), *extra],
                       check=True)


if __name__ == "__main__":
    main()
