"""Time the per-channel reference point's flag pass (`chunk._ref_flag_kernel`) alone over its chunks per
program (W) and num_warps, at the long benchmark shapes (bf16 g, B=8 H=8): `python
scripts/experiments/flag_pass_configs.py` (GPU). Prints ms and the share of the measured copy bandwidth
for reading g once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton

from kernels.bench import copy_bandwidth_gbps
from kernels.linear_attention import chunk


def main() -> None:
    bw = copy_bandwidth_gbps()
    print(f"GPU: {torch.cuda.get_device_name()}; copy bandwidth {bw:.0f} GB/s")
    for T, K in [(4096, 64), (4096, 128), (16384, 64)]:
        B, H, BT = 8, 8, chunk.FWD_BT
        g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 8).to(torch.bfloat16)
        flag = torch.empty(B * H, triton.cdiv(T, BT), device="cuda", dtype=torch.int8)
        for w in (1, 2, 4, 8, 16):
            for warps in (1, 2, 4, 8):
                grid = (B * H * triton.cdiv(triton.cdiv(T, BT), w),)   # one-dimensional, as chunk.py launches it
                fn = lambda: chunk._launch(chunk._ref_flag_kernel, grid, g, flag, T, H, K,  # noqa: E731
                                           BT=BT, BK=K, W=w, num_warps=warps)
                ms = triton.testing.do_bench(fn, warmup=10, rep=50)
                print(f"T={T} K={K} W={w:<2} warps={warps}: {ms * 1e3:7.1f} us, "
                      f"{g.numel() * 2 / (ms * 1e-3) / 1e9 / bw:.0%} of copy bandwidth", flush=True)


if __name__ == "__main__":
    main()
