"""zoo.leaderboard / zoo.plots / zoo.report on synthetic run directories with known answers."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from zoo import leaderboard, plots, report
from zoo.results import load

SLICES = {"L16": 16, "L64": 64}


def fake_acc(model: str, d: int, lr: float, seed: int, slice_len: int) -> float:
    """A deterministic accuracy: grows with d, best at lr=1e-3, worse at longer slices."""
    base = {"attention": 0.5, "based": 0.4}[model] + d / 1000 - abs(lr - 1e-3) * 10 - slice_len / 1000
    return round(base + 0.01 * seed, 6)


def write_run(root: Path, model: str, d: int, lr: float, seed: int, task: str = "mqar", status: str = "completed",
              task_params: dict | None = None, overall_extra: dict | None = None) -> None:
    run = root / f"{task}-{model}-{d}-{lr}-{seed}-{json.dumps(task_params or {}, sort_keys=True)}"
    run.mkdir(parents=True)
    shift = (task_params or {}).get("vocab_size", 0) / 100_000  # MAD settings score differently
    slices = {name: {"accuracy": fake_acc(model, d, lr, seed, L) + shift, "acc_micro": fake_acc(model, d, lr, seed, L) + shift,
                     "state_bytes": d * L * (8 if model == "attention" else 1), "slice_task": {"seq_len": L}}
              for name, L in SLICES.items()}
    overall = sum(s["accuracy"] for s in slices.values()) / len(slices)
    summary = {"run_id": run.name, "status": status, "task": task, "model": model, "seed": seed, "d_model": d,
               "lr": lr, "params": 100 * d, "state_bytes": d * 16 * (8 if model == "attention" else 1),
               "accuracy": overall, "overall": {"accuracy": overall, "acc_micro": overall, **(overall_extra or {})},
               "slices": slices,
               "hparams": {"seed": seed, "task": {"name": task, "seq_len": 16, **(task_params or {})},
                           "model": {"name": model, "d_model": d}, "train": {"lr": lr, "weight_decay": 0.1}}}
    (run / "summary.json").write_text(json.dumps(summary))
    evals = [{"step": s, "overall": {"accuracy": overall * s / 30}} for s in (10, 20, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))


@pytest.fixture
def results(tmp_path) -> Path:
    for model, d, lr, seed in itertools.product(("attention", "based"), (32, 64), (1e-4, 1e-3, 1e-2), (0, 1, 2)):
        write_run(tmp_path / "results", model, d, lr, seed)
    write_run(tmp_path / "results", "based", 64, 1e-3, 9, status="diverged")  # never counted
    return tmp_path / "results"


def test_best_takes_seed_mean_at_best_lr_per_slice(results):
    table = leaderboard.best(load(results))
    assert table.attrs["setting"] == ["model.d_model"]
    assert len(table) == 2 * 2 * 3  # (model, d) × (2 slices + overall)
    row = table[(table["model"] == "based") & (table["model.d_model"] == 64) & (table["slice"] == "L64")].iloc[0]
    accs = [fake_acc("based", 64, 1e-3, s, 64) for s in (0, 1, 2)]
    assert row["train.lr"] == 1e-3 and row["n_seeds"] == 3
    assert row["accuracy"] == pytest.approx(sum(accs) / 3)
    assert row["accuracy_sd"] == pytest.approx(pd.Series(accs).std())
    assert row["state_bytes"] == 64 * 64 and row["params"] == 6400 and row["slice_len"] == 64


def test_tuning_knobs_are_configurable(results):
    table = leaderboard.best(load(results), tuning=())  # nothing tuned: lr becomes part of the setting
    assert "train.lr" in table.attrs["setting"] and len(table) == 2 * 2 * 3 * 3


def test_wide_board_ranks_by_overall_and_formats_sd(results):
    board = leaderboard.wide(leaderboard.best(load(results)))
    assert list(board.columns) == ["model", "d_model", "params", "state_bytes", "L16", "L64", "overall", "best lr",
                                   "best weight_decay"]
    assert board.iloc[0]["model"] == "attention" and board.iloc[0]["d_model"] == 64
    assert "±" in board.iloc[0]["overall"] and "(n=3)" in board.iloc[0]["overall"]
    assert leaderboard.to_markdown(board).splitlines()[1].startswith("| --- |")


def test_pareto_front_keeps_only_undominated_points():
    points = pd.DataFrame({"state_bytes": [10, 20, 30, 40, 50], "accuracy": [0.2, 0.1, 0.5, 0.5, 0.9]})
    front = plots.pareto_front(points, "state_bytes", "accuracy")
    assert front["state_bytes"].tolist() == [10, 30, 50]


def test_figures_have_expected_axes(results):
    table = leaderboard.best(load(results))
    width = plots.accuracy_vs_width(table)
    (ax,) = width.axes
    assert ax.get_xlabel() == "Model dimension" and ax.get_ylabel() == "Accuracy" and ax.get_xscale() == "log"
    assert sorted(line.get_label() for line in ax.get_lines()) == ["attention", "based"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64"]
    state = plots.accuracy_vs_state(table)
    (ax,) = state.axes
    assert ax.get_xlabel() == "State size (bytes)" and ax.get_xscale() == "log"
    assert "Pareto front" in [line.get_label() for line in ax.get_lines()]
    length = plots.accuracy_vs_length(table)
    assert length.axes[0].get_xlabel() == "Sequence length"
    assert {tuple(line.get_xdata()) for line in length.axes[0].get_lines()} == {(16, 64)}
    curves = plots.learning_curves(table)
    assert curves.axes[0].get_xlabel() == "Step" and len(curves.axes[0].get_lines()) == 2
    assert width.get_size_inches()[0] == pytest.approx(plots.PANEL_W)
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 7


def test_width_figure_has_a_panel_per_sequence_length(tmp_path):
    for L, model, d in itertools.product((16, 32), ("attention", "based"), (32, 64)):
        write_run(tmp_path, model, d, 1e-3, 0, task_params={"seq_len": L})
    table = leaderboard.best(load(tmp_path))
    fig = plots.accuracy_vs_width(table)
    assert [ax.get_title() for ax in fig.axes] == ["L = 16", "L = 32"]


def test_model_styles_cover_every_model_config_and_fall_back_deterministically():
    conf_models = {p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml")}
    assert conf_models <= set(plots.MODEL_STYLE)
    assert len({c for c, _ in plots.MODEL_STYLE.values()}) == len(plots.MODEL_STYLE)  # distinct colours
    assert plots.style("new_mixer") == plots.style("new_mixer") and "color" in plots.style("new_mixer")


def test_report_writes_boards_and_figures(results, tmp_path, capsys):
    written = report.report(results, tmp_path / "out")
    names = {p.name for p in written["mqar"]}
    assert names == {"leaderboard_mqar.csv", "leaderboard_mqar.md", *(f"mqar_{f}.{ext}" for f in
                     ("width", "state", "length", "curves") for ext in ("png", "pdf"))}
    assert all(p.stat().st_size > 0 for p in written["mqar"])
    assert "mqar (best over train.lr, train.weight_decay)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--task copying: no runs"):
        report.report(results, tmp_path / "out", tasks=["copying"])


def test_mad_score_is_mean_over_settings_then_tasks(tmp_path):
    for task, values in (("in_context_recall", (16, 32)), ("memorization", (256, 512, 1024))):
        for vocab, lr, model in itertools.product(values, (1e-4, 1e-3), ("attention", "based")):
            write_run(tmp_path, model, 64, lr, 0, task=task, task_params={"vocab_size": vocab})
    write_run(tmp_path, "attention", 64, 1e-3, 0, task="selective_copy", task_params={"layout": "s4"})  # not MAD
    scores = leaderboard.mad_scores(load(tmp_path)).set_index("model")
    best = sum(fake_acc("attention", 64, 1e-3, 0, L) for L in SLICES.values()) / 2  # at lr 1e-3, before the shift
    recall, memorization = best + (16 + 32) / 2 / 1e5, best + (256 + 512 + 1024) / 3 / 1e5
    assert scores.loc["attention", "in_context_recall"] == pytest.approx(recall)
    assert scores.loc["attention", "memorization"] == pytest.approx(memorization)
    assert scores.loc["attention", "mad"] == pytest.approx((recall + memorization) / 2)
    assert scores.loc["attention", "n_settings"] == 5 and scores.loc["attention", "tasks"] == 2
    assert "selective_copy" not in scores and scores.loc["attention", "metric"] == "micro"
    assert leaderboard.mad_scores(load(tmp_path).query("task == 'selective_copy'")).empty


def test_mad_score_uses_the_runs_metric_or_the_one_asked(tmp_path, capsys):
    for vocab, lr in itertools.product((16, 32), (1e-4, 1e-3)):
        macro = {"metric": "macro_mad", "acc_macro_mad": 0.5 + lr * 100 - vocab / 1000}  # best at lr 1e-3, not 1e-4
        write_run(tmp_path / "runs", "attention", 64, lr, 0, task="in_context_recall",
                  task_params={"vocab_size": vocab}, overall_extra=macro)
    scores = leaderboard.mad_scores(load(tmp_path / "runs"))
    assert scores.loc[0, "metric"] == "macro_mad"
    assert scores.loc[0, "in_context_recall"] == pytest.approx(0.6 - (16 + 32) / 2 / 1000)
    micro = leaderboard.mad_scores(load(tmp_path / "runs"), metric="micro")
    assert micro.loc[0, "metric"] == "micro" and micro.loc[0, "mad"] != scores.loc[0, "mad"]
    assert leaderboard.mad_scores(load(tmp_path / "runs"), metric="acc_micro").equals(micro)
    report.report(tmp_path / "runs", tmp_path / "out", figures=False)
    assert (tmp_path / "out" / "mad.md").read_text().startswith("# MAD scores, metric `macro_mad`")
    write_run(tmp_path / "runs", "attention", 64, 1e-3, 1, task="in_context_recall", task_params={"vocab_size": 16},
              overall_extra={"metric": "micro"})
    with pytest.raises(ValueError, match=r"different headline metrics \(macro_mad, micro\).*--mad-metric"):
        leaderboard.mad_scores(load(tmp_path / "runs"))
    report.report(tmp_path / "runs", tmp_path / "out2", figures=False, mad_metric="micro")
    assert (tmp_path / "out2" / "mad.md").read_text().startswith("# MAD scores, metric `micro`")
