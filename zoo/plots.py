"""Paper figures from a leaderboard table (`zoo.leaderboard.best`): one function per figure, each
returning a matplotlib Figure sized for a paper column (≈3.3 in per panel, fonts ≥ 7 pt).

- `accuracy_vs_width`: accuracy vs d_model, one panel per sequence length (Zoology Fig. 2);
- `accuracy_vs_state`: accuracy vs recurrent state in bytes, log x, Pareto front (Based Fig. 2);
- `accuracy_vs_length`: per-slice accuracy vs slice length (length extrapolation);
- `learning_curves`: overall accuracy vs step, read from each best run's metrics.jsonl.

Every architecture keeps one colour and marker across figures (`MODEL_STYLE`, else a deterministic
fallback from the name). No W&B, no run ids: the table is the only input.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .results import read_metrics

PANEL_W, PANEL_H = 3.3, 2.5   # inches: one paper column per panel
RC = {"font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 7,
      "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 4}
MODEL_STYLE: dict[str, tuple[str, str]] = {   # name -> (colour, marker)
    "attention": ("#000000", "o"), "sliding_window": ("#7f7f7f", "v"), "cope": ("#4d4d4d", "P"),
    "linear_attention": ("#9467bd", "^"), "based": ("#d62728", "s"), "based_zoology": ("#ff9896", "s"),
    "base_conv": ("#8c564b", "D"), "hybrid": ("#c49c94", "X"), "retnet": ("#17becf", "<"),
    "gla": ("#1f77b4", ">"), "deltanet": ("#2ca02c", "h"), "gated_deltanet": ("#98df8a", "H"),
    "rwkv6": ("#bcbd22", "p"), "rwkv": ("#dbdb8d", "p"), "s4d": ("#aec7e8", "d"),
    "h3": ("#ff7f0e", "*"), "hyena": ("#e377c2", "^"), "striped_hyena": ("#f7b6d2", "v"),
    "mh_hyena": ("#c51b7d", "<"),
    "m2": ("#c5b0d5", "8"), "mamba": ("#2f4b7c", "o"), "mamba2": ("#665191", "D"),
    "mlgru": ("#ffbb78", "x"), "lstm": ("#a05195", "+"),
    "rwkv7": ("#808000", "P"), "nsa": ("#00796b", "d"),
}
FALLBACK_COLOURS = ("#003f5c", "#58508d", "#bc5090", "#ff6361", "#ffa600", "#7a5195", "#ef5675", "#4c9f70")
FALLBACK_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")


def style(model: str) -> dict:
    """Colour and marker of an architecture: fixed for known names, a stable hash otherwise."""
    if model in MODEL_STYLE:
        colour, marker = MODEL_STYLE[model]
    else:
        h = zlib.crc32(model.encode())
        colour, marker = FALLBACK_COLOURS[h % len(FALLBACK_COLOURS)], FALLBACK_MARKERS[(h // 8) % len(FALLBACK_MARKERS)]
    return {"color": colour, "marker": marker}


def panels(n: int, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    """A 1×n row of paper-column panels, fonts set from RC."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(PANEL_W * n, PANEL_H), layout="constrained")
        axes = fig.subplots(1, n, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def variants(table: pd.DataFrame, exclude: Sequence[str]) -> pd.Series:
    """A label per row: the model name plus its varying knobs other than `exclude` (the x-axis)."""
    knobs = [c for c in table.attrs.get("setting", []) if c not in exclude]
    if not knobs:
        return table["model"].astype(str)
    parts = table[knobs].apply(lambda r: ", ".join(f"{c.rsplit('.', 1)[-1]}={_num(v)}" for c, v in r.items()
                                                   if pd.notna(v)), axis=1)
    return table["model"].astype(str) + parts.map(lambda p: f" ({p})" if p else "")


def log2_axis(ax: Axes, values: pd.Series) -> None:
    """Log-2 x axis with a plain tick label at each value (64, 128, ... not 2^6)."""
    ticks = sorted({float(v) for v in values.dropna()})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [_num(int(t)) if t.is_integer() else _num(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_series(ax: Axes, rows: pd.DataFrame, x: str, y: str, labels: pd.Series) -> None:
    """One line per label (sorted by x), coloured by architecture, variants by line style."""
    seen: dict[str, int] = {}
    for label, group in rows.groupby(labels.loc[rows.index], sort=True):
        model = group["model"].iloc[0]
        dash = LINESTYLES[seen.setdefault(model, 0) % len(LINESTYLES)]
        seen[model] += 1
        group = group.sort_values(x)
        ax.plot(group[x], group[y], linestyle=dash, label=label, **style(model))


def finish(fig: Figure, axes: list[Axes], xlabel: str, ylabel: str) -> Figure:
    """Labels, a 0..1 accuracy axis, one legend below the panels."""
    import matplotlib

    with matplotlib.rc_context(RC):
        for ax in axes:
            ax.set_xlabel(xlabel)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3, linewidth=0.5)
        axes[0].set_ylabel(ylabel)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h), labels.append(l)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3 * len(axes)), frameon=False)
    return fig


def by_length(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(panel title, rows) per training sequence length, or one untitled panel."""
    if "task.seq_len" in table.attrs.get("setting", []):
        return [(f"L = {int(L)}", rows) for L, rows in table.groupby("task.seq_len", sort=True)]
    return [("", table)]


def accuracy_vs_width(table: pd.DataFrame, slice: str = "overall") -> Figure:
    """Accuracy vs model dimension, one panel per sequence length (Zoology Fig. 2)."""
    metric = table.attrs.get("metric", "accuracy")
    rows = table[table["slice"] == slice]
    labels = variants(rows, exclude=("model.d_model", "task.seq_len", "task.num_kv_pairs", "train.batch_size"))
    groups = by_length(rows)
    fig, axes = panels(len(groups))
    for ax, (title, part) in zip(axes, groups):
        x = "model.d_model" if "model.d_model" in part else "params"
        plot_series(ax, part, x, metric, labels)
        log2_axis(ax, part[x])
        ax.set_title(title)
    return finish(fig, axes, "Model dimension", "Accuracy")


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points not dominated by one with less-or-equal x and higher y, sorted by x."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    return ordered[ordered[y] > ordered[y].cummax().shift(fill_value=-float("inf"))]


def accuracy_vs_state(table: pd.DataFrame, slice: str = "overall") -> Figure:
    """Accuracy vs recurrent state size (bytes, log x) with the Pareto front (Based Fig. 2)."""
    metric = table.attrs.get("metric", "accuracy")
    rows = table[(table["slice"] == slice) & table["state_bytes"].gt(0)]
    groups = by_length(rows)
    fig, axes = panels(len(groups))
    for ax, (title, part) in zip(axes, groups):
        for model, group in part.groupby("model", sort=True):
            ax.scatter(group["state_bytes"], group[metric], label=model, s=14, **style(model))
        front = pareto_front(part.dropna(subset=[metric]), "state_bytes", metric)
        ax.step(front["state_bytes"], front[metric], where="post", color="0.4", linestyle="--", linewidth=0.8,
                label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
    return finish(fig, axes, "State size (bytes)", "Accuracy")


def best_settings(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each model's best setting (by overall score), every slice."""
    metric, setting = table.attrs.get("metric", "accuracy"), table.attrs.get("setting", [])
    overall = table[table["slice"] == "overall"].sort_values(metric, ascending=False, na_position="last")
    winners = overall.drop_duplicates("model")
    keys = ["model", *setting]
    chosen = set(winners[keys].astype(str).itertuples(index=False, name=None))
    mask = table[keys].astype(str).apply(tuple, axis=1).isin(chosen)
    return table[mask]


def accuracy_vs_length(table: pd.DataFrame) -> Figure:
    """Per-slice accuracy vs slice sequence length for each model's best setting (extrapolation)."""
    metric = table.attrs.get("metric", "accuracy")
    rows = best_settings(table)
    rows = rows[(rows["slice"] != "overall") & rows["slice_len"].notna()]
    fig, (ax,) = panels(1)
    plot_series(ax, rows, "slice_len", metric, rows["model"].astype(str))
    log2_axis(ax, rows["slice_len"])
    return finish(fig, [ax], "Sequence length", "Accuracy")


def learning_curves(table: pd.DataFrame, x: str = "step") -> Figure:
    """Overall accuracy vs training step for each model's best setting (from metrics.jsonl)."""
    rows = best_settings(table)
    rows = rows[rows["slice"] == "overall"]
    fig, (ax,) = panels(1)
    for _, row in rows.sort_values("model").iterrows():
        records = read_metrics(f"{row['run_dir']}/metrics.jsonl")
        xs = [r[x] for r in records]
        ys = [r["overall"]["accuracy"] for r in records]
        ax.plot(xs, ys, label=row["model"], markevery=max(1, len(xs) // 8), **style(row["model"]))
    return finish(fig, [ax], "Step" if x == "step" else x.capitalize(), "Accuracy")
