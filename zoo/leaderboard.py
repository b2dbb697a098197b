"""Leaderboards from the tidy results table (`zoo.results.load`): the best over the tuning grid.

A *setting* is everything a sweep varies within a model except the tuning knobs and the seed
(d_model, feature_dim, d_state, seq_len, ...). For each (task, model, setting, slice) the
leaderboard averages the seeds of every tuning point (lr, weight decay by default), keeps the point
with the best mean and reports it as mean ± sd over seeds, with parameter count and state size.
Each slice picks its own best tuning point, as the papers' figures do (max over lr per point).

    best = leaderboard.best(zoo.results.load("results/").query("task == 'mqar'"))
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .config import NON_SEMANTIC
from .metrics import HEADLINE

TUNING = ("train.lr", "train.weight_decay")
HPARAM_PREFIXES = ("task.", "model.", "train.")
# MAD (Poli et al. 2024): its six tasks; selective copy counts only in MAD's layout
MAD_TASKS = ("in_context_recall", "fuzzy_recall", "noisy_recall", "selective_copy", "compression", "memorization")


def hparam_columns(df: pd.DataFrame) -> list[str]:
    """Hyperparameter columns that change what a run computes (no `_target_`, device, progress...)."""
    return [c for c in df.columns if c.startswith(HPARAM_PREFIXES) and c not in NON_SEMANTIC
            and not c.endswith(("._target_", "._partial_")) and not c.startswith("task.slices.")]


def setting_columns(df: pd.DataFrame, tuning: Sequence[str] = TUNING) -> list[str]:
    """Hyperparameters that vary within at least one model's runs, minus the tuning knobs.

    Knobs that differ only between models (attention's num_heads vs GLA's) belong to the model's
    identity, not to its setting, and are left out."""
    columns = []
    for column in hparam_columns(df):
        if column in tuning:
            continue
        counts = df.groupby("model")[column].agg(lambda s: s.astype(str).nunique())
        if (counts > 1).any():
            columns.append(column)
    return columns


def completed_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of completed runs (diverged and failed runs never win a leaderboard)."""
    if df.empty or "status" not in df:
        return df.iloc[0:0]
    return df[df["status"] == "completed"]


def best(df: pd.DataFrame, tuning: Sequence[str] = TUNING, metric: str = "accuracy") -> pd.DataFrame:
    """Per (task, model, setting, slice): the tuning point with the best seed-mean `metric`.

    Columns: task, model, the setting columns, slice, `metric` (mean), `metric`_sd, n_seeds, the
    chosen tuning values, params, state_bytes, slice_len and run_dir (one run of the winning point)."""
    runs = completed_runs(df)
    if runs.empty:
        return pd.DataFrame()
    tuning = [c for c in tuning if c in runs]
    setting = setting_columns(runs, tuning)
    keys = ["task", "model", *setting, "slice"]
    runs = runs.assign(slice_len=runs.get("slice_task.seq_len"))
    points = runs.groupby([*keys, *tuning], dropna=False, sort=True).agg(
        **{metric: (metric, "mean"), f"{metric}_sd": (metric, "std"), "n_seeds": ("seed", "nunique"),
           "params": ("params", "first"), "state_bytes": ("state_bytes", "first"),
           "slice_len": ("slice_len", "first"), "run_dir": ("run_dir", "first")}).reset_index()
    score = points[metric].fillna(-math.inf)
    winners = score.groupby([points[k].astype(str) for k in keys], sort=False).idxmax()
    table = points.loc[winners.values].reset_index(drop=True)
    table.attrs.update(setting=setting, tuning=tuning, metric=metric)
    return table


def leaderboards(df: pd.DataFrame, tuning: Sequence[str] = TUNING, metric: str = "accuracy") -> dict[str, pd.DataFrame]:
    """`best` for every task in the table, keyed by task name (settings are found per task)."""
    return {task: best(rows, tuning, metric) for task, rows in df.groupby("task", sort=True)}


def fmt_score(mean: float, sd: float, n: int) -> str:
    """0.912, or 0.912 ± 0.010 (n=3) when there are several seeds."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.3f}" if n <= 1 or sd is None or math.isnan(sd) else f"{mean:.3f} ± {sd:.3f} (n={n})"


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, setting), one column per slice (`overall` last), ranked by overall."""
    if table.empty:
        return table
    metric, setting, tuning = table.attrs["metric"], table.attrs["setting"], table.attrs["tuning"]
    rows = {}
    for _, r in table.iterrows():
        key = (r["model"], *(r[c] for c in setting))
        row = rows.setdefault(key, {"model": r["model"], **{short(c): r[c] for c in setting}})
        row[r["slice"]] = fmt_score(r[metric], r[f"{metric}_sd"], int(r["n_seeds"]))
        if r["slice"] == "overall":
            row.update({"params": int(r["params"]), "state_bytes": int(r["state_bytes"]), "_rank": r[metric],
                        **{f"best {short(c)}": r[c] for c in tuning}})
    slices = [s for s in dict.fromkeys(table["slice"]) if s != "overall"] + ["overall"]
    out = pd.DataFrame(rows.values()).sort_values("_rank", ascending=False, na_position="last")
    front = ["model", *(short(c) for c in setting), "params", "state_bytes"]
    tuned = [f"best {short(c)}" for c in tuning]
    return out[[c for c in [*front, *slices, *tuned] if c in out]].reset_index(drop=True)


def short(column: str) -> str:
    """`model.mixer.feature_dim` -> `feature_dim`; `task.seq_len` -> `seq_len`; `train.lr` -> `lr`."""
    return column.rsplit(".", 1)[-1]


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no `tabulate` dependency)."""
    cells = [[str(c) for c in table.columns]] + [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "| " + " | ".join("---" for _ in table.columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def mad_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Completed `overall` rows of MAD's six tasks (selective copy only with layout=mad)."""
    runs = completed_runs(df)
    if runs.empty:
        return runs
    is_mad = runs["task"].isin(MAD_TASKS) & runs["slice"].eq("overall")
    if "task.layout" in runs:
        is_mad &= (runs["task"] != "selective_copy") | runs["task.layout"].eq("mad")
    else:
        is_mad &= runs["task"] != "selective_copy"
    return runs[is_mad]


def mad_metric(runs: pd.DataFrame) -> str:
    """The headline metric the MAD runs were evaluated with (`train.metric`, else their task's);
    runs that predate the record were scored `micro`."""
    names = set(runs["metric"].dropna()) if "metric" in runs else set()
    if len(names) > 1:
        raise ValueError(f"the MAD runs have different headline metrics ({', '.join(sorted(names))}); choose one: "
                         f"mad_scores(metric=...) or python -m zoo.report --mad-metric {'|'.join(sorted(names))}")
    return names.pop() if names else "micro"


def mad_scores(df: pd.DataFrame, tuning: Sequence[str] = TUNING, metric: str | None = None) -> pd.DataFrame:
    """MAD scores (P7): per (model, task setting) the best (lr, wd) run; task score = unweighted
    mean over the task's settings; `mad` = unweighted mean over the tasks present. One row per
    model, with `n_settings`, `tasks` (how many of the six) and `metric` recorded.

    `metric`: micro | macro_mad (or its column, acc_micro | acc_macro_mad); None = the runs' own
    headline metric (`mad_metric`)."""
    runs = mad_runs(df)
    if runs.empty:
        return pd.DataFrame()
    name = {v: k for k, v in HEADLINE.items()}.get(metric, metric) if metric else mad_metric(runs)
    if name not in ("micro", "macro_mad"):
        raise ValueError(f"MAD score metric {name!r}: expected micro or macro_mad (acc_micro | acc_macro_mad)")
    metric = HEADLINE[name]
    if metric not in runs:
        raise ValueError(f"no {metric} in these runs' summaries (runs older than acc_macro_mad); "
                         f"score them with metric='micro'")
    per_task = []
    for task, rows in runs.groupby("task"):
        table = best(rows, tuning, metric)
        model_knobs = [c for c in table.attrs["setting"] if c.startswith("model.")]
        label = table[["model", *model_knobs]].astype(str).agg(" ".join, axis=1)
        scores = table.groupby(label)[metric].agg(["mean", "size"]).rename(columns={"mean": task, "size": f"n_{task}"})
        per_task.append(scores)
    out = pd.concat(per_task, axis=1)
    task_cols = [t for t in MAD_TASKS if t in out]
    out["mad"] = out[task_cols].mean(axis=1, skipna=False)
    out["n_settings"] = out[[f"n_{t}" for t in task_cols]].sum(axis=1).astype(int)
    out["tasks"] = len(task_cols)
    out["metric"] = name
    out = out.drop(columns=[f"n_{t}" for t in task_cols]).rename_axis("model").reset_index()
    return out.sort_values("mad", ascending=False, na_position="last").reset_index(drop=True)
