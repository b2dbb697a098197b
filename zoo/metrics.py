"""Accuracy over scored positions, in the three granularities the literature uses.

- `acc_micro`: pooled over all labelled positions (flip-flop's read accuracy = 1 - glitch rate);
- `acc_example`: each example's fraction correct, averaged over examples (Zoology's MQAR metric);
- `acc_seq`: an example counts only if all its labels are right (CoPE counting, copying strings);
- `acc_macro_mad`: MAD's accuracy (Poli et al. 2024): torchmetrics' macro-over-classes accuracy of
  each eval batch (`macro_accuracy`), averaged over batches weighted by their number of examples
  (how Lightning reduces a per-batch value to an epoch value), so it depends on the eval batch size.
A task's `metric` names its headline `accuracy`; `train.metric` overrides it for every slice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tasks import IGNORE

HEADLINE = {"micro": "acc_micro", "per_example": "acc_example", "sequence": "acc_seq", "macro_mad": "acc_macro_mad"}


def macro_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int,
                   ignore_index: int | None = IGNORE) -> torch.Tensor:
    """torchmetrics `MulticlassAccuracy(num_classes, average="macro", ignore_index=...)` on one
    batch of predicted and target class ids (any shape): the mean per-class recall tp / (tp + fn)
    over the classes that occur in the targets *or* the predictions. A class predicted but absent
    from the targets counts with recall 0; a class absent from both is left out; positions whose
    target is `ignore_index` are dropped first; no class at all gives 0."""
    preds, targets = preds.reshape(-1), targets.reshape(-1)
    if ignore_index is not None:
        keep = targets != ignore_index
        preds, targets = preds[keep], targets[keep]
    hits = torch.bincount(targets[preds == targets], minlength=num_classes)   # tp per class
    support = torch.bincount(targets, minlength=num_classes)                  # tp + fn
    present = (support + torch.bincount(preds, minlength=num_classes)) > 0    # tp + fp + fn > 0
    recall = hits / support.clamp(min=1)
    return recall[present].sum() / present.sum().clamp(min=1)


@dataclass
class Tally:
    """Running sums for one eval slice (or the pool of all slices)."""

    loss_sum: float = 0.0
    positions: int = 0
    correct: int = 0
    examples: int = 0
    example_frac_sum: float = 0.0
    examples_all_correct: int = 0
    macro_sum: float = 0.0  # sum over batches of (examples in the batch) × (the batch's macro accuracy)
    macro_examples: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, rows: torch.Tensor, num_rows: int,
            macro: torch.Tensor | float | None = None) -> None:
        """correct [M] bool at the scored positions; rows [M] their example index in [0, num_rows);
        macro: this batch's `macro_accuracy` (weighted by num_rows, the batch's examples)."""
        per_row = torch.bincount(rows, weights=correct.float(), minlength=num_rows)
        count = torch.bincount(rows, minlength=num_rows).float()
        scored = count > 0
        self.loss_sum += float(loss_sum)
        self.positions += int(count.sum())
        self.correct += int(correct.sum())
        self.examples += int(scored.sum())
        self.example_frac_sum += float((per_row[scored] / count[scored]).sum())
        self.examples_all_correct += int((per_row[scored] == count[scored]).sum())
        if macro is not None:
            self.macro_sum += float(macro) * num_rows
            self.macro_examples += num_rows

    def merge(self, other: "Tally") -> None:
        for name in ("loss_sum", "positions", "correct", "examples", "example_frac_sum", "examples_all_correct",
                     "macro_sum", "macro_examples"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, metric: str) -> dict:
        out = {
            "loss": self.loss_sum / max(self.positions, 1),
            "acc_micro": self.correct / max(self.positions, 1),
            "acc_example": self.example_frac_sum / max(self.examples, 1),
            "acc_seq": self.examples_all_correct / max(self.examples, 1),
            "acc_macro_mad": self.macro_sum / self.macro_examples if self.macro_examples else None,
            "num_examples": self.examples,
            "num_scored": self.positions,
        }
        out["accuracy"], out["metric"] = out[HEADLINE[metric]], metric
        return out
