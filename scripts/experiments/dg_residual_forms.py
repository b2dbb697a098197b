"""Experiment (session 22, CPU): dlog_decay's error per channel with each way the dq sweep hands dq's
rounding to dk/dv (TUNE res8, res_chunk; results/bench/tune_linear_attention.md, session 22).

Runs the Triton kernels under the interpreter (fp16: bf16 tl.dot does not run there), B=1 H=1 K=16 V=32,
log_decay = -0.2 U(0, 1), and prints each gradient's relative RMS error against the fp64 reference:

    python scripts/experiments/dg_residual_forms.py [--T 200,1000]

Readings (triton 3.9 interpreter, torch 2.13 CPU), dlog_decay: T=200 1.60e-3 (bf16 residual), 1.59e-3 (int8),
1.65e-3 (sums over chunks); T=1000 2.34e-3, 2.34e-3, 2.36e-3.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ["TRITON_INTERPRET"] = "1"   # before triton's first import
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kernels")]

import torch  # noqa: E402

import test_chunked_linear_attention as t  # noqa: E402  (its inputs, reference and error measure)
from kernels.linear_attention import chunk  # noqa: E402

FORMS = {"bf16 residual": {}, "int8 residual": {"res8": True}, "sums over chunks": {"res_chunk": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", default="200,1000")
    args = parser.parse_args()
    for T in map(int, args.T.split(",")):
        inputs = t.make_inputs(1, T, 1, 16, 32, "channel", torch.float16, strength=0.2)
        ref = t.run_fwd_bwd(t.naive_linear_attention, inputs, upcast=True)
        for name, tune in FORMS.items():
            chunk.TUNE.clear()
            chunk.TUNE.update(tune)
            errs = t.rel_errors(ref, t.run_fwd_bwd(t.triton_impl, inputs))
            print(f"T={T:<5} {name:<17} " + " ".join(f"{k} {v:.2e}" for k, v in errs.items()), flush=True)
    chunk.TUNE.clear()


if __name__ == "__main__":
    main()
