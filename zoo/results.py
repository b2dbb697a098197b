"""Run directories and the tidy results table.

A run directory holds `config.yaml`, `metrics.jsonl` (one JSON object per evaluation),
`summary.json` (the final record) and `checkpoint.pt`. Every write goes to a temporary file that
is then renamed over the target, so a run killed at any moment leaves whole files.

    df = zoo.results.load("results/")   # one row per (run, eval slice), one column per variable
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd

SUMMARY, METRICS, CONFIG, CHECKPOINT = "summary.json", "metrics.jsonl", "config.yaml", "checkpoint.pt"
STATUSES = ("completed", "diverged", "failed")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)`, then rename tmp over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=2, default=str) + "\n")


def write_metrics(path: str | Path, records: list[dict]) -> None:
    """Rewrite metrics.jsonl whole (it is small), atomically."""
    write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become strings so that they fit one cell."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def summary_rows(summary: dict, run_dir: Path) -> list[dict]:
    """One row per eval slice, plus an `overall` row pooling every slice."""
    base = {k: v for k, v in summary.items() if k not in ("slices", "overall", "hparams")}
    base.update(flatten(summary.get("hparams", {})))
    base["run_dir"] = str(run_dir)
    rows = []
    for name, metrics in {**summary.get("slices", {}), "overall": summary.get("overall", {})}.items():
        rows.append({**base, "slice": name, **flatten(metrics)})
    return rows


def load(path: str | Path = "results") -> pd.DataFrame:
    """The tidy table of every run under `path`: one row per (run, slice) (slice `overall` pools
    all slices), columns for the run's record (status, task, model, params, state_bytes, ...), its
    hyperparameters (`task.*`, `model.*`, `train.*`, `seed`) and the slice's metrics."""
    rows = []
    for summary_path in sorted(Path(path).glob(f"**/{SUMMARY}")):
        rows.extend(summary_rows(json.loads(summary_path.read_text()), summary_path.parent))
    return pd.DataFrame(rows)
