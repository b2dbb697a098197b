"""Accuracy over scored positions, in the three granularities the literature uses.

- `acc_micro`: pooled over all labelled positions (flip-flop's read accuracy = 1 - glitch rate);
- `acc_example`: each example's fraction correct, averaged over examples (Zoology's MQAR metric);
- `acc_seq`: an example counts only if all its labels are right (CoPE counting, copying strings).
A task's `metric` names its headline `accuracy`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

HEADLINE = {"micro": "acc_micro", "per_example": "acc_example", "sequence": "acc_seq"}


@dataclass
class Tally:
    """Running sums for one eval slice (or the pool of all slices)."""

    loss_sum: float = 0.0
    positions: int = 0
    correct: int = 0
    examples: int = 0
    example_frac_sum: float = 0.0
    examples_all_correct: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, rows: torch.Tensor, num_rows: int) -> None:
        """correct [M] bool at the scored positions; rows [M] their example index in [0, num_rows)."""
        per_row = torch.bincount(rows, weights=correct.float(), minlength=num_rows)
        count = torch.bincount(rows, minlength=num_rows).float()
        scored = count > 0
        self.loss_sum += float(loss_sum)
        self.positions += int(count.sum())
        self.correct += int(correct.sum())
        self.examples += int(scored.sum())
        self.example_frac_sum += float((per_row[scored] / count[scored]).sum())
        self.examples_all_correct += int((per_row[scored] == count[scored]).sum())

    def merge(self, other: "Tally") -> None:
        for name in ("loss_sum", "positions", "correct", "examples", "example_frac_sum", "examples_all_correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, metric: str) -> dict:
        out = {
            "loss": self.loss_sum / max(self.positions, 1),
            "acc_micro": self.correct / max(self.positions, 1),
            "acc_example": self.example_frac_sum / max(self.examples, 1),
            "acc_seq": self.examples_all_correct / max(self.examples, 1),
            "num_examples": self.examples,
            "num_scored": self.positions,
        }
        out["accuracy"] = out[HEADLINE[metric]]
        return out
