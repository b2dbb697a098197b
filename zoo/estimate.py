"""GPU time of an experiment preset, from step times measured on this device.

    python -m zoo.estimate +experiment=NAME [key=value ...] [--steps 8] [--budget-s 120]

Every run of the preset's sweep (`zoo.presets.grid_runs`) is costed without training it:

    time(run) = n_steps · Σ_i w_i t_train(segment i) + n_evals · Σ_s ⌈n_s / eval_batch⌉ t_eval(slice s)

where n_steps = min(max_steps, epochs · steps per epoch), w_i is segment i's share of the steps of an
epoch, n_evals is one per epoch (or per `eval_every` steps) plus the final one, and t_train / t_eval
are measured here: the exact training step (autocast, loss at scored positions, backward, clipping,
fused AdamW) on one real batch of the segment, and a no-grad forward on one eval batch of the slice.
Early stopping is ignored, so the total is an upper bound for presets that stop early. Runs that
share a shape (model config, lengths, batch, vocabulary, precision) are timed once, and sweep axes
that change no shape (lr, weight decay, seed) multiply the cost without being composed. When timing
every shape would exceed `--budget-s`, the shapes are timed round-robin over models until the budget
is spent and the rest are read off a line fitted to the same model's measured shapes, seconds = a + b ·
tokens · d_model² · layers (overhead plus size; the output says how many shapes were measured). Data generation on the host (e.g. `train.fresh_data`) is not counted.

Writes `<out>/<preset>.json` and re-renders `<out>/README.md` (one row per preset in that folder).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

import tasks

from .data import task_specs
from .model import from_config
from .presets import compose_each, grid_runs, sweep_grid
from .train import TrainConfig, autocast_for, param_groups, resolve_device, scored_loss, total_steps, train_step

# Swept keys that change neither shapes nor step counts: runs differing only in these cost the same.
SHAPELESS = {"train.lr", "train.weight_decay", "train.betas", "seed"}
SLOW_S = 2.0  # a shape whose `steps` timed steps would take longer than this is timed by one step
RETIME_S = 5.0  # ... and by a second one (the faster counts) when that step took less than this


@dataclass
class Item:
    """One timed shape: a training step on a segment's batch or a forward on an eval batch."""
    kind: str                  # "train" | "eval"
    model_key: str             # model config + vocabulary + max length + head (what builds the model)
    model_name: str
    task: tasks.Task
    batch: int
    precision: str
    grad_clip: float | None
    d_model: int = 1
    n_layers: int = 1
    seconds: float | None = None   # measured; None until timed
    error: str | None = None

    @property
    def tokens(self) -> int:
        return self.batch * self.task.input_len

    @property
    def work(self) -> float:
        """A size proxy for unmeasured shapes: tokens × d_model² × layers (the projections' FLOPs)."""
        return float(self.tokens * self.d_model**2 * self.n_layers)


@dataclass
class RunCost:
    overrides: list[str]
    model_name: str
    steps: int
    evals: int
    train: list[tuple[str, float]] = field(default_factory=list)   # (item key, steps share)
    eval: list[tuple[str, int]] = field(default_factory=list)      # (item key, batches per eval)


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def plan(cfg, items: dict[str, Item], device: torch.device, overrides: list[str]) -> RunCost:
    """The cost structure of one composed run config; registers its shapes in `items`."""
    train = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    base, segments, slice_specs = task_specs(OmegaConf.to_container(cfg.task, resolve=True))
    slices = list(slice_specs.values())
    all_tasks = [t for t, _ in segments + slices]
    vocab = max(t.vocab_size for t in all_tasks)
    max_len = max(t.input_len for t in all_tasks)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_key = _key(model_cfg, vocab, max_len, base.head)
    size = dict(d_model=int(model_cfg["d_model"]), n_layers=int(model_cfg["n_layers"]))
    precision = train.precision if train.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")

    per_epoch = [math.ceil(n / train.batch_size) for _, n in segments]
    spe = sum(per_epoch)
    steps = total_steps(train, spe)
    if train.eval_every:
        evals = steps // train.eval_every + (steps % train.eval_every > 0)
    else:
        evals = math.ceil(steps / spe) if spe else 0
    cost = RunCost(overrides, cfg.model.name, steps, evals)
    for (seg_task, _), n_batches in zip(segments, per_epoch):
        key = _key("train", model_key, seg_task.params(), train.batch_size, precision, train.grad_clip)
        items.setdefault(key, Item("train", model_key, cfg.model.name, seg_task, train.batch_size, precision,
                                   train.grad_clip, **size))
        cost.train.append((key, n_batches / spe))
    for slice_task, n in slices:
        batch = min(n, train.eval_batch_size)
        key = _key("eval", model_key, slice_task.params(), batch, precision)
        items.setdefault(key, Item("eval", model_key, cfg.model.name, slice_task, batch, precision, None, **size))
        cost.eval.append((key, math.ceil(n / train.eval_batch_size)))
    return cost


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_item(item: Item, model: nn.Module, device: torch.device, steps: int, warm_up: bool = True) -> float:
    """Seconds per training step (or per eval forward) on one real batch of the item's task; one
    untimed step first when `warm_up` (kernel compilation, allocator)."""
    data = item.task.generate(item.batch, 0, split="train" if item.kind == "train" else "test").to(device)
    autocast = autocast_for(item.precision, device)
    if item.kind == "eval":
        model.eval()

        def step():
            with autocast():
                scored_loss(model, data)
    else:
        model.train()
        optimizer = torch.optim.AdamW(param_groups(model, 0.1, False), lr=1e-4, fused=device.type == "cuda")

        def step():
            train_step(model, data, optimizer, item.grad_clip, autocast)
    with torch.no_grad() if item.kind == "eval" else torch.enable_grad():
        if warm_up:
            step()
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        once = time.perf_counter() - t0
        if once * steps > SLOW_S:               # a long step (e.g. a 2^20-token eval) is timed once,
            if once < RETIME_S:                 # or twice: a new shape can compile a kernel on first use
                t0 = time.perf_counter()
                step()
                _sync(device)
                once = min(once, time.perf_counter() - t0)
            return once
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
    return (time.perf_counter() - t0) / steps


def measure(items: dict[str, Item], device: torch.device, steps: int, budget_s: float, log=print) -> None:
    """Time items round-robin over models (one model built at a time) until the budget is spent."""
    by_model: dict[str, list[Item]] = defaultdict(list)
    for item in items.values():
        by_model[item.model_key].append(item)
    by_name: dict[str, list[str]] = defaultdict(list)
    for key, group in by_model.items():
        by_name[group[0].model_name].append(key)
    # per name, the largest and smallest shapes first, then ever finer in between (for the fit)
    spread = [_spread(sorted(keys, key=lambda k: max(it.work for it in by_model[k]))) for keys in by_name.values()]
    order = [k for round_ in _round_robin(spread) for k in round_]
    t_start = time.perf_counter()
    for i, model_key in enumerate(order):
        if time.perf_counter() - t_start > budget_s and i >= len(by_name):
            log(f"budget of {budget_s:.0f}s spent after {i} of {len(order)} model shapes; the rest are scaled")
            break
        group = by_model[model_key]
        model_cfg, vocab, max_len, head = json.loads(model_key)
        torch.manual_seed(0)
        try:
            model = from_config(OmegaConf.create(model_cfg), vocab_size=vocab, max_seq_len=max_len, head=head).to(device)
        except Exception as e:  # noqa: BLE001 - recorded per shape, the estimate goes on
            for item in group:
                item.error = f"build: {type(e).__name__}: {e}"
            continue
        seen = set()
        for item in sorted(group, key=lambda it: (it.kind, it.tokens)):   # the smallest of a kind warms up
            try:
                item.seconds = time_item(item, model, device, steps, warm_up=item.kind not in seen)
                seen.add(item.kind)
            except torch.OutOfMemoryError:
                item.error = "out of memory"
            except Exception as e:  # noqa: BLE001
                item.error = f"{type(e).__name__}: {e}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        del model
        log(f"[{i + 1}/{len(order)}] {group[0].model_name}: "
            + ", ".join(f"{it.kind} L={it.task.input_len} " + (f"{it.seconds * 1e3:.1f} ms" if it.seconds else str(it.error))
                        for it in group))


def _spread(xs: list) -> list:
    """[x0 .. xn] -> [xn, x0, x_mid, x_quarter, x_3quarter, ...]: every prefix spans the range."""
    if len(xs) <= 2:
        return xs[::-1]
    out, seen, parts = [xs[-1], xs[0]], {0, len(xs) - 1}, [(0, len(xs) - 1)]
    while parts:
        lo, hi = parts.pop(0)
        mid = (lo + hi) // 2
        if mid not in seen:
            seen.add(mid)
            out.append(xs[mid])
        if mid - lo > 1:
            parts.append((lo, mid))
        if hi - mid > 1:
            parts.append((mid, hi))
    return out


def _round_robin(groups: list[list[str]]) -> list[list[str]]:
    """[[a1, a2], [b1]] -> [[a1, b1], [a2]]: each round visits every model name once."""
    return [[g[i] for g in groups if i < len(g)] for i in range(max(map(len, groups), default=0))]


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares seconds = a + b·work with a, b >= 0 (fixed overhead plus a part that grows with
    size); one point, or points of one size, give a line through the origin."""
    works = {w for w, _ in points}
    if len(works) >= 2:
        n = len(points)
        mw, ms = sum(w for w, _ in points) / n, sum(t for _, t in points) / n
        b = sum((w - mw) * (t - ms) for w, t in points) / sum((w - mw) ** 2 for w, _ in points)
        a = ms - b * mw
        if b >= 0 and a >= 0:
            return a, b
        if b < 0:
            return ms, 0.0
    return 0.0, sum(t * w for w, t in points) / sum(w * w for w, _ in points)


def item_seconds(items: dict[str, Item]) -> dict[str, float | None]:
    """Measured seconds; an unmeasured shape gets `fit_line` over the same model name's measured
    shapes of its kind (else every model's); None where nothing of its kind was measured or it ran
    out of memory."""
    points: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for it in items.values():
        if it.seconds is not None:
            points[(it.kind, it.model_name)].append((it.work, it.seconds))
            points[(it.kind, None)].append((it.work, it.seconds))
    lines = {k: fit_line(v) for k, v in points.items()}
    out = {}
    for key, it in items.items():
        if it.seconds is not None or it.error == "out of memory":
            out[key] = it.seconds
            continue
        line = lines.get((it.kind, it.model_name)) or lines.get((it.kind, None))
        out[key] = line[0] + line[1] * it.work if line else None
    return out


def estimate(preset: str, overrides: list[str], *, device: torch.device, steps: int, budget_s: float,
             log=print) -> dict:
    """Cost every run of the preset; returns the JSON-able result (totals, per model, per run)."""
    grid = sweep_grid(preset, *overrides)
    repeats = math.prod(len(v) for k, v in grid.items() if k in SHAPELESS)
    runs = grid_runs(preset, *overrides, *[f"{k}={v[0]}" for k, v in grid.items() if k in SHAPELESS])
    items: dict[str, Item] = {}
    costs = [plan(cfg, items, device, ov) for cfg, ov in zip(compose_each(preset, runs), runs)]
    log(f"{preset}: {len(costs) * repeats} runs ({len(costs)} costed, x{repeats} over "
        f"{', '.join(k for k in grid if k in SHAPELESS) or 'nothing'}), {len(items)} distinct shapes")
    measure(items, device, steps, budget_s, log)
    seconds = item_seconds(items)
    per_run, unknown = [], 0
    for c in costs:
        parts = [seconds[k] for k, _ in c.train] + [seconds[k] for k, _ in c.eval]
        if any(p is None for p in parts):
            unknown += 1
            per_run.append(dict(overrides=c.overrides, model=c.model_name, steps=c.steps, seconds=None))
            continue
        train_s = c.steps * sum(seconds[k] * w for k, w in c.train)
        eval_s = c.evals * sum(seconds[k] * n for k, n in c.eval)
        per_run.append(dict(overrides=c.overrides, model=c.model_name, steps=c.steps, evals=c.evals,
                            seconds=train_s + eval_s, train_s=train_s, eval_s=eval_s))
    known = [r for r in per_run if r["seconds"] is not None]
    by_model: dict[str, float] = defaultdict(float)
    for r in known:
        by_model[r["model"]] += r["seconds"] * repeats
    errors = sorted({it.error for it in items.values() if it.error})
    return dict(
        preset=preset, overrides=overrides, runs=len(costs) * repeats, runs_unknown=unknown * repeats,
        repeats=repeats, shapes=len(items), shapes_measured=sum(it.seconds is not None for it in items.values()),
        train_steps=sum(c.steps for c in costs) * repeats,
        gpu_hours=sum(r["seconds"] for r in known) * repeats / 3600,
        gpu_hours_by_model={m: s / 3600 for m, s in sorted(by_model.items())},
        device=device_label(device), errors=errors, timed_steps=steps, per_run=per_run,
        timings=[dict(kind=it.kind, model=it.model_name, seq_len=it.task.input_len, batch=it.batch,
                      d_model=it.d_model, n_layers=it.n_layers, ms=None if it.seconds is None else it.seconds * 1e3,
                      error=it.error) for it in items.values() if it.seconds is not None or it.error])


def device_label(device: torch.device) -> str:
    import triton

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return f"{name}; torch {torch.__version__}; triton {triton.__version__}"


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    return f"{h * 60:.1f} min" if h < 1 else f"{h:,.1f} h"


def render(out: Path) -> str:
    """The markdown table over every `<out>/*.json` estimate."""
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# Estimated GPU time per preset", "",
             "Upper bounds (no early stopping) from step times measured by `python -m zoo.estimate` "
             "(see its docstring for the cost model). Regenerate a row with the command in its first column.", "",
             "| command | runs | train steps | shapes measured | GPU time | by model | device |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        cmd = " ".join(["python -m zoo.estimate", f"+experiment={r['preset']}", *r["overrides"]])
        models = ", ".join(f"{m} {_hours(h)}" for m, h in r["gpu_hours_by_model"].items())
        note = f" ({r['runs_unknown']} runs not costed: {'; '.join(r['errors'])})" if r["runs_unknown"] else ""
        lines.append(f"| `{cmd}` | {r['runs']} | {r['train_steps']:,} | {r['shapes_measured']}/{r['shapes']} | "
                     f"{_hours(r['gpu_hours'])}{note} | {models} | {r['device']} |")
    text = "\n".join(lines) + "\n"
    (out / "README.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="+", help="+experiment=NAME and any key=value overrides")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per shape (after 2 warm-up steps)")
    parser.add_argument("--budget-s", type=float, default=120.0, help="seconds to spend timing shapes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="results/bench/presets", help="folder for <preset>.json and README.md")
    args = parser.parse_args(argv)
    presets = [o.split("=", 1)[1] for o in args.overrides if o.startswith("+experiment=")]
    if len(presets) != 1:
        raise SystemExit("name exactly one preset: python -m zoo.estimate +experiment=NAME [key=value ...]")
    overrides = [o for o in args.overrides if not o.startswith("+experiment=")]
    device = resolve_device(args.device)
    result = estimate(presets[0], overrides, device=device, steps=args.steps, budget_s=args.budget_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = presets[0].replace("/", "_")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(f"{presets[0]}: {result['runs']} runs, {result['train_steps']:,} training steps, "
          f"estimated {_hours(result['gpu_hours'])} on {result['device']} "
          f"({result['shapes_measured']}/{result['shapes']} shapes measured)")
    print(render(out))


if __name__ == "__main__":
    main()
