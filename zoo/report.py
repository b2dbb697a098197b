"""`python -m zoo.report [DIR] [--task T ...] [--out OUT] [--tune train.lr train.weight_decay]`

Reads every run under DIR (`zoo.results.load`) and writes to OUT (default DIR/report/):
- `leaderboard_<task>.csv` (tidy: one row per model, setting and slice) and `.md` (one row per model
  and setting, a column per slice), also printed as a table;
- `figures/<task>_<figure>.png|pdf`: accuracy vs width, vs state size, vs length, learning curves;
- `mad.csv|md`: MAD scores, when runs of MAD's tasks are present (with the metric they use: the
  runs' headline metric, or `--mad-metric micro|macro_mad`).
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import leaderboard, plots
from .results import load

log = logging.getLogger("zoo.report")
FIGURES = {"width": plots.accuracy_vs_width, "state": plots.accuracy_vs_state,
           "length": plots.accuracy_vs_length, "curves": plots.learning_curves}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m zoo.report", description=__doc__.split("\n\n")[1])
    parser.add_argument("dir", nargs="?", default="results", help="results directory (default: results)")
    parser.add_argument("--task", nargs="+", help="only these tasks (default: every task found)")
    parser.add_argument("--out", help="output directory (default: DIR/report)")
    parser.add_argument("--tune", nargs="+", default=list(leaderboard.TUNING),
                        help="knobs to take the best over (default: train.lr train.weight_decay)")
    parser.add_argument("--metric", default="accuracy", help="score column (default: accuracy)")
    parser.add_argument("--mad-metric", choices=["micro", "macro_mad"],
                        help="metric of the MAD score (default: the runs' headline metric, train.metric)")
    parser.add_argument("--no-figures", action="store_true", help="leaderboards only")
    return parser.parse_args(argv)


def wanted_figures(table: pd.DataFrame) -> list[str]:
    """The figures that say something for this table (width needs several d_model values...)."""
    setting = table.attrs["setting"]
    names = ["state", "curves"]
    if "model.d_model" in setting:
        names.insert(0, "width")
    if table.loc[table["slice"] != "overall", "slice_len"].nunique() > 1:
        names.insert(-1, "length")
    return names


def save_figure(fig, path: Path) -> list[Path]:
    """`path`.png (300 dpi) and `path`.pdf."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, dpi=300)
    return out


def write_leaderboard(task: str, table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """CSV (tidy) and markdown (wide) for one task; returns the wide table."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"leaderboard_{task}.csv", index=False)
    board = leaderboard.wide(table)
    tuned = ", ".join(table.attrs["tuning"]) or "nothing"
    header = f"# {task}: best over {tuned}; metric `{table.attrs['metric']}`, mean ± sd over seeds\n\n"
    (out / f"leaderboard_{task}.md").write_text(header + leaderboard.to_markdown(board))
    return board


def print_table(title: str, board: pd.DataFrame) -> None:
    """A rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in board.columns:
        table.add_column(str(column), justify="left" if column == "model" else "right", no_wrap=True,
                         max_width=24, overflow="ellipsis")
    for row in board.itertuples(index=False):
        table.add_row(*(leaderboard._cell(v) for v in row))
    Console(width=200).print(table)


def report(results_dir: str | Path, out: str | Path | None = None, tasks: Sequence[str] | None = None,
           tuning: Sequence[str] = leaderboard.TUNING, metric: str = "accuracy", figures: bool = True,
           mad_metric: str | None = None) -> dict[str, list[Path]]:
    """Write leaderboards, figures and MAD scores; returns the written files by task (and `mad`)."""
    df = load(results_dir)
    if df.empty:
        raise SystemExit(f"no runs under {results_dir} (no summary.json files); run `python -m zoo` first")
    out = Path(out) if out else Path(results_dir) / "report"
    if tasks:
        missing = sorted(set(tasks) - set(df["task"]))
        if missing:
            raise SystemExit(f"--task {' '.join(missing)}: no runs; tasks with runs: {', '.join(sorted(set(df['task'])))}")
        df = df[df["task"].isin(tasks)]
    written: dict[str, list[Path]] = {}
    for task, table in leaderboard.leaderboards(df, tuning, metric).items():
        if table.empty:
            log.warning(f"{task}: no completed runs")
            continue
        board = write_leaderboard(task, table, out)
        print_table(f"{task} (best over {', '.join(table.attrs['tuning'])})", board)
        written[task] = [out / f"leaderboard_{task}.csv", out / f"leaderboard_{task}.md"]
        for name in wanted_figures(table) if figures else []:
            written[task] += save_figure(FIGURES[name](table), out / "figures" / f"{task}_{name}")
    written.update(write_mad(df, out, tuning, mad_metric))
    return written


def write_mad(df: pd.DataFrame, out: Path, tuning: Sequence[str], metric: str | None = None) -> dict[str, list[Path]]:
    """mad.csv / mad.md when MAD runs are present; `metric` as in `leaderboard.mad_scores`."""
    try:
        scores = leaderboard.mad_scores(df, tuning, metric)
    except ValueError as e:  # e.g. runs with different metrics: the leaderboards stand, the score waits
        log.warning(f"MAD score not written: {e}")
        return {}
    if scores.empty:
        return {}
    metric = scores["metric"].iloc[0]
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "mad.csv", index=False)
    (out / "mad.md").write_text(f"# MAD scores, metric `{metric}` (per setting best over (lr, wd); task = mean over "
                                "settings; mad = mean over tasks)\n\n" + leaderboard.to_markdown(scores))
    print_table(f"MAD ({metric})", scores)
    return {"mad": [out / "mad.csv", out / "mad.md"]}


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    written = report(args.dir, args.out, args.task, args.tune, args.metric, not args.no_figures, args.mad_metric)
    n_files = sum(len(v) for v in written.values())
    log.info(f"wrote {n_files} files to {Path(args.out) if args.out else Path(args.dir) / 'report'}")


if __name__ == "__main__":
    main()
