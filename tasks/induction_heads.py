"""Induction heads (Gu & Dao 2023, *Mamba*, arXiv 2312.00752, §4.1.2; formulation of H3: Fu, Dao,
Saab, Thomas, Rudra, Ré 2022, arXiv 2212.14052).

A trigger token appears once in a random prefix; at the end the trigger is repeated and the model
must output the token that followed its first occurrence. The closest released generator is
HazyResearch/safari `generate_induction_head` (Mamba's is unreleased).

1. Vocabulary: data 0..V-3, trigger V-2, no-op V-1 (never emitted; safari sorts token strings, so
   its ids are a permutation of these).
2. Draw L i.i.d. uniform data tokens x_0..x_{L-1} (L = the prefix length).
3. Pick p uniform on [0, L-2), set x_p = trigger; the answer is a = x_{p+1}.
4. Append the trigger at position L (and a at L+1, which is not part of the inputs).
5. Inputs are positions 0..L (L+1 tokens). Test label: only labels[L] = a.
   Train labels follow `train_loss`: "full" (safari: labels[t] = x_{t+1} for t < L, plus
   labels[L] = a) or "answer" (as test).

Choices stated explicitly (TASKS.md §4): full vs answer-only training loss (`train_loss`; the Mamba
paper does not say); whether "sequence length" is the prefix L (`seq_len_counts="prefix"`, default)
or L+2 (`"total"`); fresh vs fixed data is the harness's. safari's `num_triggers>1` is not offered.
Chance accuracy is 1/(V-2). Paper setting: V=16, trained at 256, tested at 2^6..2^20.

Example, `InductionHeads(vocab_size=6, seq_len=6).generate(1, seed=0)`::

    Inputs: 0 3 1 4 3 3 4
    Labels: . . . . . . 3
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class InductionHeads(Task):
    name = "induction_heads"
    metric = "micro"

    vocab_size: int = 16
    seq_len: int = 256
    train_loss: Literal["full", "answer"] = "full"
    seq_len_counts: Literal["prefix", "total"] = "prefix"

    def __post_init__(self) -> None:
        check(self.vocab_size >= 3,
              f"induction_heads: vocab_size must be >= 3 (data, trigger, no-op), got {self.vocab_size}")
        check(self.train_loss in ("full", "answer"),
              f"induction_heads: train_loss must be 'full' or 'answer', got {self.train_loss!r}")
        check(self.seq_len_counts in ("prefix", "total"),
              f"induction_heads: seq_len_counts must be 'prefix' or 'total', got {self.seq_len_counts!r}")
        check(self.prefix_len >= 3, f"induction_heads: seq_len={self.seq_len} leaves a prefix of {self.prefix_len} "
                                    f"tokens; the trigger and its answer need a prefix >= 3")

    @property
    def prefix_len(self) -> int:
        return self.seq_len if self.seq_len_counts == "prefix" else self.seq_len - 2

    @property
    def input_len(self) -> int:
        return self.prefix_len + 1

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, L, V = num_examples, self.prefix_len, self.vocab_size
        trigger = V - 2
        gen = generator(seed)
        # 2-3. i.i.d. data, one trigger at p in [0, L-2)
        prefix = torch.randint(0, V - 2, (N, L), generator=gen)
        p = torch.randint(0, L - 2, (N, 1), generator=gen)
        prefix.scatter_(1, p, trigger)
        answer = prefix.gather(1, p + 1)  # [N, 1]
        # 4-5. the trigger again at position L; its label is the answer
        inputs = torch.cat([prefix, torch.full((N, 1), trigger, dtype=torch.long)], dim=1)
        labels = torch.full((N, L + 1), IGNORE, dtype=torch.long)
        if split == "train" and self.train_loss == "full":
            labels[:, :L] = inputs[:, 1:]
        labels[:, L:] = answer
        return Batch(inputs, labels)
