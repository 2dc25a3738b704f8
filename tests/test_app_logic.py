"""The Streamlit-free pieces behind the pages: config diff, error mapping, smoothing, evaluation."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from atft_core import evaluation
from atft_core.config import ConfigError, RunConfig
from ui import logic


def _metrics(rows):
    return pl.DataFrame(rows, schema=["run_id", "epoch", "step", "phase", "wall_time", "name", "value"], orient="row")


def test_config_diff_lists_only_differing_settings():
    a = RunConfig().to_dict()
    b = RunConfig().replace(**{"model.hidden_size": 8, "data.horizons": (1, 5)}).to_dict()
    rows = logic.config_diff({"a": a, "b": b})
    assert [r["setting"] for r in rows] == ["data.horizons", "model.hidden_size"]
    assert rows[1] == {"setting": "model.hidden_size", "a": str(RunConfig().model.hidden_size), "b": "8"}
    assert logic.config_diff({"a": a, "b": a}) == []


def test_errors_by_field_maps_each_problem_to_its_field():
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict({"model": {"hidden_size": -1}, "train": {"lr": -1.0}})
    problems = logic.errors_by_field(str(exc.value))
    assert "model.hidden_size" in problems and "train.lr" in problems
    assert logic.errors_by_field("loss: every term weight is 0") == {"": ["loss: every term weight is 0"]}


def test_requested_vs_effective_shows_resolved_auto_values():
    req = RunConfig().to_dict()
    eff = RunConfig().replace(**{"runtime.device": "cpu"}).to_dict()
    assert logic.requested_vs_effective(req, eff) == [{"setting": "runtime.device", "requested": "auto", "effective": "cpu"}]


def test_phase_boundaries_best_epoch_and_best_final_table():
    m = _metrics([
        ("r", 1, 10, 0, 1.0, "val/rank_ic", 0.01), ("r", 2, 20, 1, 2.0, "val/rank_ic", 0.05),
        ("r", 3, 30, 2, 3.0, "val/rank_ic", 0.03), ("r", 3, 30, 2, 3.0, "val/loss", 0.9),
        ("r", 2, 20, 1, 2.0, "val/loss", 0.8), ("r", 3, 30, -1, 4.0, "test/ic", 0.02),
    ])
    assert logic.phase_boundaries(m) == [{"phase": 1, "epoch": 2}, {"phase": 2, "epoch": 3}]
    assert logic.phase_boundaries(m, "step") == [{"phase": 1, "step": 20}, {"phase": 2, "step": 30}]
    assert logic.best_epoch(m) == 2
    rules = logic.chart_rules(m, ("baseline", "fan", "gat"), "step")
    assert [(r["step"], r["kind"]) for r in rules] == [(20.0, "phase start"), (30.0, "phase start"), (20.0, "best epoch")]
    assert rules[0]["label"] == "phase fan starts" and rules[2]["label"] == "best epoch (val/rank_ic): 2"
    table = logic.best_and_final(m, ["val/rank_ic", "val/loss", "test/ic"], {"r": "my run"}).to_dicts()
    assert table == [  # one column per run, by name; lower loss is better; a metric logged once: one row
        {"metric": "test/ic", "value": "value", "my run": "0.02 (epoch 3)"},
        {"metric": "val/loss", "value": "best", "my run": "0.8 (epoch 2)"},
        {"metric": "val/loss", "value": "final", "my run": "0.9 (epoch 3)"},
        {"metric": "val/rank_ic", "value": "best", "my run": "0.05 (epoch 2)"},
        {"metric": "val/rank_ic", "value": "final", "my run": "0.03 (epoch 3)"},
    ]


def test_compare_frame_keeps_raw_values_and_smooths_only_when_asked():
    m = _metrics([("a", e, e, 0, 100.0 + e, "val/ic", float(e % 2)) for e in range(1, 5)])
    raw = logic.compare_frame(m, "val/ic", "epoch", 0.0)
    assert raw["value"].to_list() == raw["smoothed"].to_list() == [1.0, 0.0, 1.0, 0.0]
    smoothed = logic.compare_frame(m, "val/ic", "seconds", 0.5)
    assert smoothed["value"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert smoothed["smoothed"].to_list() == [1.0, 0.5, 0.75, 0.375]
    assert smoothed["seconds"].to_list() == [0.0, 1.0, 2.0, 3.0]   # no start known: from the first metric


def test_compare_wall_time_starts_at_the_run_start():
    m = _metrics([("a", e, e, 0, 100.0 + 10 * e, "val/ic", 0.1) for e in range(1, 3)]
                 + [("b", 1, 1, 0, 500.0, "val/ic", 0.2)])
    frame = logic.compare_frame(m, "val/ic", "seconds", 0.0, starts={"a": 95.0})
    assert frame.filter(pl.col("run") == "a")["seconds"].to_list() == [15.0, 25.0]  # epoch 1 ended 15 s in
    assert frame.filter(pl.col("run") == "b")["seconds"].to_list() == [0.0]


def test_run_labels_actions_and_queued_note():
    runs = [{"id": "a", "name": "x"}, {"id": "b", "name": "x"}, {"id": "c", "name": ""}, {"id": "d", "name": "y"}]
    assert logic.run_labels(runs) == {"a": "x (a)", "b": "x (b)", "c": "c", "d": "y"}
    assert logic.default_compared([{"id": i, "status": s} for i, s in
                                   [("1", "running"), ("2", "completed"), ("3", "crashed"), ("4", "early_stopped"),
                                    ("5", "failed"), ("6", "stopped")]]) == ["2", "4"]
    assert logic.run_actions("running", True) == logic.run_actions("queued", False) == ("stop",)
    assert logic.run_actions("completed", True) == logic.run_actions("crashed", False) == ()
    assert logic.run_actions("stopped", True) == ("resume",) and logic.run_actions("stopped", True, trains=False) == ()
    assert logic.queued_note("waiting for a slot (1 of 1 busy)") == "Queued: waiting for a slot (1 of 1 busy)."
    assert "the trainer is starting" in logic.queued_note("")
    assert logic.tag_changes(["a", "b"], " b, c,, c") == (["c"], ["a"])


def test_filter_runs_eta_and_headlines():
    runs = [{"id": "a1", "name": "big", "tags": ["x"], "status": "completed", "dataset": "d1"},
            {"id": "b2", "name": "small", "tags": [], "status": "running", "dataset": "d2"}]
    assert [r["id"] for r in logic.filter_runs(runs, statuses=["running"])] == ["b2"]
    assert [r["id"] for r in logic.filter_runs(runs, tags=["x"], text="BIG")] == ["a1"]
    assert logic.filter_runs(runs, datasets=["d3"]) == []
    assert logic.eta_seconds(2, 6, 20.0) == 40.0 and logic.eta_seconds(0, 6, 5.0) is None
    assert logic.format_seconds(3725) == "1h 02m"
    assert logic.headline_metrics(["val/rank_ic", "val/rank_ic_5d", "val/pred_std", "lr"]) == ["val/rank_ic", "val/pred_std"]


def _predictions(n_days=30, n_stocks=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for split, offset in (("val", 0), ("test", n_days)):
        for d in range(n_days):
            signal = rng.normal(size=n_stocks)
            target = signal * 0.01 + rng.normal(scale=0.01, size=n_stocks)
            for s in range(n_stocks):
                rows.append((date(2021, 1, 1) + timedelta(days=offset + d), f"{1000 + s}", split, signal[s], target[s]))
    return pl.DataFrame(rows, schema=["Date", "Code", "split", "pred_1d", "target_1d"], orient="row")


def test_evaluate_run_matches_metrics_and_ranks_deciles(tmp_path):
    _predictions().write_parquet(tmp_path / "predictions.parquet")
    result = evaluation.evaluate_run(tmp_path, window=5)
    assert set(result) == {"val", "test"}
    ev = result["val"]
    assert ev.horizon == 1 and ev.daily.height == 30 and ev.deciles.height == evaluation.N_DECILES
    assert ev.daily["rank_ic"].mean() == pytest.approx(ev.summary["rank_ic"])
    assert ev.daily["rank_ic"].mean() > 0.3  # the signal is strong
    rolling = ev.daily["rank_ic_rolling"].to_list()
    assert rolling[4] == pytest.approx(float(np.mean(ev.daily["rank_ic"].to_list()[:5])))
    assert ev.daily["cum_long_short"].to_list()[-1] == pytest.approx(ev.daily["long_short"].sum())
    means = ev.deciles["mean_return"].to_list()
    assert means[-1] > means[0]


def test_evaluate_run_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions"):
        evaluation.evaluate_run(tmp_path, window=5)
    _predictions(n_days=3).write_parquet(tmp_path / "predictions.parquet")
    with pytest.raises(ValueError, match="horizon 5d"):
        evaluation.evaluate_run(tmp_path, window=5, horizon=5)


def test_paired_choices_put_baselines_first_and_keep_common_horizons():
    configs = {"deep": {"model": {"kind": "atft_gat_fan"}, "data": {"horizons": [1, 5, 10]}},
               "ridge": {"model": {"kind": "ridge"}, "data": {"horizons": [1, 5]}},
               "deep2": {"model": {"kind": "atft_gat_fan"}, "data": {"horizons": [1, 5, 20]}}}
    assert logic.paired_choices(configs) == (["ridge", "deep", "deep2"], [1, 5])
    assert logic.paired_choices({}) == ([], [])
