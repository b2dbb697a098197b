"""`python -m zoo.bench`: the harness's training step against a plain fp32 eager implementation.

Both train the same model on the same MQAR batches. *plain* is what a straightforward script does:
fp32, full [N, T, V] logits with `ignore_index`, unfused AdamW, batches copied from the host every
step, PyTorch reference recurrences. *zoo* is the harness's step (zoo.train): scored-position
logits, bf16 autocast, fused AdamW, data resident on the device, Triton kernels. Writes
results/bench/harness.{md,csv}.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

import kernels
import tasks
from tasks import IGNORE

from .model import build_model
from .run import versions
from .train import autocast_for, train_step

OUT = Path(__file__).resolve().parents[1] / "results" / "bench"


@contextlib.contextmanager
def reference_kernels():
    """Route the mixers' kernel calls to the PyTorch paths (what a plain implementation runs)."""
    from kernels.linear_attention import chunk_linear_attention_torch

    saved = kernels.chunked_linear_attention

    def torch_path(*args, **kwargs):  # the PyTorch path returns (o, state or None)
        o, state = chunk_linear_attention_torch(*args, **kwargs)
        return (o, state) if kwargs.get("output_final_state") else o

    kernels.chunked_linear_attention = torch_path
    try:
        yield
    finally:
        kernels.chunked_linear_attention = saved


def plain_step(model, optimizer, batch_cpu, device):
    inputs, labels = batch_cpu.inputs.to(device), batch_cpu.labels.to(device)
    logits = model(inputs)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_steps(step, n_steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n_steps


def bench_model(name: str, *, d_model: int, seq_len: int, kv: int, batch: int, steps: int) -> list[dict]:
    device = torch.device("cuda")
    task = tasks.make("mqar", vocab_size=8192, seq_len=seq_len, num_kv_pairs=kv)
    data = task.generate(batch * 4, seed=0)
    parts = [data[i * batch:(i + 1) * batch] for i in range(4)]
    rows = []
    for impl in ("plain", "zoo"):
        torch.manual_seed(0)
        model = build_model(name, vocab_size=8192, d_model=d_model, n_layers=2, max_seq_len=seq_len).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=impl == "zoo")
        if impl == "plain":  # batches copied from the host every step
            host = itertools.cycle(parts)
            with reference_kernels():
                sec = time_steps(lambda: plain_step(model, optimizer, next(host), device), steps)
        else:  # batches resident on the device
            resident = itertools.cycle([b.to(device) for b in parts])
            autocast = autocast_for("bf16", device)
            sec = time_steps(lambda: train_step(model, next(resident), optimizer, None, autocast), steps)
        rows.append({"model": name, "impl": impl, "d_model": d_model, "seq_len": seq_len, "kv_pairs": kv,
                     "batch": batch, "ms_per_step": 1e3 * sec, "steps_per_s": 1 / sec,
                     "tokens_per_s": batch * seq_len / sec})
    rows[1]["speedup"] = rows[0]["ms_per_step"] / rows[1]["ms_per_step"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="attention,based,gla,mamba2")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("zoo.bench measures the GPU training step: it needs CUDA")
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, d_model=128, seq_len=256, kv=16, batch=256, steps=args.steps)
        print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    v = versions()
    header = (f"# Harness training step: zoo vs plain fp32 eager\n\nGPU: {torch.cuda.get_device_name()}; "
              f"torch {v['torch']}; triton {v['triton']}. Command: `python -m zoo.bench`. MQAR V=8192, "
              f"L=256, 16 kv pairs, batch 256, d_model=128, 2 layers.\n\n")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "harness.md").write_text(header + df.to_markdown(index=False, floatfmt=".3g") + "\n")
    df.to_csv(OUT / "harness.csv", index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
