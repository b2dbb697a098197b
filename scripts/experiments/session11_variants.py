"""Experiment (session 11): the two measured-and-not-kept kernel variants, rebuilt from the shipped modules.

    python scripts/experiments/session11_variants.py ss-atomics      # GPU: A/B against the shipped scan
    python scripts/experiments/session11_variants.py la-dq-rounded   # GPU: A/B against the shipped chunk.py
    python scripts/experiments/session11_variants.py ss-atomics --write /tmp/v.py   # only write the copy

Each variant is the shipped module with one textual edit (checked to apply exactly once, so the script
fails rather than time something else once the module moves on), written to a temporary file and handed
to `ab_kernels.py` as "new", the shipped module as "old".
  ss-atomics: the backward's dB/dC atomic adds on the first and last 4 of every 8 steps of a lane, so
    no lane shuffles precede them (742 -> 683 loop instructions, `kernels.sass_stats`). H100 bf16
    (torch 2.11, triton 3.6) at 93573ae's scan: fwd+bwd 4.41 -> 4.72 ms at B=8 D=2048 L=4096 N=16,
    0.92 -> 1.29 ms at B=256 D=256 L=256: the lanes' addresses 32 bytes apart doubled each atomic's memory.
  la-dq-rounded: scalar decay's q . dq from dq rounded to the input dtype (the store's layout, no fp32
    conversion). At 161563b: fwd+bwd -1 to -2% (K=V=128 T=16384 2.485 -> 2.43 ms), but dlog_decay moved
    by up to 5.4e-2 relative (ab_kernels.py's largest gradient difference).
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

VARIANTS = {"ss-atomics": ("ss", SS_ATOMICS), "la-dq-rounded": ("la", LA_DQ_ROUNDED)}


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
