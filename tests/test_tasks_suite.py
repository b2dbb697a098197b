"""The task suite: a registry-driven contract test for every task, then per-task oracles (plain
Python loops that recompute each label from the inputs), label densities, the sanity statistics of
TASKS.md and the parameter errors."""
from __future__ import annotations

import math
import re
import sys
from collections import Counter

import pytest
import torch

import tasks
from tasks.base import IGNORE, Task

# ---------------------------------------------------------------------------------------------
# helpers


_EXAMPLE = re.compile(r"`(?P<cls>\w+)(?P<args>\(.*?\))\.generate\((?P<gen>.*?)\)`::\s*\n\s*\n"
                      r"\s*Inputs: (?P<inputs>.*)\n\s*Labels: (?P<labels>.*)\n")


def docstring_example(cls: type[Task]) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(the call, inputs [1, T], labels [1, T]) of the worked example in `cls`'s module docstring."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    m = _EXAMPLE.search(doc)
    assert m is not None, f"{cls.__module__}: no `Cls(...).generate(...)`:: + Inputs:/Labels: example"
    assert m["cls"] == cls.__name__, f"{cls.__module__}: the example builds {m['cls']}, not {cls.__name__}"
    inputs = torch.tensor([[int(x) for x in m["inputs"].split()]])
    labels = torch.tensor([[IGNORE if x == "." else int(x) for x in m["labels"].split()]])
    return f"{m['cls']}{m['args']}.generate({m['gen']})", inputs, labels


def rows(batch, n=None):
    """(inputs, labels) of each example as Python lists."""
    k = len(batch) if n is None else n
    return zip(batch.inputs[:k].tolist(), batch.labels[:k].tolist())


def scored(labels: list[int]) -> dict[int, int]:
    return {t: y for t, y in enumerate(labels) if y != IGNORE}


def raises_naming(param: str, name: str, **params):
    """`tasks.make(name, **params)` raises a ValueError whose message names `param`."""
    with pytest.raises(ValueError, match=param):
        tasks.make(name, **params)


# ---------------------------------------------------------------------------------------------
# (a) every registered task


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", tasks.available())
def test_task_contract(name, split):
    task = tasks.make(name)
    N, V = 16, task.vocab_size
    batch = task.generate(N, seed=0, split=split)
    x, y = batch.inputs, batch.labels
    assert x.shape == y.shape == (N, task.input_len)
    assert x.dtype == y.dtype == torch.int64
    assert int(x.min()) >= 0 and int(x.max()) < V
    ok = (y == IGNORE) | ((y >= 0) & (y < V))
    assert bool(ok.all()), "labels must be -100 or in [0, vocab_size)"
    assert bool(((y != IGNORE).sum(1) >= 1).all()), "every example needs a label"
    again = task.generate(N, seed=0, split=split)
    assert torch.equal(again.inputs, x) and torch.equal(again.labels, y)
    other = task.generate(N, seed=1, split=split)
    assert not torch.equal(other.inputs, x)


@pytest.mark.parametrize("name", tasks.available())
def test_task_metadata_and_params(name):
    task = tasks.make(name)
    cls = tasks.task_class(name)
    assert cls.name == name
    assert cls.metric in ("micro", "per_example", "sequence")
    assert cls.head in ("lm", "compression")
    assert tasks.make(name, **task.params()) == task
    with pytest.raises(ValueError, match="not_a_parameter"):
        tasks.make(name, not_a_parameter=1)


@pytest.mark.parametrize("name", tasks.available())
def test_task_docstring_example_regenerates(name):
    cls = tasks.task_class(name)
    call, inputs, labels = docstring_example(cls)
    batch = eval(call, {cls.__name__: cls})  # the docstring's own call, only the class in scope
    assert torch.equal(batch.inputs, inputs), f"{call}: inputs drifted: {batch.inputs.tolist()}"
    assert torch.equal(batch.labels, labels), f"{call}: labels drifted: {batch.labels.tolist()}"


HARNESS_KEYS = {"name", "num_train", "num_test", "segments", "slices"}


@pytest.mark.parametrize("name", tasks.available())
def test_task_conf_builds_every_slice(name):
    """conf/task/NAME.yaml exists, and its training distribution, segments and slices all validate."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "conf" / "task" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == name
    params = {k: v for k, v in cfg.items() if k not in HARNESS_KEYS}
    base = tasks.make(name, **params)
    for override in [*(cfg.get("segments") or []), *(cfg.get("slices") or {}).values()]:
        override = {k: v for k, v in override.items() if k != "num_examples"}
        task = base.replace(**override)
        assert task.vocab_size <= base.vocab_size, f"{name}: a slice needs a larger vocabulary than training"


# ---------------------------------------------------------------------------------------------
# (b) selective copying


@pytest.mark.parametrize("layout", ["s4", "mad"])
def test_selective_copy_oracle(layout):
    task = tasks.make("selective_copy", layout=layout, seq_len=64, num_tokens_to_copy=8)
    V, M = task.vocab_size, task.num_tokens_to_copy
    noise = {0} if layout == "s4" else {V - 2}
    for x, y in rows(task.generate(50, seed=3)):
        prefix_end = len(x) - M - (1 if layout == "mad" else 0)
        data = [t for t in x[:prefix_end] if t not in noise]
        assert scored(y) == {len(x) - M + j: d for j, d in enumerate(data)}
        if layout == "mad":
            assert x[prefix_end] == V - 1 and x[prefix_end - 1] not in noise  # last data right before copy
            assert x[prefix_end + 1:] == [V - 2] * M
        else:
            assert x[prefix_end:] == [V - 1] * M and all(1 <= d <= V - 2 for d in data)


def test_selective_copy_s4_spacing():
    """Mean spacing between data tokens = (L+M+1)/(M+1) ~ 240 at total length 4096 (TASKS.md §3)."""
    task = tasks.make("selective_copy")  # the paper: 4096 = L + 2M, M = 16, V = 16
    x = task.generate(300, seed=0).inputs[:, : 4096 - 16]
    pos = [[t for t, v in enumerate(row) if v != 0] for row in x.tolist()]
    gaps = [b - a for p in pos for a, b in zip(p, p[1:])]
    assert len(gaps) == 300 * 15
    assert abs(sum(gaps) / len(gaps) - (4080 + 1) / 17) < 10


def test_selective_copy_mad_layout_statistics():
    """16 + 223 + 1 + 16 = 256; blanks per gap = B/n; the last data token precedes the copy token."""
    task = tasks.make("selective_copy", layout="mad", seq_len=256)
    V, n = 16, 16
    x = task.generate(2000, seed=0).inputs
    assert bool((x[:, 239] == V - 1).all()) and bool((x[:, 238] != V - 2).all())
    blanks = (x[:, :239] == V - 2).sum(1)
    assert bool((blanks == 223).all())
    data_pos = (x[:, :239] != V - 2).nonzero()[:, 1].view(2000, n)
    gap0 = data_pos[:, 0].float()  # blanks before data token 0: Binomial(223, 1/16)
    assert abs(gap0.mean().item() - 223 / 16) < 0.4


def test_selective_copy_options():
    base = dict(seq_len=40, num_tokens_to_copy=6)
    tf = tasks.make("selective_copy", teacher_forced=True, **base).generate(20, seed=0)
    data = tf.labels[:, -6:]
    assert torch.equal(tf.inputs[:, -5:], data[:, :-1]) and bool((tf.inputs[:, -6] == 15).all())
    no_marker = tasks.make("selective_copy", separate_marker=False, **base).generate(200, seed=0)
    assert bool((no_marker.inputs[:, -6:] == 0).all()) and int(no_marker.labels[:, -6:].max()) == 15
    gaps = tasks.make("selective_copy", positions="gaps", **base).generate(50, seed=0).inputs
    assert bool((gaps[:, 40 - 6 - 1] != 0).all())  # multinomial gaps end on a data token
    assert tasks.make("selective_copy", seq_len_counts="noise", **base).input_len == 40 + 12


def test_selective_copy_errors():
    raises_naming("num_tokens_to_copy", "selective_copy", seq_len=16, num_tokens_to_copy=9)
    raises_naming("layout", "selective_copy", layout="zoology")
    raises_naming("vocab_size", "selective_copy", vocab_size=2)
    raises_naming("separate_marker", "selective_copy", layout="mad", seq_len=256, separate_marker=False)


# ---------------------------------------------------------------------------------------------
# flip-flop


def test_flip_flop_oracle():
    task = tasks.make("flip_flop", seq_len=64, p_ignore=0.5)
    for x, y in rows(task.generate(50, seed=1)):
        assert x[0] == 0 and x[-2] == 1
        assert all(op in (0, 1, 2) for op in x[0::2]) and all(b in (3, 4) for b in x[1::2])
        expected, memory = {}, None
        for t in range(0, len(x), 2):
            if x[t] == 0:
                memory = x[t + 1]
            elif x[t] == 1:
                expected[t] = memory
        assert scored(y) == expected


@pytest.mark.parametrize("p_ignore,num,mean_reads,sd", [(0.8, 1000, 26.4, 151), (0.98, 10_000, 3.54, 501 / 10**0.5),
                                                         (0.1, 3000, 115.3, 434)])
def test_flip_flop_reads_per_slice(p_ignore, num, mean_reads, sd):
    """Reads per sequence = 1 + Binomial(254, p_r) (TASKS.md §5 table; sparse scaled to 10^4)."""
    total = tasks.make("flip_flop", p_ignore=p_ignore).generate(num, seed=0).num_scored
    assert abs(total - num * mean_reads) < 4 * sd + 0.01 * num


def test_flip_flop_generative_mode():
    task = tasks.make("flip_flop", seq_len=32, mode="generative")
    train, test = task.generate(10, seed=0, split="train"), task.generate(10, seed=0, split="test")
    assert torch.equal(train.inputs, test.inputs)
    assert bool((train.labels[:, :-1] == train.inputs[:, 1:]).all()) and bool((train.labels[:, -1] == IGNORE).all())
    assert bool(((test.labels != IGNORE) == (test.inputs == 1)).all())  # test stays clean


def test_flip_flop_errors():
    raises_naming("seq_len", "flip_flop", seq_len=63)
    raises_naming("p_ignore", "flip_flop", p_ignore=1.2)
    raises_naming("mode", "flip_flop", mode="noisy")


# ---------------------------------------------------------------------------------------------
# counting


def run_counting_program(x: list[int], first_var: int) -> tuple[int, int]:
    """Interpret a (complete) counting program: (position of the question's variable, answer token)."""
    values, t = {}, 0
    while x[t] != 5:  # print
        if x[t] == 1:  # pass;
            t += 1
        elif x[t + 1] == 2:  # v = 0 ;
            assert x[t + 2:t + 4] == [6, 3]
            values[x[t]] = 0
            t += 4
        else:  # v ++;
            assert x[t + 1] == 4 and x[t] in values
            values[x[t]] += 1
            t += 2
    assert x[t + 2] == 6 + values[x[t + 1]] and x[t + 1] >= first_var
    return t + 1, 6 + values[x[t + 1]]


def test_counting_oracle_and_truncation():
    full = tasks.make("counting", seq_len=2100)  # longer than any program: nothing truncated
    short = full.replace(seq_len=512)
    a, b = full.generate(60, seed=2), short.generate(60, seed=2)
    for (x, y), xs in zip(rows(a), b.inputs.tolist()):
        pos, answer = run_counting_program(x, full.first_var)
        assert scored(y) == {pos: answer} and max(answer - 6, 0) <= 10
        length = pos + 2
        assert xs[: min(length, 512)] == x[max(length - 512, 0): length]  # left truncation keeps the tail
    assert bool((b.labels != IGNORE).sum(1).eq(1).all())


def test_counting_reject_mode_keeps_whole_programs():
    task = tasks.make("counting", truncate="reject", seq_len=256)
    for x, y in rows(task.generate(40, seed=0)):
        assert scored(y) == dict([run_counting_program(x, task.first_var)])


def test_counting_sanity():
    """Mean program length ~316-320 tokens, ~14% of samples over 512, P(answer=10) ~0.19-0.23
    (TASKS.md §6, simulated)."""
    batch = tasks.make("counting", seq_len=2100).generate(4000, seed=0)
    length = (batch.inputs != 0).sum(1).float()
    answers = batch.labels[batch.labels != IGNORE] - 6
    assert 312 <= length.mean().item() - 3 <= 324  # without `print v answer`
    assert abs((length > 512).float().mean().item() - 0.14) < 0.02
    assert 0.18 <= (answers == 10).float().mean().item() <= 0.24


def test_counting_errors():
    raises_naming("vocab_size", "counting", num_vars=6)
    raises_naming("truncate", "counting", truncate="right")
    raises_naming("min_statements", "counting", min_statements=10, max_statements=5)


# ---------------------------------------------------------------------------------------------
# induction heads


def test_induction_heads_oracle():
    task = tasks.make("induction_heads", seq_len=32)
    trigger = task.vocab_size - 2
    for x, y in rows(task.generate(100, seed=0)):
        assert len(x) == 33 and x[-1] == trigger
        p = [t for t in range(32) if x[t] == trigger]
        assert len(p) == 1 and p[0] < 30
        assert scored(y) == {32: x[p[0] + 1]}
    train = task.generate(5, seed=0, split="train")
    assert bool((train.labels[:, :32] == train.inputs[:, 1:]).all())
    assert task.replace(train_loss="answer").generate(5, seed=0, split="train").num_scored == 5


def test_induction_heads_answers_uniform():
    """One scored position per test sequence; the answer is uniform over the V-2 data tokens."""
    batch = tasks.make("induction_heads", seq_len=64).generate(14_000, seed=0)
    assert batch.num_scored == 14_000
    counts = torch.bincount(batch.labels[:, -1], minlength=16).float()
    assert counts[14:].sum() == 0 and (counts[:14] / 1000 - 1).abs().max() < 0.12


def test_induction_heads_lengths_and_errors():
    assert tasks.make("induction_heads", seq_len=256).input_len == 257
    assert tasks.make("induction_heads", seq_len=256, seq_len_counts="total").input_len == 255
    raises_naming("seq_len", "induction_heads", seq_len=2)
    raises_naming("train_loss", "induction_heads", train_loss="all")


# ---------------------------------------------------------------------------------------------
# MAD recall tasks


def recall_oracle(x: list[int], y: list[int], real_vocab: int) -> None:
    """Labels on keys seen in an earlier real slot, and on the probe key."""
    seen, expected = set(), {}
    for t in range(0, len(x) - 1, 2):
        k, v = x[t], x[t + 1]
        if k >= real_vocab:  # a noise slot
            continue
        if k in seen:
            expected[t] = v
        seen.add(k)
    expected[len(x) - 1] = y[-1]
    assert x[-1] in seen or not seen
    assert scored(y) == expected


@pytest.mark.parametrize("name", ["in_context_recall", "noisy_recall"])
def test_recall_oracle(name):
    task = tasks.make(name, seq_len=32)
    real_vocab = task.vocab_size - task.noise_vocab_size
    test = task.generate(100, seed=0)
    for x, y in rows(test):
        recall_oracle(x, y, real_vocab)
        pairs = {}
        for t in range(0, len(x) - 1, 2):
            if x[t] < real_vocab:
                assert x[t] < real_vocab // 2 <= x[t + 1] < real_vocab
                assert pairs.setdefault(x[t], x[t + 1]) == x[t + 1]  # one value per key
        assert y[-1] == pairs.get(x[-1], y[-1])
    train = task.generate(100, seed=0, split="train")
    assert torch.equal(train.inputs, test.inputs)
    assert bool((train.labels[:, :-1] == train.inputs[:, 1:]).all())
    assert bool((train.labels[:, -1] == test.labels[:, -1]).all())


@pytest.mark.parametrize("V,L,N,expected", [(16, 128, 2000, 56.0), (128, 128, 2000, 23.7), (16, 1024, 100, 504.0)])
def test_in_context_recall_label_count(V, L, N, expected):
    """Expected test labels = (L/2-1) - E[#distinct keys] + 1 (TASKS.md §2.1)."""
    batch = tasks.make("in_context_recall", vocab_size=V, seq_len=L).generate(N, seed=0)
    assert abs(batch.num_scored / N - expected) < 0.25


@pytest.mark.parametrize("f,expected", [(0.2, 50.6), (0.4, 38.2), (0.6, 25.8), (0.8, 13.4)])
def test_noisy_recall_real_pairs(f, expected):
    """Expected real pairs among the 63 slots = 63(1-f) + f*63/64 (TASKS.md §2.2)."""
    x = tasks.make("noisy_recall", frac_noise=f).generate(2000, seed=0).inputs
    real = (x[:, 0:126:2] < 16).sum(1).float()
    assert abs(real.mean().item() - expected) < 0.3


def test_noisy_recall_guarantee():
    task = tasks.make("noisy_recall", seq_len=16, frac_noise=0.99)
    none_real = lambda b: ((b.inputs[:, 0:14:2] < 16).sum(1) == 0).float().mean().item()  # noqa: E731
    assert none_real(task.replace(noise_guarantee="always").generate(4000, seed=0)) == 0
    assert abs(none_real(task.generate(4000, seed=0)) - (2 / 16) * 0.99 ** 7) < 0.02


def test_recall_errors():
    raises_naming("seq_len", "in_context_recall", seq_len=31)
    raises_naming("noise_vocab_size", "noisy_recall", vocab_size=16, noise_vocab_size=15)
    raises_naming("frac_noise", "noisy_recall", frac_noise=1.0)


def parse_fuzzy(x: list[int], vocab_size: int) -> list[tuple[tuple[int, ...], tuple[int, ...], list[int]]]:
    """(key, value, positions of the value's tokens) for each pair of a fuzzy-recall sequence."""
    half, pad, pairs, t = (vocab_size - 1) // 2, vocab_size - 1, [], 0
    while t < len(x) and x[t] == pad:
        t += 1
    while t < len(x):
        k0 = t
        while t < len(x) and x[t] < half:
            t += 1
        v0 = t
        while t < len(x) and half <= x[t] < pad:
            t += 1
        pairs.append((tuple(x[k0:v0]), tuple(x[v0:t]), list(range(v0, t))))
    return pairs


def test_fuzzy_recall_oracle():
    task = tasks.make("fuzzy_recall")
    batch = task.generate(200, seed=0)
    # the last label is the probe value's last token: append it to see the whole probe pair
    for x, y in rows(batch):
        full = x + [y[-1]]
        pairs = parse_fuzzy(full, 16)
        (pk, pv, ppos), body = pairs[-1], pairs[:-1]
        assert len(pk) == 3 and all(len(k) == 3 for k, _, _ in body)  # test keys have full size
        expected, seen, unlabelled_probe = {}, {}, 0
        for k, v, pos in body:
            assert seen.setdefault(k, v) == v
            labelled = y[pos[0] - 1] != IGNORE
            if labelled:
                assert k in seen and any(kk == k for kk, _, _ in body[: body.index((k, v, pos))])
                expected.update({p - 1: full[p] for p in pos})
            elif any(kk == k for kk, _, _ in body[: body.index((k, v, pos))]):
                assert (k, v) == (pk, pv)  # only the inserted probe goes unlabelled when seen
                unlabelled_probe += 1
        assert unlabelled_probe <= 1 and seen.get(pk, pv) == pv
        expected.update({p - 1: full[p] for p in ppos})
        assert scored(y) == expected


def test_fuzzy_recall_sanity():
    """Probe key absent from the body in ~2.3% of test sequences; ~4.4 labels per sequence (sim.)."""
    batch = tasks.make("fuzzy_recall").generate(4000, seed=0)
    assert abs(batch.num_scored / 4000 - 4.4) < 0.15
    absent = 0
    for x, y in rows(batch):
        pairs = parse_fuzzy(x + [y[-1]], 16)
        absent += pairs[-1][0] not in {k for k, _, _ in pairs[:-1]}
    assert 0.015 <= absent / 4000 <= 0.032


def test_fuzzy_recall_train_split():
    task = tasks.make("fuzzy_recall")
    train = task.generate(300, seed=0, split="train")
    assert bool((train.labels[:, :-1] == train.inputs[:, 1:]).all())  # full shift, pads included
    sizes = Counter(len(k) for x, y in rows(train) for k, _, _ in parse_fuzzy(x + [y[-1]], 16)[:-1])
    assert set(sizes) == {1, 2, 3} and min(sizes.values()) > 0.25 * sum(sizes.values())
    assert sum(len(m) for m in [task.motifs(range(7), 3)[1]]) == 259


def test_fuzzy_recall_errors():
    raises_naming("key_motif_size", "fuzzy_recall", vocab_size=6, key_motif_size=3)
    raises_naming("seq_len", "fuzzy_recall", seq_len=12)


# ---------------------------------------------------------------------------------------------
# compression and memorization


def test_compression_oracle_and_entropy():
    task = tasks.make("compression")
    batch = task.generate(20_000, seed=0)
    assert tasks.task_class("compression").head == "compression"
    assert torch.equal(batch.labels, batch.inputs) and bool((batch.inputs[:, -1] == 15).all())
    body = batch.inputs[:, :-1]
    p = torch.bincount(body.flatten(), minlength=16).double() / body.numel()
    entropy = -(p[p > 0] * p[p > 0].log2()).sum().item()
    bits = 31 * entropy  # (L-1) log2(V-1) = 121.1 bits per sequence at V=16, L=32
    assert p[15] == 0 and abs(bits - 121.1) < 0.1


def test_memorization_oracle():
    task = tasks.make("memorization")
    facts = task.facts()
    assert facts.numel() == 127 and sorted(facts.tolist()) == sorted(set(facts.tolist()))
    assert int(facts.min()) >= 127 and int(facts.max()) < 255
    for seed in (0, 1):
        for split in ("train", "test"):
            for x, y in rows(task.generate(20, seed=seed, split=split)):
                assert x[1::2] == [255] * 16
                assert scored(y) == {2 * j + 1: facts[k].item() for j, k in enumerate(x[0::2])}
    assert not torch.equal(task.replace(fact_seed=1).facts(), facts)


@pytest.mark.parametrize("V,unseen", [(4096, math.exp(-2)), (8192, math.exp(-1))])
def test_memorization_unseen_fraction(V, unseen):
    """With 256 training sequences (4,096 key draws) about exp(-4096/K) of test queries were never
    trained (TASKS.md §2.6: 0.135 at V=4096, 0.368 at V=8192)."""
    task = tasks.make("memorization", vocab_size=V)
    K = (V - 1) // 2
    assert abs(4096 / K - {4096: 2.0, 8192: 1.0}[V]) < 0.01
    trained = set(task.generate(256, seed=0, split="train").inputs[:, 0::2].flatten().tolist())
    queries = task.generate(1280, seed=1).inputs[:, 0::2].flatten()
    frac = sum(q not in trained for q in queries.tolist()) / queries.numel()
    assert abs(frac - unseen) < 0.03


def test_compression_memorization_errors():
    raises_naming("seq_len", "memorization", seq_len=31)
    raises_naming("vocab_size", "compression", vocab_size=1)


# ---------------------------------------------------------------------------------------------
# copying


def copying_oracle(x: list[int], y: list[int], task) -> None:
    A = task.vocab_size - 4
    dollar, bar, eos, pad = A, A + 1, A + 2, A + 3
    assert x[0] == dollar
    body = x[: x.index(eos) + 1]
    assert all(t == pad for t in x[len(body):])
    parts = [[]]
    for t in body[1:-1]:
        parts[-1].append(t) if t != bar else parts.append([])
    if task.mode == "copy":
        s, answer, start = parts[0], parts[1], len(parts[0]) + 1
        assert answer == s
    elif task.mode == "prefix_lookup":
        g, s, answer = parts
        start = len(g) + len(s) + 2
    else:
        s, ga = parts
        g, answer, start = ga[: task.ngram_len], ga[task.ngram_len:], len(s) + 1 + task.ngram_len
    if task.mode != "copy":
        m = task.ngram_len
        hits = [j for j in range(len(s) - m + 1) if s[j:j + m] == g]
        assert len(hits) == 1 and s[hits[0] + m: hits[0] + m + task.answer_len] == answer
    assert task.min_len <= len(s) <= task.max_len
    targets = answer + [eos]
    assert scored(y) == {start + i: t for i, t in enumerate(targets)}


@pytest.mark.parametrize("mode", ["copy", "prefix_lookup", "suffix_lookup"])
def test_copying_oracle(mode):
    task = tasks.make("copying", mode=mode)
    for x, y in rows(task.generate(100, seed=0)):
        copying_oracle(x, y, task)


def test_copying_packed_train():
    task = tasks.make("copying")
    A = task.vocab_size - 4
    for x, y in rows(task.generate(30, seed=0, split="train")):
        assert x[0] == A and A + 3 not in x  # rows are full, no padding
        starts = [t for t, v in enumerate(x) if v == A] + [len(x)]
        for a, b in zip(starts, starts[1:]):
            ex, lab = x[a:b], y[a:b]
            if A + 2 in ex:  # a complete example: its own oracle
                copying_oracle(ex + [A + 3], lab + [IGNORE], task)
            else:  # the example cut by the row's end is unlabelled
                assert all(v == IGNORE for v in lab[:-1])


def test_copying_errors():
    raises_naming("seq_len", "copying", max_len=200)
    raises_naming("vocab_size", "copying", vocab_size=31)
    raises_naming("min_len", "copying", mode="prefix_lookup", min_len=3)


# ---------------------------------------------------------------------------------------------
# state tracking


@pytest.mark.parametrize("group,size,abelian", [("parity", 2, True), ("mod3", 3, True), ("S3", 6, False),
                                                ("Z60", 60, True), ("A4xZ5", 60, False), ("A5", 60, False),
                                                ("S5", 120, False)])
def test_state_tracking_groups(group, size, abelian):
    from tasks.state_tracking import multiplication_table, permutations

    elems = permutations(group)
    assert len(set(elems)) == size and elems[0] == tuple(range(len(elems[0])))  # index 0 is the identity
    table = multiplication_table(group, "left_first")
    assert torch.equal(table[0], torch.arange(size)) and torch.equal(table[:, 0], torch.arange(size))
    assert bool((table.sort(1).values == torch.arange(size)).all())  # Latin square: a group table
    assert torch.equal(table, table.t()) == abelian
    assert torch.equal(multiplication_table(group, "right_first"), table.t())


@pytest.mark.parametrize("composition", ["left_first", "right_first"])
@pytest.mark.parametrize("group", ["S3", "A4xZ5", "S5"])
def test_state_tracking_oracle(group, composition):
    from tasks.state_tracking import compose, permutations

    task = tasks.make("state_tracking", group=group, seq_len=12, composition=composition)
    elems = permutations(group)
    for x, y in rows(task.generate(30, seed=0)):
        state = elems[0]
        for t, g in enumerate(x):
            state = compose(state, elems[g], composition)
            assert y[t] == elems.index(state)


def test_state_tracking_counting_and_end_label():
    bits = tasks.make("state_tracking", group="mod3", vocab_size=4, seq_len=30, label_at="end").generate(50, seed=0)
    assert bool((bits.inputs[:, :30] <= 1).all()) and bool((bits.inputs[:, 30] == 3).all())
    assert scored(bits.labels[0].tolist()) == {30: int(bits.inputs[0, :30].sum()) % 3}
    parity = tasks.make("state_tracking", group="parity", vocab_size=2, seq_len=30).generate(50, seed=0)
    assert torch.equal(parity.labels, parity.inputs.cumsum(1) % 2)


def test_state_tracking_errors():
    raises_naming("group", "state_tracking", group="D4")
    raises_naming("group", "state_tracking", group="S7")
    raises_naming("vocab_size", "state_tracking", group="S5", vocab_size=100)
    raises_naming("label_at", "state_tracking", label_at="start")


# ---------------------------------------------------------------------------------------------
# speed: vectorised generators


@pytest.mark.parametrize("name,params", [("flip_flop", dict(seq_len=512)), ("in_context_recall", {}),
                                         ("selective_copy", dict(seq_len=512)), ("state_tracking", dict(seq_len=64))])
def test_generation_is_vectorised(name, params):
    """20k examples in well under the time a per-example Python loop would take."""
    import time

    task = tasks.make(name, **params)
    start = time.perf_counter()
    task.generate(20_000, seed=0)
    assert time.perf_counter() - start < 10
