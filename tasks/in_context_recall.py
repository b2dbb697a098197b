"""In-context recall, MAD's associative-recall task (Poli, Thomas, Nguyen et al. 2024, *Mechanistic
Design and Scaling of Hybrid Architectures*, arXiv 2403.17844; reference athms/mad-lab
`mad/data/instances.py`). `noisy_recall` is the same generator with noise tokens.

1. Vocabulary: V' = vocab_size - noise_vocab_size; keys [0, V'//2), values [V'//2, V'), noise
   [V - noise_vocab_size, V).
2. A string s of L = seq_len tokens: L/2-1 (key, value) slots, then a probe pair. Keys are uniform
   with replacement; each sequence draws a fresh key->value map (uniform values, which keys may
   share), so a repeated key repeats its value.
3. Noise (noisy_recall): each slot other than a guaranteed index j0 is replaced, with probability
   `frac_noise`, by 2 i.i.d. noise tokens.
4. The probe key is uniform over the distinct keys presented in real slots (over all keys in the
   ~never case that every slot is noise); its value follows.
5. Inputs are s[0..L-2] (L-1 tokens). Test labels: labels[t] = s[t+1] where s[t+1] is the value of
   a key that appeared in an earlier slot, and on the probe key (`multi_query=False`: the probe
   only); noise is never scored. Train labels: s[t+1] at every t (full next-token loss, noise
   included), as MAD trains.

Choices stated explicitly (TASKS.md §2.7): MAD trains on full next-token loss but tests on recall
positions only (`split`); MAD draws j0 from L/2 values although only L/2-1 slots exist, so with
probability 2/L no slot is guaranteed (`noise_guarantee="reference"`, default) -- "always" draws
j0 from the slots; train and test use disjoint seed streams (MAD shares one). Paper settings:
V=16, L=128 (noisy: V=32 with 16 noise tokens, f=0.2).

Example, `InContextRecall(vocab_size=6, seq_len=10).generate(1, seed=0)`::

    Inputs: 2 4 0 4 2 4 0 4 0
    Labels: . . . . 4 . 4 . 4
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class InContextRecall(Task):
    name = "in_context_recall"
    metric = "micro"

    vocab_size: int = 16
    seq_len: int = 128
    noise_vocab_size: int = 0
    frac_noise: float = 0.0
    noise_guarantee: Literal["reference", "always"] = "reference"
    multi_query: bool = True

    def __post_init__(self) -> None:
        L, V, nv = self.seq_len, self.vocab_size, self.noise_vocab_size
        check(L >= 4 and L % 2 == 0, f"{self.name}: seq_len must be even and >= 4, got {L}")
        check(0 <= nv and V - nv >= 2,
              f"{self.name}: noise_vocab_size={nv} leaves vocab_size-noise_vocab_size = {V - nv} < 2 "
              f"key/value tokens; raise task.vocab_size or lower task.noise_vocab_size")
        check(0.0 <= self.frac_noise < 1.0, f"{self.name}: frac_noise must be in [0, 1), got {self.frac_noise}")
        check(self.frac_noise == 0.0 or nv > 0,
              f"{self.name}: frac_noise={self.frac_noise} needs noise_vocab_size > 0, got {nv}")
        check(self.noise_guarantee in ("reference", "always"),
              f"{self.name}: noise_guarantee must be 'reference' or 'always', got {self.noise_guarantee!r}")

    @property
    def input_len(self) -> int:
        return self.seq_len - 1

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, L, V = num_examples, self.seq_len, self.vocab_size
        real_vocab = V - self.noise_vocab_size
        K, S = real_vocab // 2, L // 2 - 1  # number of keys, number of slots
        gen = generator(seed)
        # 2. keys with replacement and each example's key->value map: [N, S], [N, K]
        keys = torch.randint(0, K, (N, S), generator=gen)
        table = torch.randint(K, real_vocab, (N, K), generator=gen)
        values = table.gather(1, keys)
        # 3. noise slots, except the guaranteed j0 (which may fall outside the slots: reference)
        real = self._real_slots(N, S, gen)
        pairs = torch.stack([keys, values], dim=2)  # [N, S, 2]
        if self.frac_noise > 0:
            noise = torch.randint(V - self.noise_vocab_size, V, (N, S, 2), generator=gen)
            pairs = torch.where(real.unsqueeze(2), pairs, noise)
        # 4. probe: uniform over presented keys (score in [0,1), minus 2 if not presented)
        presented = _presented(keys, real, K)
        score = torch.rand(N, K, generator=gen) - 2.0 * (~presented).float()
        probe_key = score.argmax(1, keepdim=True)
        probe = torch.cat([probe_key, table.gather(1, probe_key)], dim=1)
        s = torch.cat([pairs.reshape(N, 2 * S), probe], dim=1)  # [N, L]
        inputs = s[:, :-1]
        if split == "train":
            return Batch(inputs, s[:, 1:].clone())
        # 5. test labels: a value whose key appeared in an earlier (real) slot, and the probe
        labels = torch.full((N, L - 1), IGNORE, dtype=torch.long)
        if self.multi_query:
            slot = torch.arange(S).expand(N, -1)
            first = torch.full((N, K), S).scatter_reduce(1, keys, torch.where(real, slot, S), reduce="amin")
            repeat = real & (slot > first.gather(1, keys))
            labels[:, 0:2 * S:2] = torch.where(repeat, values, IGNORE)
        labels[:, -1] = probe[:, 1]
        return Batch(inputs, labels)

    def _real_slots(self, N: int, S: int, gen: torch.Generator) -> torch.Tensor:
        """[N, S] bool: slots that hold a (key, value) pair rather than noise."""
        if self.frac_noise == 0.0:
            return torch.ones(N, S, dtype=torch.bool)
        real = torch.rand(N, S, generator=gen) >= self.frac_noise
        j0 = torch.randint(0, S + 1 if self.noise_guarantee == "reference" else S, (N, 1), generator=gen)
        guaranteed = torch.arange(S) == j0  # all False when j0 == S (= L/2 - 1, the missing slot)
        return real | guaranteed


def _presented(keys: torch.Tensor, real: torch.Tensor, num_keys: int) -> torch.Tensor:
    """[N, num_keys] bool: keys that occur in a real slot."""
    counts = torch.zeros(keys.shape[0], num_keys, dtype=torch.long).scatter_add_(1, keys, real.long())
    return counts > 0
