"""Memorization (Poli et al. 2024, *Mechanistic Design and Scaling of Hybrid Architectures*, arXiv
2403.17844, MAD; reference athms/mad-lab `mad/data/instances.py`).

One fixed key->value map, shared by train and test, must be stored in the weights.

1. Fact map, seeded by `fact_seed` (MAD: the config seed, 12345), independent of the data seed:
   shuffle keys [0, (V-1)//2) and values [(V-1)//2, V-1), then zip them: K = (V-1)//2 facts
   (127 at V=256).
2. Inputs: L/2 pairs (key, insert token V-1); keys uniform over the K facts, with replacement.
3. Labels: the key's value on each insert token (labels[2j+1] = value of inputs[2j]), no shift.

Train and test labels are the same; a test key never seen in training cannot be answered (the
fraction is about exp(-draws/K) for `draws` training key draws). Our shuffle uses the seeded torch
generator, so the map (not its distribution) differs from MAD's NumPy one. Paper setting: V=256,
L=32, 256 training sequences.

Example, `Memorization(vocab_size=9, seq_len=6).generate(1, seed=0)`::

    Inputs: 0 8 3 8 1 8
    Labels: . 6 . 7 . 4
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class Memorization(Task):
    name = "memorization"
    metric = "micro"

    vocab_size: int = 256
    seq_len: int = 32
    fact_seed: int = 12345

    def __post_init__(self) -> None:
        check(self.vocab_size >= 3, f"memorization: vocab_size must be >= 3 (a key, a value, the insert token), "
                                    f"got {self.vocab_size}")
        check(self.seq_len >= 2 and self.seq_len % 2 == 0,
              f"memorization: seq_len must be even and >= 2, got {self.seq_len}")

    @property
    def input_len(self) -> int:
        return self.seq_len

    def facts(self) -> torch.Tensor:
        """[K] the value of each key 0..K-1 (the fixed fact map)."""
        half = (self.vocab_size - 1) // 2
        gen = generator(self.fact_seed)
        keys = torch.randperm(half, generator=gen)
        values = half + torch.randperm(self.vocab_size - 1 - half, generator=gen)
        return torch.empty(half, dtype=torch.long).scatter_(0, keys, values[:half])

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, L, V = num_examples, self.seq_len, self.vocab_size
        facts = self.facts()
        keys = torch.randint(0, facts.numel(), (N, L // 2), generator=generator(seed))
        inputs = torch.stack([keys, torch.full_like(keys, V - 1)], dim=2).view(N, L)
        labels = torch.stack([torch.full_like(keys, IGNORE), facts[keys]], dim=2).view(N, L)
        return Batch(inputs, labels)
