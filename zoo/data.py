"""Datasets for a run: the training segments and the named eval slices, cached on disk.

A task config (conf/task/NAME.yaml) holds the task's parameters plus the harness keys below.
Train data is a list of segments (a mixture, e.g. several lengths); batches never mix segments.
Each slice and segment draws from its own seed, derived from the run seed, so train and test
streams are disjoint and independent.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

import tasks
from tasks import Batch, Task, derive_seed

HARNESS_KEYS = ("name", "num_train", "num_test", "segments", "slices")


@dataclass
class Datasets:
    task: Task                       # the training distribution
    segments: list[Batch]            # training data, one Batch per segment
    slices: dict[str, Batch]         # eval slices by name
    slice_tasks: dict[str, Task]
    segment_tasks: list[tuple[Task, int]]  # (task, num_examples) per training segment

    @property
    def max_seq_len(self) -> int:
        return max(b.inputs.shape[1] for b in [*self.segments, *self.slices.values()])

    @property
    def vocab_size(self) -> int:
        return max(t.vocab_size for t in [self.task, *self.slice_tasks.values()])

    def to(self, device: torch.device) -> "Datasets":
        return Datasets(self.task, [b.to(device) for b in self.segments],
                        {k: b.to(device) for k, b in self.slices.items()}, self.slice_tasks, self.segment_tasks)

    def fresh_segments(self, seed: int, epoch: int) -> list[Batch]:
        """New training data for `epoch` >= 1 (not cached): with one pass per epoch this is the
        papers' "fresh data every step". Epoch 0 is the cached set."""
        return [task.generate(n, derive_seed(seed, "train", i, epoch), split="train")
                for i, (task, n) in enumerate(self.segment_tasks)]


def task_params(task_cfg: dict) -> dict:
    """The task's own parameters: everything in the task config but the harness keys."""
    return {k: v for k, v in task_cfg.items() if k not in HARNESS_KEYS}


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo" / "data"))


@functools.cache
def tasks_source_hash() -> str:
    """A hash of every generator's source: editing any file in `tasks/` invalidates the cache."""
    digest = hashlib.sha256()
    for path in sorted(Path(tasks.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def generate_cached(task: Task, num_examples: int, seed: int, split: str) -> Batch:
    """`task.generate(...)`, cached on disk by a hash of (task source, parameters, size, seed, split)."""
    key = json.dumps([task.name, task.params(), num_examples, seed, split, tasks_source_hash()],
                     sort_keys=True, default=str)
    path = cache_dir() / f"{task.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        try:
            data = torch.load(path)
            return Batch(data["inputs"], data["labels"])
        except Exception:  # a torn or foreign file: regenerate
            pass
    batch = task.generate(num_examples, seed, split=split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"inputs": batch.inputs, "labels": batch.labels}, tmp)
    os.replace(tmp, path)
    return batch


def task_specs(task_cfg: dict) -> tuple[Task, list[tuple[Task, int]], dict[str, tuple[Task, int]]]:
    """The task of a config, its training segments and its eval slices as (task, examples), without
    generating data. A slice whose overrides the task rejects is an error naming the slice."""
    base = tasks.make(task_cfg["name"], **task_params(task_cfg))
    segments = []
    for spec in task_cfg.get("segments") or [{"num_examples": task_cfg["num_train"]}]:
        spec = dict(spec)
        n = int(spec.pop("num_examples", task_cfg["num_train"]))
        segments.append((base.replace(**spec), n))
    slices = {}
    for slice_name, overrides in (task_cfg.get("slices") or {"test": {}}).items():
        overrides = dict(overrides or {})
        n = int(overrides.pop("num_examples", task_cfg["num_test"]))
        try:
            slices[slice_name] = (base.replace(**overrides), n)
        except (TypeError, ValueError) as e:
            raise ValueError(f"task.slices.{slice_name}: {e}") from e
    return base, segments, slices


def build_datasets(task_cfg: dict, seed: int) -> Datasets:
    """Generate (or load from the cache) every training segment and eval slice of a task config."""
    base, segment_tasks, slice_specs = task_specs(task_cfg)
    segments = [generate_cached(task, n, derive_seed(seed, "train", i), "train")
                for i, (task, n) in enumerate(segment_tasks)]
    slices = {name: generate_cached(task, n, derive_seed(seed, "test", name), "test")
              for name, (task, n) in slice_specs.items()}
    return Datasets(base, segments, slices, {name: task for name, (task, _) in slice_specs.items()}, segment_tasks)
