"""zoo.metrics: MAD's macro accuracy (`train.metric=macro_mad`) by hand and against torchmetrics,
the batch-weighted epoch value, and the metric override through `evaluate`."""
from __future__ import annotations

import pytest
import torch

from tasks import IGNORE
from zoo.data import build_datasets
from zoo.metrics import Tally, macro_accuracy
from zoo.model import build_model
from zoo.train import TrainConfig, evaluate


def test_macro_accuracy_by_hand():
    # after dropping the two ignored positions: targets [0, 0, 1, 2], preds [0, 1, 1, 3]
    # recall: class 0 1/2, class 1 1/1, class 2 0/1, class 3 0 (predicted, never a target);
    # class 4 is predicted only at an ignored position and class 5+ never occur: left out
    targets = torch.tensor([0, 0, 1, 2, IGNORE, IGNORE])
    preds = torch.tensor([0, 1, 1, 3, 4, 0])
    assert float(macro_accuracy(preds, targets, num_classes=8)) == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert float(macro_accuracy(preds[:0], targets[:0], num_classes=8)) == 0.0  # nothing scored


def test_macro_mad_is_the_batch_weighted_mean():
    tally = Tally()
    ones = torch.ones(4, dtype=torch.bool)
    tally.add(torch.tensor(0.0), ones, torch.arange(4), num_rows=4, macro=torch.tensor(0.375))
    tally.add(torch.tensor(0.0), ones[:2], torch.arange(2), num_rows=2, macro=1.0)
    other = Tally()
    other.add(torch.tensor(0.0), ones[:2], torch.arange(2), num_rows=2, macro=0.5)
    tally.merge(other)
    out = tally.summary("macro_mad")
    assert out["acc_macro_mad"] == pytest.approx((4 * 0.375 + 2 * 1.0 + 2 * 0.5) / 8)
    assert out["accuracy"] == out["acc_macro_mad"] and out["metric"] == "macro_mad" and out["acc_micro"] == 1.0
    assert Tally().summary("micro")["acc_macro_mad"] is None


@pytest.mark.parametrize("seed", range(5))
def test_macro_accuracy_matches_torchmetrics(seed):
    classification = pytest.importorskip("torchmetrics.classification")
    gen = torch.Generator().manual_seed(seed)
    num_classes = 16
    for _ in range(10):
        # targets use classes [0, 10), predictions [0, 13): some classes absent from both, some only predicted
        shape = (int(torch.randint(1, 6, (), generator=gen)), int(torch.randint(1, 9, (), generator=gen)))
        targets = torch.randint(0, 10, shape, generator=gen)
        targets[torch.rand(shape, generator=gen) < 0.3] = IGNORE
        preds = torch.where(torch.rand(shape, generator=gen) < 0.5, targets.clamp(min=0),
                            torch.randint(0, 13, shape, generator=gen))
        reference = classification.MulticlassAccuracy(num_classes=num_classes, average="macro", ignore_index=IGNORE)
        assert float(macro_accuracy(preds, targets, num_classes)) == pytest.approx(float(reference(preds, targets)))


def no_autocast() -> torch.autocast:
    return torch.autocast("cpu", enabled=False)


def test_evaluate_macro_mad_override_matches_torchmetrics_per_batch(tmp_path, monkeypatch):
    classification = pytest.importorskip("torchmetrics.classification")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    task_cfg = {"name": "in_context_recall", "vocab_size": 16, "seq_len": 32, "num_train": 8, "num_test": 10,
                "segments": None, "slices": {"in_dist": {}}}
    data = build_datasets(task_cfg, seed=0)
    torch.manual_seed(0)
    model = build_model("attention", vocab_size=16, d_model=16, n_layers=1, max_seq_len=32)
    out = evaluate(model, data, 4, no_autocast, metric="macro_mad")
    batch = data.slices["in_dist"]
    with torch.no_grad():
        preds = model(batch.inputs).argmax(-1)
    weighted = 0.0
    for start in range(0, len(batch), 4):  # batches of 4, 4 and 2 examples
        reference = classification.MulticlassAccuracy(num_classes=16, average="macro", ignore_index=IGNORE)
        weighted += float(reference(preds[start:start + 4], batch.labels[start:start + 4])) * len(batch[start:start + 4])
    assert out["overall"]["accuracy"] == pytest.approx(weighted / len(batch))
    assert out["overall"]["metric"] == out["slices"]["in_dist"]["metric"] == "macro_mad"
    default = evaluate(model, data, 4, no_autocast)
    assert default["overall"]["metric"] == "micro" and default["overall"]["accuracy"] == default["overall"]["acc_micro"]
    assert default["overall"]["acc_macro_mad"] == pytest.approx(out["overall"]["acc_macro_mad"])


def test_train_metric_is_validated():
    with pytest.raises(ValueError, match=r"train.metric='macro'.*micro, per_example, sequence, macro_mad"):
        TrainConfig(metric="macro")
    assert TrainConfig(metric="macro_mad").metric == "macro_mad"
