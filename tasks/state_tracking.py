"""State tracking: group word problems, parity and modular counting.

Word problems: Merrill, Petty, Sabharwal (2024), *The Illusion of State in State-Space Models*,
arXiv 2404.08819 (reference jopetty/word-problem `src/generate_data.py`). Parity and modular
counting: Grazzi et al. (2024), arXiv 2411.12537; Delétang et al. (2022), arXiv 2207.02098.

1. The group G is built as permutations of points, with elements indexed 0..|G|-1 and index 0 the
   identity: "S<n>" / "A<n>" (symmetric / alternating, n <= 6; permutations in lexicographic
   order), "Z<m>" (cyclic, element j = shift by j), "A4xZ5" (pairs (a, z), index 5a+z); the
   multiplication table [|G|, |G|] is computed once per (group, composition) and cached.
   "parity" is Z2 and "mod<m>" is Z_m, both with bit inputs (0 = identity, 1 = generator): the
   prefix XOR / the count of ones mod m.
2. Inputs: seq_len i.i.d. uniform elements (bits for parity / mod<m>).
3. Labels (`label_at="every"`): labels[t] = index of g_1·…·g_t, a left-to-right scan from the
   identity (loop over t, a table gather vectorised over examples). `label_at="end"` (the zoology
   `circuits` layout) appends an end token |G| and labels only it, with the whole product.
4. `composition`: "left_first" (default) reads g·h as "apply g, then h", i.e. (g·h)(x) = h(g(x));
   "right_first" as function composition, (g·h)(x) = g(h(x)). Abelian groups do not care.

Choices stated explicitly (TASKS.md §8): the scan starts from index 0, the identity (tested); the
composition convention (`composition`); sequences are i.i.d., not distinct as in the reference, and
the 3,600 length-2 sequences are not forced into train; BOS is not used; the protocol "train short,
test long" is the conf's slices. Paper settings: G in {Z60, A4xZ5, A5, S5}, k <= 20.

Example, `StateTracking(vocab_size=6, group="S3", seq_len=5).generate(1, seed=0)`::

    Inputs: 2 3 5 0 1
    Labels: 2 5 0 0 1
"""
from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Literal

import torch

from .base import IGNORE, Batch, Split, Task, check, generator

_GROUP = re.compile(r"^(S|A|Z|mod)(\d+)$|^parity$|^A4xZ5$")


@functools.lru_cache(maxsize=None)
def permutations(group: str) -> tuple[tuple[int, ...], ...]:
    """The elements of `group` as permutation tuples, identity first."""
    if group == "parity":
        return permutations("Z2")
    if group == "A4xZ5":
        return tuple(a + tuple(4 + (i + z) % 5 for i in range(5)) for a in permutations("A4") for z in range(5))
    kind, n = _GROUP.match(group).groups()
    n = int(n)
    if kind in ("Z", "mod"):
        return tuple(tuple((i + j) % n for i in range(n)) for j in range(n))
    perms = list(itertools.permutations(range(n)))  # lexicographic: identity first
    if kind == "A":
        perms = [p for p in perms if _is_even(p)]
    return tuple(perms)


def compose(g: tuple[int, ...], h: tuple[int, ...], composition: str) -> tuple[int, ...]:
    """g·h as a permutation tuple: "left_first" applies g then h, "right_first" h then g."""
    if composition == "left_first":
        return tuple(h[x] for x in g)
    return tuple(g[x] for x in h)


def _is_even(p: tuple[int, ...]) -> bool:
    inversions = sum(p[i] > p[j] for i in range(len(p)) for j in range(i + 1, len(p)))
    return inversions % 2 == 0


@functools.lru_cache(maxsize=None)
def multiplication_table(group: str, composition: str) -> torch.Tensor:
    """[|G|, |G|] int64: table[i, j] = index of element_i · element_j."""
    elems = permutations(group)
    index = {p: i for i, p in enumerate(elems)}
    rows = [[index[compose(g, h, composition)] for h in elems] for g in elems]
    return torch.tensor(rows, dtype=torch.long)


@dataclass(frozen=True, kw_only=True)
class StateTracking(Task):
    name = "state_tracking"
    metric = "micro"

    vocab_size: int = 120
    group: str = "S5"
    seq_len: int = 20
    label_at: Literal["every", "end"] = "every"
    composition: Literal["left_first", "right_first"] = "left_first"

    def __post_init__(self) -> None:
        m = _GROUP.match(self.group)
        check(m is not None, f"state_tracking: group must be 'parity', 'mod<m>', 'Z<m>', 'S<n>', 'A<n>' or 'A4xZ5', "
                             f"got {self.group!r}")
        if m.group(2) is not None:
            k, n = m.group(1), int(m.group(2))
            check((k in ("S", "A") and 1 <= n <= 6) or (k in ("Z", "mod") and n >= 2),
                  f"state_tracking: group={self.group!r} is out of range (S/A: n in 1..6; Z/mod: m >= 2)")
        check(self.label_at in ("every", "end"),
              f"state_tracking: label_at must be 'every' or 'end', got {self.label_at!r}")
        check(self.composition in ("left_first", "right_first"),
              f"state_tracking: composition must be 'left_first' or 'right_first', got {self.composition!r}")
        check(self.seq_len >= 1, f"state_tracking: seq_len must be >= 1, got {self.seq_len}")
        need = self.group_size + (1 if self.label_at == "end" else 0)
        check(self.vocab_size >= need, f"state_tracking: group={self.group!r} with label_at={self.label_at!r} needs "
                                       f"vocab_size >= {need}, got {self.vocab_size}")

    @property
    def group_size(self) -> int:
        return len(permutations(self.group))

    @property
    def num_symbols(self) -> int:
        """Input alphabet size: bits for parity / mod<m>, every element otherwise."""
        return 2 if self.group == "parity" or self.group.startswith("mod") else self.group_size

    @property
    def input_len(self) -> int:
        return self.seq_len + (1 if self.label_at == "end" else 0)

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        N, T = num_examples, self.seq_len
        table = multiplication_table(self.group, self.composition)
        x = torch.randint(0, self.num_symbols, (N, T), generator=generator(seed))
        # 3. prefix products: state_t = state_{t-1} · x_t, from the identity (index 0); time-major
        #    with a flat table so that each step is one contiguous gather
        flat, G = table.flatten(), table.shape[0]
        steps = x.t().contiguous()  # [T, N]
        prefix = torch.empty(T, N, dtype=torch.long)
        state = torch.zeros(N, dtype=torch.long)
        for t in range(T):
            state = flat[state * G + steps[t]]
            prefix[t] = state
        prefix = prefix.t().contiguous()  # [N, T]
        if self.label_at == "every":
            return Batch(x, prefix)
        inputs = torch.cat([x, torch.full((N, 1), self.group_size, dtype=torch.long)], dim=1)
        labels = torch.full((N, T + 1), IGNORE, dtype=torch.long)
        labels[:, T] = prefix[:, -1]
        return Batch(inputs, labels)
