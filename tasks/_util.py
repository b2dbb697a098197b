"""Vectorised helpers shared by the task generators (private to `tasks`)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Batch


def compact(values: torch.Tensor, keep: torch.Tensor, width: int, fill: int,
            offset: torch.Tensor | None = None) -> torch.Tensor:
    """Per row, the entries of `values` [N, W] where `keep` is True, in order, packed into [N, width]
    starting at column `offset` [N, 1] (default 0; negative drops the first entries). Entries that
    land outside [0, width) are dropped; unwritten positions hold `fill`."""
    dest = keep.long().cumsum(1) - 1  # [N, W] rank of each kept entry in its row
    if offset is not None:
        dest = dest + offset
    ok = keep & (dest >= 0) & (dest < width)
    out = torch.full((values.shape[0], width + 1), fill, dtype=values.dtype)
    out.scatter_(1, torch.where(ok, dest, width), values)  # width is a trash column
    return out[:, :width]


def in_chunks(make: Callable[[int], Batch], num_examples: int, chunk: int) -> Batch:
    """`make(n)` called on consecutive chunks of at most `chunk` examples, concatenated: bounds the
    memory of generators with large per-example scratch tensors. Deterministic as long as `make`
    draws from one generator in order."""
    parts = [make(min(chunk, num_examples - start)) for start in range(0, num_examples, chunk)]
    if not parts:
        return make(0)
    return Batch(torch.cat([p.inputs for p in parts]), torch.cat([p.labels for p in parts]))
