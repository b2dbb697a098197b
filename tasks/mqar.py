"""MQAR: multi-query associative recall (Arora et al. 2023, *Zoology*, arXiv 2312.04927, §3).

Faithful to the Zoology generator (HazyResearch/zoology, `data/multiquery_ar.py`):

1. Vocabulary: token 0 is filler, keys are [1, V/2), values are [V/2, V).
2. Per example, D distinct keys and D distinct values (uniform, without replacement), paired
   index-wise.
3. Context: positions 0..C-1 with C = 2·D·P hold k1 v1 ... kD vD, tiled P = `num_passes` times.
4. Query region: positions C..L-1 form S = (L-C)/2 two-token slots. Slots g1..gD are drawn one
   after another without replacement with p(g) ∝ (g+1)^(a-1) (a = `power_a`; a=1 is uniform, small
   a clusters queries right after the context). Key ki goes to position C + 2·gi.
5. Every other query-region position is 0, or i.i.d. uniform on [0, V) with `random_non_queries`
   (`noise="disjoint"` excludes the example's own keys and values from that filler).
6. Labels: labels[C + 2·gi] = vi (the next-token convention: the value is predicted on the key);
   -100 elsewhere. Inputs are exactly L tokens.

Choices stated explicitly (TASKS.md §1): filler comes from the seeded generator (the reference uses
the global RNG); `couple_query_order=True` keeps the reference coupling (the i-th context key gets
the i-th slot draw), `False` decouples it by a random permutation.

Example, `MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2, random_non_queries=False).generate(1, seed=0)`::

    Inputs: 2 15 6 9 2 0 6 0 0 0 0 0
    Labels: . . . . 15 . 9 . . . . .

The headline metric is per-example accuracy (the fraction of an example's D queries answered by
the full-vocabulary argmax, averaged over examples), as in the reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator, sample_distinct


@dataclass(frozen=True, kw_only=True)
class MQAR(Task):
    name = "mqar"
    metric = "per_example"

    vocab_size: int = 8192
    seq_len: int = 64
    num_kv_pairs: int = 8
    power_a: float = 0.01
    random_non_queries: bool = True
    num_passes: int = 1
    noise: Literal["full_vocab", "disjoint"] = "full_vocab"
    couple_query_order: bool = True

    def __post_init__(self) -> None:
        L, D, V, P = self.seq_len, self.num_kv_pairs, self.vocab_size, self.num_passes
        check(D >= 1, f"mqar: num_kv_pairs must be >= 1, got {D}")
        check(P >= 1, f"mqar: num_passes must be >= 1, got {P}")
        check(L % 2 == 0, f"mqar: seq_len must be even, got {L}")
        check(V > L, f"mqar: vocab_size must exceed seq_len, got vocab_size={V} <= seq_len={L}; "
                     f"raise task.vocab_size or lower task.seq_len")
        need = 2 * D * P + 2 * D
        check(need <= L, f"mqar: num_kv_pairs={D} needs seq_len >= {2 * P + 2}*num_kv_pairs = {need}, "
                         f"got {L}; raise task.seq_len or lower task.num_kv_pairs")
        check(D <= V // 2 - 1, f"mqar: num_kv_pairs={D} needs vocab_size >= 2*(num_kv_pairs+1) = {2 * (D + 1)}, "
                               f"got {V}")
        check(self.power_a > 0, f"mqar: power_a must be > 0, got {self.power_a}")
        check(self.noise in ("full_vocab", "disjoint"),
              f"mqar: noise must be 'full_vocab' or 'disjoint', got {self.noise!r}")

    @property
    def input_len(self) -> int:
        return self.seq_len

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, L, D, V, P = num_examples, self.seq_len, self.num_kv_pairs, self.vocab_size, self.num_passes
        gen = generator(seed)
        context_len = 2 * D * P
        num_slots = (L - context_len) // 2

        # 1-2. distinct keys in [1, V/2) and values in [V/2, V), paired index-wise: [N, D]
        keys = 1 + sample_distinct(N, V // 2 - 1, D, gen)
        values = V // 2 + sample_distinct(N, V - V // 2, D, gen)

        # 3. context k1 v1 ... kD vD, tiled P times: [N, C]
        context = torch.stack([keys, values], dim=2).reshape(N, 2 * D).repeat(1, P)

        # 4. sequential draws without replacement, p(g) ∝ (g+1)^(a-1): Gumbel-top-k gives the
        #    draws in order (Plackett-Luce), so slots[:, i] is g_{i+1}.
        log_w = (self.power_a - 1) * torch.log(torch.arange(1, num_slots + 1, dtype=torch.float64))
        u = torch.rand(N, num_slots, generator=gen, dtype=torch.float64).clamp_(1e-300, 1 - 1e-16)
        slots = (log_w - torch.log(-torch.log(u))).topk(D, dim=1).indices  # [N, D]
        if not self.couple_query_order:
            perm = sample_distinct(N, D, D, gen)
            slots = slots.gather(1, perm)

        # 5. filler for the query region: [N, L - C]
        query_len = L - context_len
        if self.random_non_queries:
            region = torch.randint(0, V, (N, query_len), generator=gen)
            if self.noise == "disjoint":
                region = self._resample_collisions(region, torch.cat([keys, values], 1), gen)
        else:
            region = torch.zeros(N, query_len, dtype=torch.long)
        query_pos = 2 * slots  # [N, D] offsets inside the query region
        region.scatter_(1, query_pos, keys)

        # 6. labels on the query keys
        labels = torch.full((N, L), IGNORE, dtype=torch.long)
        labels[:, context_len:].scatter_(1, query_pos, values)
        inputs = torch.cat([context, region], dim=1)
        return Batch(inputs, labels)

    def _resample_collisions(self, region: torch.Tensor, banned: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Redraw filler tokens equal to any of the example's keys or values until none is."""
        while True:
            clash = (region.unsqueeze(2) == banned.unsqueeze(1)).any(2)
            n = int(clash.sum())
            if n == 0:
                return region
            region[clash] = torch.randint(0, self.vocab_size, (n,), generator=gen)
