"""The task contract: a frozen, validated parameter set that generates token tensors from a seed.

A task is a pure function of (parameters, seed) -> `Batch`. Same inputs give identical tensors on
any machine (all randomness comes from a seeded CPU `torch.Generator`); different seeds give
independent data. Labels follow the next-token convention: `labels[n, t]` is what the model must
output at position t, and `IGNORE` (-100) marks positions that are not scored.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

IGNORE = -100

Split = Literal["train", "test"]
Metric = Literal["micro", "per_example", "sequence"]


@dataclass(frozen=True)
class Batch:
    """`inputs` [N, T] and `labels` [N, T], both int64; `labels` is `IGNORE` where nothing is scored."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape != self.labels.shape:
            raise ValueError(f"inputs {tuple(self.inputs.shape)} and labels {tuple(self.labels.shape)} differ")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index) -> "Batch":
        return Batch(self.inputs[index], self.labels[index])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.inputs.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))

    @property
    def num_scored(self) -> int:
        return int((self.labels != IGNORE).sum())


@dataclass(frozen=True, kw_only=True)
class Task(abc.ABC):
    """Base class of every task. Subclasses are frozen keyword-only dataclasses that validate in
    `__post_init__` (raising `ValueError` that names the parameter, the constraint and the fix)."""

    name: ClassVar[str]
    metric: ClassVar[Metric] = "micro"  # the headline accuracy of this task (see `zoo.metrics`)
    head: ClassVar[str] = "lm"  # the output head the backbone needs ("lm" or "compression")

    vocab_size: int

    @property
    @abc.abstractmethod
    def input_len(self) -> int:
        """Length T of the `inputs` this task generates."""

    @abc.abstractmethod
    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        """`num_examples` sequences drawn from `seed`. `split="train"` selects the training labels
        where a paper trains on more positions than it scores (e.g. MAD's full next-token loss)."""

    def params(self) -> dict:
        """The parameters as a plain dict (recorded in results)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Task":
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts, e.g. `derive_seed(0, "train", 2)`.

    Used to give train and test (and each segment/slice) disjoint, independent streams."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int) -> torch.Generator:
    """A CPU generator: the only source of randomness in task code."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def sample_distinct(num_rows: int, num_choices: int, k: int, gen: torch.Generator, chunk: int = 4096) -> torch.Tensor:
    """[num_rows, k] int64: per row, k distinct integers from [0, num_choices), in uniformly random order.

    Sparse case (k small against num_choices): i.i.d. draws whose repeats are redrawn until none is
    left; the procedure commutes with any relabelling of [0, num_choices), so every ordered tuple of
    distinct values is equally likely. Dense case: "random keys", the k largest of num_choices
    i.i.d. uniforms per row, in fixed row chunks to bound memory."""
    if k > num_choices:
        raise ValueError(f"cannot draw {k} distinct values from {num_choices}")
    if 4 * k <= num_choices:
        out = torch.randint(0, num_choices, (num_rows, k), generator=gen)
        while True:
            repeat = _later_repeats(out)
            n = int(repeat.sum())
            if n == 0:
                return out
            out[repeat] = torch.randint(0, num_choices, (n,), generator=gen)
    out = torch.empty(num_rows, k, dtype=torch.long)
    for start in range(0, num_rows, chunk):
        stop = min(start + chunk, num_rows)
        keys = torch.rand(stop - start, num_choices, generator=gen)
        out[start:stop] = keys.topk(k, dim=1).indices
    return out


def _later_repeats(x: torch.Tensor) -> torch.Tensor:
    """Bool mask of entries equal to an entry earlier in the same row."""
    values, order = x.sort(dim=1, stable=True)
    dup_sorted = torch.zeros_like(x, dtype=torch.bool)
    dup_sorted[:, 1:] = values[:, 1:] == values[:, :-1]
    return torch.zeros_like(dup_sorted).scatter_(1, order, dup_sorted)


def check(condition: bool, message: str) -> None:
    """Raise `ValueError(message)` unless `condition`: the one way tasks validate parameters."""
    if not condition:
        raise ValueError(message)
