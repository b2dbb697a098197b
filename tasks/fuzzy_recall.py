"""Fuzzy in-context recall (Poli et al. 2024, *Mechanistic Design and Scaling of Hybrid
Architectures*, arXiv 2403.17844, MAD; reference athms/mad-lab `mad/data/instances.py`).

Associative recall where keys and values are variable-length tuples ("motifs") of symbols.

1. Vocabulary: pad V-1, so V' = V-1 symbols; key symbols [0, V'//2), value symbols [V'//2, V')
   (0-6 and 7-14 at V=16). Keys (values) are ordered tuples of distinct key (value) symbols of
   size 1..key_motif_size (1..value_motif_size): 259 keys and 400 values at V=16, sizes <= 3.
2. Sizes: key size uniform on {1..key_motif_size} at train and always key_motif_size at test;
   value size uniform on {1..value_motif_size}; given the size, the tuple is uniform.
3. Probe: draw (k*, v*) first, then an offset q uniform on [0, L - 2(|k*|+|v*|)).
4. Body: while the body is shorter than L - (|k*|+|v*|) - 6: once its length is >= q (and only
   once), insert the probe pair, unlabelled; otherwise draw a key, whose value is v* if the key is
   k*, the stored value if the key was seen, a new draw otherwise. Value tokens are labelled only
   for keys presented before (the inserted probe counts as presented).
5. Ending: append the probe pair with v* labelled, left-pad with pad (unlabelled) to L+1 tokens s,
   shift: inputs s[0..L-1], labels[t] = s[t+1] where s[t+1] is labelled (test) or at every t,
   pads included (train, MAD's full next-token loss).

Keys and values use disjoint symbols, so a sequence parses back into pairs. Choices stated
explicitly (TASKS.md §2.3, §2.7): MAD trains on full next-token loss (pads included) and tests on
recall positions only (`split`); train and test keys differ in size distribution (as MAD's
`is_training`); disjoint seed streams. When q lies past the last body position the probe key is
absent from the body and v* is unknowable (~2.3% of test sequences at L=128), as in MAD.
Paper setting: V=16, L=128, motif sizes 3.

Example, `FuzzyRecall(vocab_size=7, seq_len=16, key_motif_size=2, value_motif_size=2).generate(1, seed=0)`::

    Inputs: 6 6 6 6 6 1 0 3 5 2 0 3 4 2 0 3
    Labels: . . . . . . . . . . . . . . 3 4
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ._util import compact, in_chunks
from .base import IGNORE, Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class FuzzyRecall(Task):
    name = "fuzzy_recall"
    metric = "micro"

    vocab_size: int = 16
    seq_len: int = 128
    key_motif_size: int = 3
    value_motif_size: int = 3

    def __post_init__(self) -> None:
        V, L, km, vm = self.vocab_size, self.seq_len, self.key_motif_size, self.value_motif_size
        check(km >= 1 and vm >= 1, f"fuzzy_recall: key_motif_size and value_motif_size must be >= 1, got {km}, {vm}")
        check((V - 1) // 2 >= km and (V - 1) - (V - 1) // 2 >= vm,
              f"fuzzy_recall: vocab_size={V} gives {(V - 1) // 2} key and {(V - 1) - (V - 1) // 2} value symbols; "
              f"key_motif_size={km} and value_motif_size={vm} need vocab_size >= {1 + 2 * max(km, vm)}")
        check(L >= 2 * (km + vm) + 1, f"fuzzy_recall: seq_len must be >= 2*(key_motif_size+value_motif_size)+1 "
                                      f"= {2 * (km + vm) + 1}, got {L}")

    @property
    def input_len(self) -> int:
        return self.seq_len

    def motifs(self, symbols: range, max_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All ordered tuples of distinct `symbols` of size 1..max_size, sorted by size: the tuples
        [M, max_size] (padded with -1) and their sizes [M]."""
        rows = [t for k in range(1, max_size + 1) for t in itertools.permutations(symbols, k)]
        table = torch.full((len(rows), max_size), -1, dtype=torch.long)
        for i, t in enumerate(rows):
            table[i, :len(t)] = torch.tensor(t)
        return table, (table >= 0).sum(1)

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        V = self.vocab_size
        half = (V - 1) // 2
        keys = self.motifs(range(half), self.key_motif_size)
        values = self.motifs(range(half, V - 1), self.value_motif_size)
        gen = generator(seed)
        return in_chunks(lambda n: self._chunk(n, keys, values, split, gen), num_examples, chunk=8192)

    def _chunk(self, n: int, keys, values, split: Split, gen: torch.Generator) -> Batch:
        L, pad = self.seq_len, self.vocab_size - 1
        key_tab, key_size = keys
        val_tab, val_size = values
        key_sizes = [self.key_motif_size] if split == "test" else list(range(1, self.key_motif_size + 1))
        draw_key = lambda: _draw_motif(n, key_size, key_sizes, gen)  # noqa: E731
        draw_val = lambda: _draw_motif(n, val_size, list(range(1, self.value_motif_size + 1)), gen)  # noqa: E731
        # 3. the probe pair and its offset
        pk, pv = draw_key(), draw_val()
        probe_len = key_size[pk] + val_size[pv]
        q = (torch.rand(n, generator=gen) * (L - 2 * probe_len)).long()
        stop = L - probe_len - 6
        # each key's value, drawn up front (= on first sight); k* maps to v*
        table = _draw_motif(n * key_tab.shape[0], val_size, list(range(1, self.value_motif_size + 1)), gen)
        table = table.view(n, -1).scatter_(1, pk[:, None], pv[:, None])
        seen = torch.zeros(n, key_tab.shape[0], dtype=torch.bool)
        width = L + 2 * (self.key_motif_size + self.value_motif_size)
        buf = torch.full((n, width + 1), pad, dtype=torch.long)  # last column: trash
        scored = torch.zeros(n, width + 1, dtype=torch.bool)
        length = torch.zeros(n, dtype=torch.long)
        inserted = torch.zeros(n, dtype=torch.bool)
        rows = torch.arange(n)
        # 4. the body, one pair per step for every unfinished row
        while True:
            active = length < stop
            if not active.any():
                break
            probe_now = active & ~inserted & (length >= q)
            k = torch.where(probe_now, pk, draw_key())
            v = table.gather(1, k[:, None]).squeeze(1)
            label = seen[rows, k] & ~probe_now
            seen[rows[active], k[active]] = True
            inserted |= probe_now
            length = _write_pair(buf, scored, length, active, key_tab[k], val_tab[v], label)
        # 5. the final probe pair, labelled; then right-align into L+1 tokens and shift
        length = _write_pair(buf, scored, length, torch.ones(n, dtype=torch.bool), key_tab[pk], val_tab[pv],
                             torch.ones(n, dtype=torch.bool))
        offset = (L + 1 - length).unsqueeze(1)
        keep = torch.arange(width + 1) < length.unsqueeze(1)
        s = compact(buf, keep, L + 1, pad, offset=offset)
        if split == "train":
            return Batch(s[:, :-1], s[:, 1:].clone())
        is_scored = compact(scored, keep, L + 1, False, offset=offset)
        labels = torch.where(is_scored[:, 1:], s[:, 1:], IGNORE)
        return Batch(s[:, :-1], labels)


def _draw_motif(n: int, size_of: torch.Tensor, sizes: list[int], gen: torch.Generator) -> torch.Tensor:
    """[n] motif ids: a size uniform on `sizes`, then a uniform motif of that size (ids sorted by size)."""
    counts = torch.bincount(size_of, minlength=max(sizes) + 1)
    starts = counts.cumsum(0) - counts
    size = torch.tensor(sizes)[torch.randint(0, len(sizes), (n,), generator=gen)]
    return starts[size] + (torch.rand(n, generator=gen) * counts[size]).long().clamp(max=counts[size] - 1)


def _write_pair(buf, scored, length, active, key, value, label) -> torch.Tensor:
    """Write key then value tuples ([n, k], [n, v], -1 padded) at `length` in active rows; value
    tokens get `label`. Returns the new lengths."""
    trash = buf.shape[1] - 1
    for part, flag in ((key, torch.zeros_like(label)), (value, label)):
        present = (part >= 0) & active.unsqueeze(1)
        pos = torch.where(present, length.unsqueeze(1) + torch.arange(part.shape[1]), trash)
        buf.scatter_(1, pos, part.clamp(min=0))
        scored.scatter_(1, pos, flag.unsqueeze(1).expand_as(pos))
        length = length + present.sum(1)
    return length
