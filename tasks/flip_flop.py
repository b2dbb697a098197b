"""Flip-flop language modeling (Liu, Ash, Goel, Krishnamurthy, Zhang 2023, *Exposing Attention
Glitches with Flip-Flop Language Modeling*, arXiv 2306.00946).

A sequence of write/read/ignore instructions, each followed by a bit; a read must reproduce the bit
of the latest write, however many ignores lie between (the "glitch rate" is the read error).

1. Ids (HF `synthseq/flipflop`): w=0, r=1, i=2, bit '0'=3, bit '1'=4. T = seq_len is even:
   instructions at even positions, bits at odd ones.
2. x_0 = w and x_{T-2} = r; the other T/2-2 instructions are i.i.d. with probabilities
   (p_write, p_read, p_ignore); FFL(p) means p_ignore=p and p_write = p_read = (1-p)/2 (the
   default when p_write / p_read are None).
3. The bit after w or i is uniform; the bit after r equals the bit after the latest w.
4. Test labels (clean): labels[t] = x_{t+1} wherever x_t = r, the only deterministic positions.
   Train labels follow `mode`: "clean" (default, as test) or "generative" (labels[t] = x_{t+1}
   for every t < T-1; the last position has nothing to predict).

Choices stated explicitly (TASKS.md §5): clean vs generative training loss (`mode`; the test split
is always clean, so the headline micro accuracy is 1 - glitch rate); the argmax range (full
vocabulary or {0,1}) is the harness's; online sampling vs the fixed HF set is the harness's (fixed
eval sets from a fixed seed); the eval slices follow the dataset card (`sparse` = FFL(0.98) with
10^5 sequences, `dense` = FFL(0.1) with 3,000), not the paper text. Paper setting: T=512,
FFL(0.8) for training.

Example, `FlipFlop(seq_len=8).generate(1, seed=0)`::

    Inputs: 0 4 2 4 2 4 1 4
    Labels: . . . . . . 4 .
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator

WRITE, READ, IGNORE_OP, ZERO, ONE = 0, 1, 2, 3, 4


@dataclass(frozen=True, kw_only=True)
class FlipFlop(Task):
    name = "flip_flop"
    metric = "micro"

    vocab_size: int = 5
    seq_len: int = 512
    p_ignore: float = 0.8
    p_write: float | None = None
    p_read: float | None = None
    mode: Literal["clean", "generative"] = "clean"

    def __post_init__(self) -> None:
        T = self.seq_len
        check(self.vocab_size >= 5, f"flip_flop: vocab_size must be >= 5 (w r i 0 1), got {self.vocab_size}")
        check(T >= 4 and T % 2 == 0, f"flip_flop: seq_len must be even and >= 4, got {T}")
        check(self.mode in ("clean", "generative"),
              f"flip_flop: mode must be 'clean' or 'generative', got {self.mode!r}")
        probs = self.probs
        check(all(p >= 0 for p in probs) and abs(sum(probs) - 1) < 1e-9,
              f"flip_flop: p_write, p_read, p_ignore must be >= 0 and sum to 1, got {probs}")

    @property
    def probs(self) -> tuple[float, float, float]:
        """(p_write, p_read, p_ignore), filling None with (1 - p_ignore) / 2."""
        half = (1 - self.p_ignore) / 2
        pw = half if self.p_write is None else self.p_write
        pr = half if self.p_read is None else self.p_read
        return pw, pr, self.p_ignore

    @property
    def input_len(self) -> int:
        return self.seq_len

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, T = num_examples, self.seq_len
        gen = generator(seed)
        # 2. instructions: [N, T/2], first w, last r
        pw, pr, _ = self.probs
        u = torch.rand(N, T // 2, generator=gen, dtype=torch.float64)
        ops = (u >= pw).long() + (u >= pw + pr).long()  # 0=w with prob pw, 1=r with pr, 2=i
        ops[:, 0], ops[:, -1] = WRITE, READ
        # 3. bits: uniform, then reads copy the bit of the latest write
        bits = torch.randint(0, 2, (N, T // 2), generator=gen)
        step = torch.arange(T // 2).expand(N, -1)
        last_write = torch.where(ops == WRITE, step, 0).cummax(dim=1).values  # [N, T/2]
        bits = torch.where(ops == READ, bits.gather(1, last_write), bits)
        inputs = torch.stack([ops, ZERO + bits], dim=2).view(N, T)
        # 4. labels: the next token, at reads only (clean) or everywhere (generative, train)
        labels = torch.full((N, T), IGNORE, dtype=torch.long)
        labels[:, :-1] = inputs[:, 1:]
        if split == "test" or self.mode == "clean":
            labels[inputs != READ] = IGNORE
        return Batch(inputs, labels)
