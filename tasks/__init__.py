"""Synthetic tasks for sequence models, usable without the zoo harness.

    import tasks
    tasks.available()                                  # sorted task names
    task = tasks.make("mqar", vocab_size=8192, seq_len=256, num_kv_pairs=16)
    batch = task.generate(num_examples=1000, seed=0)   # batch.inputs, batch.labels: [N, T] int64
"""
from __future__ import annotations

import importlib

from .base import IGNORE, Batch, Task, derive_seed

# name -> "module:Class"; modules are imported only when their task is made.
_REGISTRY: dict[str, str] = {
    "mqar": "tasks.mqar:MQAR",
    "selective_copy": "tasks.selective_copy:SelectiveCopy",
    "flip_flop": "tasks.flip_flop:FlipFlop",
    "counting": "tasks.counting:Counting",
    "induction_heads": "tasks.induction_heads:InductionHeads",
    "in_context_recall": "tasks.in_context_recall:InContextRecall",
    "noisy_recall": "tasks.noisy_recall:NoisyRecall",
    "fuzzy_recall": "tasks.fuzzy_recall:FuzzyRecall",
    "compression": "tasks.compression:Compression",
    "memorization": "tasks.memorization:Memorization",
    "copying": "tasks.copying:Copying",
    "state_tracking": "tasks.state_tracking:StateTracking",
}


def available() -> list[str]:
    """Sorted names of every task."""
    return sorted(_REGISTRY)


def task_class(name: str) -> type[Task]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(available())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make(name: str, **params) -> Task:
    """Build task `name` with `params` (validated: a bad value raises `ValueError`)."""
    cls = task_class(name)
    try:
        return cls(**params)
    except TypeError as e:  # an unknown keyword
        raise ValueError(f"task {name!r}: {e}") from e


__all__ = ["IGNORE", "Batch", "Task", "available", "derive_seed", "make", "task_class"]
