"""Per-kernel GPU time of the per-channel chunked linear attention (fwd+bwd, bf16, B=8 T=4096 H=8,
K=V=64 and 128) for values of the forward's chunk (`chunk.TUNE["fwd_bt"]`), under torch.profiler:
`python scripts/experiments/la_channel_kernel_split.py [--fwd-bt 16,32,64]` (needs a CUDA GPU).
Session 7 used it to split the A pass from the sweeps (results/bench/tune_linear_attention.md run 8)."""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from kernels.linear_attention import chunk, chunked_linear_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fwd-bt", default="32", help="comma-separated forward chunk sizes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    dev = dict(device="cuda", dtype=torch.bfloat16)
    for K in (64, 128):
        B, T, H = 8, 4096, 8
        q, k, v, do = (torch.randn(B, T, H, K, **dev) for _ in range(4))
        g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 8).to(torch.bfloat16)
        leaves = [t.requires_grad_() for t in (q, k, v, g)]
        for bt in (int(x) for x in args.fwd_bt.split(",")):
            chunk.TUNE.clear()
            chunk.TUNE["fwd_bt"] = bt
            def step():
                chunked_linear_attention(*leaves).backward(do)
                for t in leaves:
                    t.grad = None

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    step()
                torch.cuda.synchronize()
            per = {e.key: e.device_time_total / 10 / 1e3 for e in prof.key_averages()
                   if e.device_type == torch.autograd.DeviceType.CUDA}
            top = sorted(per.items(), key=lambda x: -x[1])[:9]
            print(f"K={K} fwd_bt={bt}: " + ", ".join(f"{n[:28]} {t:.3f} ms" for n, t in top), flush=True)
        chunk.TUNE.clear()


if __name__ == "__main__":
    main()
