"""The training loop: AdamW, warmup + decay schedule, per-slice evaluation, early stopping,
checkpoints every evaluation (so an interrupted run resumes where it stopped) and NaN detection.

Speed (synthetic tasks are small models over many tokens): the data lives on the device and is
sliced per batch, logits are computed only at scored positions, bf16 autocast and a fused
optimizer on CUDA, and the loop syncs with the host only at log intervals.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tasks import IGNORE, Batch

from .data import Datasets
from .metrics import HEADLINE, Tally, macro_accuracy
from .results import CHECKPOINT, METRICS, atomic_write, read_metrics, write_metrics

log = logging.getLogger(__name__)
LOG_EVERY = 25  # steps between host syncs (progress bar, NaN check)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    epochs: int = 4
    max_steps: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    schedule_unit: Literal["step", "epoch"] = "step"
    warmup_steps: int = 0
    min_lr: float | None = None        # absolute floor of the decay (MAD: 1e-6) ...
    min_lr_ratio: float | None = None  # ... or a fraction of lr (null = 0); not both
    grad_clip: float | None = 1.0
    eval_every: int | None = None
    metric: Literal["micro", "per_example", "sequence", "macro_mad"] | None = None  # headline; null = the task's
    early_stop_acc: float | None = 0.99
    shuffle: bool = True
    fresh_data: bool = False
    compile: bool = False
    resume: bool = True
    redo: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"train.schedule={self.schedule!r}: expected cosine, linear or constant")
        if self.schedule_unit not in ("step", "epoch"):
            raise ValueError(f"train.schedule_unit={self.schedule_unit!r}: expected step or epoch")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision={self.precision!r}: expected auto, fp32 or bf16")
        if self.metric is not None and self.metric not in HEADLINE:
            raise ValueError(f"train.metric={self.metric!r}: expected null (the task's own metric) or one of "
                             f"{', '.join(HEADLINE)}")
        if self.min_lr is not None and self.min_lr_ratio is not None:
            raise ValueError(f"train.min_lr={self.min_lr} and train.min_lr_ratio={self.min_lr_ratio} are both set: "
                             f"give the decay's floor one way, absolute or relative to train.lr, and the other null")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"train.min_lr={self.min_lr} must lie in [0, train.lr={self.lr}]")
        if self.batch_size < 1 or self.epochs < 0:
            raise ValueError(f"train.batch_size={self.batch_size} must be >= 1 and train.epochs={self.epochs} >= 0")


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens_seen: int = 0
    wall_s: float = 0.0
    status: str = "running"
    diverged_step: int | None = None
    last_eval: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA GPU is visible; use train.device=cpu (or auto)")
    return torch.device(name)


def param_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool) -> list[dict]:
    """Decay matrices only: never biases, norms or parameters a mixer marks `_no_weight_decay`
    (Mamba's A_log, D); embeddings only when asked."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        skip = p.ndim < 2 or getattr(p, "_no_weight_decay", False) or (id(p) in embeddings and not decay_embeddings)
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warmup (in steps), then cosine / linear decay to the floor (`min_lr`, or
    lr·`min_lr_ratio`), or constant. With `schedule_unit=epoch` the decay moves once per epoch
    (lr_e = f(e / epochs), as Zoology's per-epoch cosine, Mamba-2's lr_e = peak·(E−e)/E and MAD's
    `CosineAnnealingLR(T_max=epochs, eta_min=1e-6)` stepped each epoch)."""
    if cfg.min_lr is not None:  # the floor as a fraction of lr
        floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    else:
        floor = cfg.min_lr_ratio or 0.0

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule_unit == "epoch":
            progress = min(1.0, (step // max(steps_per_epoch, 1)) / max(cfg.epochs, 1))
        else:
            progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        return floor + (1 - floor) * shape
    return factor


def epoch_batches(data: Datasets, batch_size: int, seed: int, epoch: int, shuffle: bool,
                  device: torch.device | None = None) -> list[tuple[int, torch.Tensor]]:
    """(segment, example indices on `device`) for every batch of an epoch; deterministic in
    (seed, epoch). The orders are drawn on the CPU and copied once per epoch, not per step."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    batches = []
    for s, seg in enumerate(data.segments):
        order = torch.randperm(len(seg), generator=gen) if shuffle else torch.arange(len(seg))
        batches.extend((s, idx) for idx in order.to(device).split(batch_size))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen)]
    return batches


def scored_loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum of cross-entropy over scored positions, the logits there, and their mask."""
    mask = batch.labels != IGNORE
    logits = model.logits_at(model.hidden(batch.inputs), mask).float()
    return F.cross_entropy(logits, batch.labels[mask], reduction="sum"), logits, mask


@torch.no_grad()
def evaluate(model: nn.Module, data: Datasets, batch_size: int, autocast, metric: str | None = None) -> dict:
    """Per-slice metrics and the pool of all slices (`overall`); `metric` overrides each task's
    headline metric (`train.metric`)."""
    was_training = model.training
    model.eval()
    pooled, out = Tally(), {}
    for name, batch in data.slices.items():
        slice_metric = metric or data.slice_tasks[name].metric
        try:
            tally = _evaluate_slice(model, batch, batch_size, autocast)
        except torch.OutOfMemoryError:
            # e.g. a 2^20-token extrapolation slice: the paper reports such cells as OOM; training goes on
            log.warning(f"eval slice {name!r} ({tuple(batch.inputs.shape)}) ran out of memory even one example "
                        f"at a time; it is recorded with accuracy null")
            out[name] = {"accuracy": None, "metric": slice_metric, "error": "out of memory"}
            continue
        out[name] = tally.summary(slice_metric)
        pooled.merge(tally)
    model.train(was_training)
    return {"slices": out, "overall": pooled.summary(metric or data.task.metric)}


def _evaluate_slice(model: nn.Module, batch: Batch, batch_size: int, autocast) -> Tally:
    """Tally one slice in batches of `batch_size`, halving the batch (down to 1) when the device runs
    out of memory; raises OutOfMemoryError if one example does not fit."""
    tally, start = Tally(), 0
    while start < len(batch):
        part = batch[start:start + batch_size]
        try:
            with autocast():
                loss_sum, logits, mask = scored_loss(model, part)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        rows = mask.nonzero(as_tuple=True)[0]
        preds, targets = logits.argmax(-1), part.labels[mask]
        tally.add(loss_sum, preds == targets, rows, len(part),
                  macro=macro_accuracy(preds, targets, logits.shape[-1], ignore_index=None))
        start += len(part)
    return tally


def autocast_for(precision: str, device: torch.device) -> Callable:
    """A context-manager factory: bf16 autocast when `precision` is bf16, or auto on CUDA."""
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Training steps of a run: epochs × steps per epoch, capped by `max_steps`."""
    if cfg.max_steps is None:
        return steps_per_epoch * cfg.epochs
    return min(cfg.max_steps, steps_per_epoch * max(cfg.epochs, 1))


def train_step(model: nn.Module, batch: Batch, optimizer, grad_clip: float | None, autocast,
               clip_model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on the mean loss over scored positions; returns (loss sum, scored
    positions, mean loss), on the device (no host sync). `clip_model` owns the parameters (the
    uncompiled module when `model` is torch.compile'd)."""
    with autocast():
        loss_sum, _, mask = scored_loss(model, batch)
    n_scored = mask.sum()
    loss = loss_sum / n_scored.clamp(min=1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_((clip_model or model).parameters(), grad_clip)
    optimizer.step()
    return loss_sum, n_scored, loss


def save_checkpoint(path: Path, model, optimizer, scheduler, state: TrainState) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "state": state.__dict__,
               "torch_rng": torch.get_rng_state()}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, model, optimizer, scheduler) -> TrainState:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    return TrainState(**payload["state"])


def train(model: nn.Module, data: Datasets, cfg: TrainConfig, *, run_dir: Path, seed: int,
          device: torch.device, on_eval: Callable[[dict], None] | None = None) -> TrainState:
    """Train `model` on `data.segments`, evaluating every slice every epoch (or `eval_every`
    steps); returns the final state (`status`: completed or diverged)."""
    from .progress import Progress

    autocast = autocast_for(cfg.precision, device)
    data = data.to(device)
    model.to(device)
    step_model = torch.compile(model) if cfg.compile else model
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.decay_embeddings), lr=cfg.lr,
                                  betas=tuple(cfg.betas), fused=device.type == "cuda")
    steps_per_epoch = sum(math.ceil(len(seg) / cfg.batch_size) for seg in data.segments)
    total = total_steps(cfg, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total, steps_per_epoch))

    ckpt, metrics_path = run_dir / CHECKPOINT, run_dir / METRICS
    state, history = TrainState(), []
    if cfg.resume and ckpt.exists():
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        history = [r for r in read_metrics(metrics_path) if r["step"] <= state.step]
    if state.status != "running":
        return state

    def evaluate_and_save() -> bool:
        """Evaluate every slice, log, checkpoint; True when training should stop early."""
        nonlocal train_loss
        if int(count_acc) > 0:  # the mean training loss since the last log line
            train_loss = float(loss_acc / count_acc)
            loss_acc.zero_(), count_acc.zero_()
        result = evaluate(step_model, data, cfg.eval_batch_size, autocast, cfg.metric)
        record = {"step": state.step, "epoch": state.epoch, "tokens": state.tokens_seen,
                  "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                  "wall_s": round(state.wall_s + time.time() - t0, 3), **result}
        history.append(record)
        write_metrics(metrics_path, history)
        state.last_eval = result
        save_checkpoint(ckpt, model, optimizer, scheduler, _with_wall(state, t0))
        if on_eval:
            on_eval(record)
        return cfg.early_stop_acc is not None and result["overall"]["accuracy"] >= cfg.early_stop_acc

    model.train()
    t0, train_loss = time.time(), float("nan")
    loss_acc = torch.zeros((), device=device)
    count_acc = torch.zeros((), device=device)
    bad_step = torch.full((), -1, device=device, dtype=torch.long)
    stop = state.step >= total
    with Progress(total=total, start=state.step, enabled=cfg.progress) as bar:
        while not stop:
            if cfg.fresh_data and state.epoch > 0:
                data.segments = [b.to(device) for b in data.fresh_segments(seed, state.epoch)]
            batches = epoch_batches(data, cfg.batch_size, seed, state.epoch, cfg.shuffle, device)
            for seg, idx in batches[state.batch_in_epoch:]:
                batch = data.segments[seg][idx]
                loss_sum, n_scored, loss = train_step(step_model, batch, optimizer, cfg.grad_clip, autocast, model)
                scheduler.step()
                # record the first non-finite loss without a host sync
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), state.step, bad_step)
                loss_acc += loss_sum.detach()
                count_acc += n_scored
                state.step += 1
                state.batch_in_epoch += 1
                state.tokens_seen += batch.inputs.numel()
                if state.step % LOG_EVERY == 0 or state.step == total:
                    if int(bad_step) >= 0:
                        state.status, state.diverged_step = "diverged", int(bad_step)
                        break
                    train_loss = float(loss_acc / count_acc.clamp(min=1))
                    loss_acc.zero_(), count_acc.zero_()
                    bar.update(state.step, loss=train_loss, tokens=state.tokens_seen,
                               acc=state.last_eval.get("overall", {}).get("accuracy"))
                if cfg.eval_every is not None and state.step % cfg.eval_every == 0:
                    stop = evaluate_and_save()
                if stop or state.step >= total:
                    break
            if state.status == "diverged":
                break
            if state.batch_in_epoch == len(batches):  # the epoch is complete
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if cfg.eval_every is None:
                    stop = evaluate_and_save()
            if state.step >= total:
                if not history or history[-1]["step"] != state.step:
                    evaluate_and_save()
                stop = True
    if state.status == "running":
        state.status = "completed"
    state.wall_s += time.time() - t0
    save_checkpoint(ckpt, model, optimizer, scheduler, state)
    return state


def _with_wall(state: TrainState, t0: float) -> TrainState:
    """A copy of the state whose wall_s includes the time since t0 (for checkpoints)."""
    return TrainState(**{**state.__dict__, "wall_s": state.wall_s + time.time() - t0})
