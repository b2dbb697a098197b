"""Selective copying (Gu & Dao 2023, *Mamba*, arXiv 2312.00752, §4.1.1 / App. E.1), with MAD's
variant (Poli et al. 2024, arXiv 2403.17844, §2.4 of TASKS.md) as `layout="mad"`.

M data tokens are scattered, in order, among noise tokens; the model must reproduce them in order
at the end. Mamba released no generator (state-spaces/mamba#343); `layout="s4"` (default) follows
the closest official one, `torch_copying_data(L, M, A, variable=True)` in state-spaces/s4.

1. Vocabulary. s4: noise 0, data uniform with replacement on {1..A-2}, marker A-1 (A = vocab_size);
   with `separate_marker=False` data is {1..A-1} and the output region holds noise 0 instead of
   markers. mad: data [0, V-2) with replacement, blank V-2, copy token V-1.
2. Prefix. s4: the M data tokens sit at a uniform random M-subset of the first L+M positions
   (L = seq_len - 2M noise tokens). mad: the n data tokens with B = seq_len-2n-1 blanks, each
   blank inserted before data token i with i uniform on {0..n-1} (multinomial gaps: the last data
   token always directly precedes the copy token), then the copy token. `positions` swaps the two
   placement rules ("subset" / "gaps"); "layout" keeps each layout's own.
3. Output region: M markers (s4) or n blanks (mad); labels[start+j] = data token j on it.
   With `teacher_forced=True` output position j>0 holds data token j-1 instead (the labels are
   unchanged, so the model predicts each data token after seeing the previous one).
4. Train and test labels are the same.

Choices stated explicitly (TASKS.md §3, §2.7): `seq_len_counts` says whether seq_len is the total
L+2M (default, "4096 = L+2M") or the noise length L; the vocabulary split (`separate_marker`); the
output format (`layout`, `teacher_forced`); data positions (`positions`); accuracy is reported both
token-level (micro, the headline) and sequence-level by the harness; fresh vs fixed data is the
harness's choice. MAD draws blank positions from NumPy's global RNG; ours uses the seeded
generator. Paper settings: s4 length 4096, V=16, M=16; MAD V=16, L=256, n=16.

Example, `SelectiveCopy(vocab_size=6, seq_len=10, num_tokens_to_copy=2).generate(1, seed=0)`::

    Inputs: 1 0 0 0 0 4 0 0 5 5
    Labels: . . . . . . . . 1 4
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator, sample_distinct


@dataclass(frozen=True, kw_only=True)
class SelectiveCopy(Task):
    name = "selective_copy"
    metric = "micro"

    vocab_size: int = 16
    seq_len: int = 4096
    num_tokens_to_copy: int = 16
    layout: Literal["s4", "mad"] = "s4"
    positions: Literal["layout", "subset", "gaps"] = "layout"
    separate_marker: bool = True
    teacher_forced: bool = False
    seq_len_counts: Literal["total", "noise"] = "total"

    def __post_init__(self) -> None:
        M, V = self.num_tokens_to_copy, self.vocab_size
        check(self.layout in ("s4", "mad"), f"selective_copy: layout must be 's4' or 'mad', got {self.layout!r}")
        check(self.positions in ("layout", "subset", "gaps"),
              f"selective_copy: positions must be 'layout', 'subset' or 'gaps', got {self.positions!r}")
        check(self.seq_len_counts in ("total", "noise"),
              f"selective_copy: seq_len_counts must be 'total' or 'noise', got {self.seq_len_counts!r}")
        check(M >= 1, f"selective_copy: num_tokens_to_copy must be >= 1, got {M}")
        check(V >= 3, f"selective_copy: vocab_size must be >= 3 (a data token, noise and a marker), got {V}")
        check(self.layout == "s4" or self.separate_marker,
              "selective_copy: separate_marker=False needs layout='s4' (MAD always has a copy token)")
        extra = 1 if self.layout == "mad" else 0
        check(self.input_len >= 2 * M + extra,
              f"selective_copy: num_tokens_to_copy={M} needs seq_len >= {2 * M + extra} "
              f"(the data and its output region{' and the copy token' if extra else ''}), got {self.seq_len}; "
              f"raise task.seq_len or lower task.num_tokens_to_copy")

    @property
    def input_len(self) -> int:
        if self.seq_len_counts == "noise":
            return self.seq_len + 2 * self.num_tokens_to_copy + (1 if self.layout == "mad" else 0)
        return self.seq_len

    def _vocab(self) -> tuple[int, int, int, int, list[int]]:
        """(data_lo, data_hi, blank, output filler, tokens between prefix and output)."""
        V = self.vocab_size
        if self.layout == "mad":
            return 0, V - 2, V - 2, V - 2, [V - 1]
        if self.separate_marker:
            return 1, V - 1, 0, V - 1, []
        return 1, V, 0, 0, []

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, M, T = num_examples, self.num_tokens_to_copy, self.input_len
        gen = generator(seed)
        lo, hi, blank, out_fill, go = self._vocab()
        prefix_len = T - M - len(go)

        # 1. data tokens, with replacement: [N, M]
        data = torch.randint(lo, hi, (N, M), generator=gen)
        # 2. their (increasing) positions in the prefix: [N, M]
        placement = self.positions if self.positions != "layout" else ("gaps" if self.layout == "mad" else "subset")
        if placement == "subset":
            pos = sample_distinct(N, prefix_len, M, gen).sort(dim=1).values
        else:
            pos = _gap_positions(N, M, prefix_len - M, gen)
        prefix = torch.full((N, prefix_len), blank, dtype=torch.long).scatter_(1, pos, data)
        # 3. output region: markers/blanks, or the data shifted by one when teacher-forced
        output = torch.full((N, M), out_fill, dtype=torch.long)
        if self.teacher_forced:
            output[:, 1:] = data[:, :-1]
        middle = torch.tensor(go, dtype=torch.long).expand(N, len(go))
        inputs = torch.cat([prefix, middle, output], dim=1)
        labels = torch.full((N, T), IGNORE, dtype=torch.long)
        labels[:, T - M:] = data
        return Batch(inputs, labels)


def _gap_positions(N: int, M: int, num_blanks: int, gen: torch.Generator) -> torch.Tensor:
    """[N, M] positions of M data tokens when each of `num_blanks` blanks goes before data token i,
    i uniform on {0..M-1}: the gap sizes are Multinomial(num_blanks, uniform), drawn as a chain of
    binomials (one loop step per data token, vectorised over examples)."""
    gaps = torch.zeros(N, M, dtype=torch.long)
    left = torch.full((N,), float(num_blanks), dtype=torch.float64)
    for i in range(M - 1):
        draw = torch.binomial(left, torch.full_like(left, 1.0 / (M - i)), generator=gen)
        gaps[:, i] = draw.long()
        left = left - draw
    gaps[:, M - 1] = left.long()
    return torch.arange(M) + gaps.cumsum(1)
