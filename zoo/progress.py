"""Progress display: a rich bar (loss, accuracy, tokens/s, ETA) on a terminal; plain log lines
every 30 s when the output is a file or pipe (cluster logs, CI)."""
from __future__ import annotations

import logging
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("zoo")


def _fmt(loss: float | None, acc: float | None, tok_s: float) -> str:
    acc_s = "-" if acc is None else f"{acc:.3f}"
    loss_s = "-" if loss is None else f"{loss:.4f}"
    return f"loss {loss_s}  acc {acc_s}  {tok_s:,.0f} tok/s"


class Progress:
    def __init__(self, *, total: int, start: int = 0, enabled: bool = True):
        self.total, self.start, self.enabled = total, start, enabled
        self.tty = sys.stdout.isatty()
        self.t0 = self.last_log = time.time()
        self.tokens0: int | None = None
        self.bar: RichProgress | None = None

    def __enter__(self) -> "Progress":
        if self.enabled and self.tty:
            self.bar = RichProgress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                    TimeRemainingColumn(), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def update(self, step: int, *, loss: float, tokens: int, acc: float | None) -> None:
        if not self.enabled:
            return
        now = time.time()
        if self.tokens0 is None:
            self.tokens0, self.t0 = tokens, now
            return
        tok_s = (tokens - self.tokens0) / max(now - self.t0, 1e-9)
        info = _fmt(loss, acc, tok_s)
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif now - self.last_log > 30 or step == self.total:
            self.last_log = now
            rate = (step - self.start) / max(now - self.t0, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            print(f"step {step}/{self.total}  {info}  ETA {eta:,.0f}s", flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
