"""MQAR (Zoology §3): labels against the context, query-slot distribution p(g), filler statistics
and parameter errors (TASKS.md §1)."""
from __future__ import annotations

import pytest
import torch

import tasks
from tasks.base import IGNORE
from tasks.mqar import MQAR


def slot_probs(seq_len: int, num_kv_pairs: int, power_a: float = 0.01) -> torch.Tensor:
    """Single-draw p(g) ∝ (g+1)^(a-1) over the S = (L - 2D)/2 query slots."""
    S = (seq_len - 2 * num_kv_pairs) // 2
    w = torch.arange(1, S + 1, dtype=torch.float64) ** (power_a - 1)
    return w / w.sum()


def query_slots(batch, num_kv_pairs: int) -> torch.Tensor:
    """[N, D] slot of the i-th context key's query (read back from the labelled positions)."""
    C = 2 * num_kv_pairs
    keys = batch.inputs[:, 0:C:2]  # [N, D]
    region = batch.inputs[:, C:]
    labelled = batch.labels[:, C:] != IGNORE
    hit = (region.unsqueeze(1) == keys.unsqueeze(2)) & labelled.unsqueeze(1)  # [N, D, L-C]
    assert bool((hit.sum(2) == 1).all()), "each key is queried exactly once"
    return hit.float().argmax(2) // 2


def test_mqar_labels_are_the_context_values():
    task = MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4)
    batch = task.generate(200, seed=0)
    for x, y in zip(batch.inputs.tolist(), batch.labels.tolist()):
        context = dict(zip(x[0:8:2], x[1:8:2]))
        assert len(context) == 4  # distinct keys
        scored = {t: v for t, v in enumerate(y) if v != IGNORE}
        assert len(scored) == 4 and all(t >= 8 and t % 2 == 0 for t in scored)
        assert all(context[x[t]] == v for t, v in scored.items())


@pytest.mark.parametrize("L,D,P", [(64, 4, 1), (256, 16, 1), (64, 8, 2)])
def test_mqar_ranges_and_label_count(L, D, P):
    V = 512
    batch = MQAR(vocab_size=V, seq_len=L, num_kv_pairs=D, num_passes=P).generate(300, seed=1)
    assert batch.inputs.shape == (300, L)
    assert bool(((batch.labels != IGNORE).sum(1) == D).all())
    keys, values = batch.inputs[:, 0:2 * D:2], batch.inputs[:, 1:2 * D:2]
    assert bool(((keys >= 1) & (keys < V // 2)).all()) and bool(((values >= V // 2) & (values < V)).all())
    assert bool((keys.sort(1).values.diff(dim=1) != 0).all()) and bool((values.sort(1).values.diff(dim=1) != 0).all())
    assert torch.equal(batch.inputs[:, : 2 * D].repeat(1, P), batch.inputs[:, : 2 * D * P])  # P passes


def test_mqar_determinism():
    task = MQAR()
    a, b, c = task.generate(50, seed=7), task.generate(50, seed=7), task.generate(50, seed=8)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)


def test_mqar_first_draw_matches_p_g():
    """At (64, 4): P(g=0) ~ 0.25 and P(g<4) ~ 0.53 for the first draw (total variation vs p(g))."""
    p = slot_probs(64, 4)
    assert abs(p[0].item() - 0.25) < 0.01 and abs(p[:4].sum().item() - 0.53) < 0.01
    slots = query_slots(MQAR(vocab_size=256, seq_len=64, num_kv_pairs=4).generate(20_000, seed=0), 4)
    first = torch.bincount(slots[:, 0], minlength=p.numel()).double() / 20_000
    assert 0.5 * (first - p).abs().sum().item() < 0.02
    assert abs(first[0].item() - 0.25) < 0.015 and abs(first[:4].sum().item() - 0.53) < 0.015


def test_mqar_slot_zero_usage():
    """Slot 0 is used in ~73% of examples at (64, 4) (TASKS.md §1, simulated)."""
    slots = query_slots(MQAR(vocab_size=256, seq_len=64, num_kv_pairs=4).generate(20_000, seed=1), 4)
    assert abs((slots == 0).any(1).double().mean().item() - 0.73) < 0.015


def test_mqar_query_order_coupling():
    """Coupled (reference): the first key gets the first draw, P(slot 0) ~ 0.25; decoupled: a
    random one of the draws, P(slot 0) ~ 0.73 / 4."""
    kw = dict(vocab_size=256, seq_len=64, num_kv_pairs=4)
    decoupled = query_slots(MQAR(couple_query_order=False, **kw).generate(20_000, seed=2), 4)
    assert abs((decoupled[:, 0] == 0).double().mean().item() - 0.73 / 4) < 0.015


def test_mqar_filler():
    """Without random_non_queries every non-query position of the query region is 0 (L - 3D of
    them); with it, filler is uniform and hits a context key (L-3D)·D/V times on average."""
    clean = MQAR(vocab_size=8192, seq_len=256, num_kv_pairs=16, random_non_queries=False).generate(100, seed=0)
    assert bool(((clean.inputs == 0).sum(1) == 256 - 3 * 16).all())
    task = MQAR(vocab_size=8192, seq_len=256, num_kv_pairs=16)
    batch = task.generate(5000, seed=0)
    keys = batch.inputs[:, 0:32:2]
    filler = batch.inputs[:, 32:].clone()
    filler[batch.labels[:, 32:] != IGNORE] = -1
    hits = (filler.unsqueeze(2) == keys.unsqueeze(1)).any(2).sum(1).double()
    assert abs(hits.mean().item() - (256 - 48) * 16 / 8192) < 0.05  # 0.41
    mean = filler[filler >= 0].double().mean().item()
    assert abs(mean - 8191 / 2) < 30
    disjoint = task.replace(noise="disjoint").generate(500, seed=0)
    banned = disjoint.inputs[:, :32]
    region = disjoint.inputs[:, 32:].clone()
    region[disjoint.labels[:, 32:] != IGNORE] = -1
    assert not bool((region.unsqueeze(2) == banned.unsqueeze(1)).any())


def test_mqar_errors():
    with pytest.raises(ValueError, match="num_kv_pairs"):
        tasks.make("mqar", vocab_size=8192, seq_len=256, num_kv_pairs=80)
    with pytest.raises(ValueError, match="seq_len"):
        tasks.make("mqar", seq_len=63)
    with pytest.raises(ValueError, match="num_kv_pairs"):
        tasks.make("mqar", vocab_size=16, seq_len=12, num_kv_pairs=8)
    with pytest.raises(ValueError, match="vocab_size"):
        tasks.make("mqar", vocab_size=64, seq_len=64)
