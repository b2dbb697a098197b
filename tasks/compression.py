"""Compression (Poli et al. 2024, *Mechanistic Design and Scaling of Hybrid Architectures*, arXiv
2403.17844, MAD; reference athms/mad-lab `mad/data/instances.py`).

The model must squeeze a random sequence into its last position's vector and decode it back.

1. Inputs: L-1 tokens uniform on [0, V-1), then the compression token V-1 (L = seq_len).
2. Labels: the inputs themselves, at all L positions (the compression token included).
3. Head (`head = "compression"`): the backbone is an autoencoder. Its encoder's last-position vector
   h [N, D] plus fixed sin-cos position embeddings pe [L, D] goes through a 2-layer GELU MLP of
   width `dim`, then the unembedding: logits[n, t] = unembed(MLP(h[n] + pe[t])), [N, L, V], scored
   against labels like any other task. An LM head on the raw per-position outputs would solve the
   task by copying, so the harness must not use one.

Train and test labels are the same. Information content: (L-1)·log2(V-1) bits per sequence
(121.1 at the paper's V=16, L=32). MAD computes noise-masked targets but returns (inputs, inputs);
with no noise (the benchmark) that makes no difference, so noise is not offered.

Example, `Compression(vocab_size=4, seq_len=6).generate(1, seed=0)`::

    Inputs: 2 0 2 0 1 3
    Labels: 2 0 2 0 1 3
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class Compression(Task):
    name = "compression"
    metric = "micro"
    head = "compression"

    vocab_size: int = 16
    seq_len: int = 32

    def __post_init__(self) -> None:
        check(self.vocab_size >= 2, f"compression: vocab_size must be >= 2 (a token and the compression token), "
                                    f"got {self.vocab_size}")
        check(self.seq_len >= 2, f"compression: seq_len must be >= 2, got {self.seq_len}")

    @property
    def input_len(self) -> int:
        return self.seq_len

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, L, V = num_examples, self.seq_len, self.vocab_size
        gen = generator(seed)
        body = torch.randint(0, V - 1, (N, L - 1), generator=gen)
        inputs = torch.cat([body, torch.full((N, 1), V - 1, dtype=torch.long)], dim=1)
        return Batch(inputs, inputs.clone())
