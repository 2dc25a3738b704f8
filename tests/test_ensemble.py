"""Comparing and combining finished runs: the ensemble arithmetic, a real seed ensemble read
back like any run, every mismatch refused before anything is written, and the paired t of
daily RankIC against a reference run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from atft_core import metrics, runs
from atft_core.config import RunConfig
from atft_core.evaluation import daily_rank_ic_frame, load_predictions, paired_comparison
from atft_core.run_files import RunFiles, read_json, update_status
from atft_core.runs import cli, launch, queue
from atft_core.runs.ensemble import ENSEMBLE_KIND, EnsembleError, build_ensemble, combine_predictions, split_arrays
from atft_core.train import run_training

TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 0, 0),
    "train.days_per_step": 4, "data.horizons": (1, 5),
}


def frame(preds: dict[tuple[str, str], float], split: str = "val") -> pl.DataFrame:
    """A predictions table from {(date, code): prediction}; the target is minus the prediction."""
    rows = [{"Date": dt.date.fromisoformat(d), "Code": c, "split": split, "pred_1d": p, "target_1d": -p}
            for (d, c), p in preds.items()]
    return pl.DataFrame(rows)


def test_combine_is_the_mean_of_per_date_zscores():
    a = frame({("2024-01-04", "A"): 1.0, ("2024-01-04", "B"): 2.0, ("2024-01-04", "C"): 3.0,
               ("2024-01-05", "A"): 5.0, ("2024-01-05", "B"): 5.0, ("2024-01-05", "C"): 5.0})
    # Same ranking as `a` on day 1 at 1000x the scale, the reverse on day 2; stock D only here.
    b = frame({("2024-01-04", "A"): 1000.0, ("2024-01-04", "B"): 2000.0, ("2024-01-04", "C"): 3000.0,
               ("2024-01-05", "A"): 3.0, ("2024-01-05", "B"): 2.0, ("2024-01-05", "C"): 1.0,
               ("2024-01-05", "D"): 9.0})
    out = combine_predictions([a, b], [1])
    assert out.columns == ["Date", "Code", "split", "pred_1d", "target_1d"]
    assert out.height == 6                                  # D is missing from `a`: dropped
    day1 = out.filter(pl.col("Date") == dt.date(2024, 1, 4))["pred_1d"].to_list()
    assert day1 == pytest.approx([-1.0, 0.0, 1.0])          # equal z-scores whatever the scale
    day2 = out.filter(pl.col("Date") == dt.date(2024, 1, 5))["pred_1d"].to_list()
    assert day2 == pytest.approx([0.5, 0.0, -0.5])          # z over A-C only; `a` is constant that day: 0
    assert out["target_1d"].to_list() == a.sort("Date", "Code")["target_1d"].to_list()


@pytest.fixture(scope="module")
def members(tmp_path_factory, demo_dataset):
    """A runs folder with real finished runs: two seeds, a ridge, and runs that do not fit them."""
    root = tmp_path_factory.mktemp("runs")
    base = RunConfig().replace(**{"data.path": str(demo_dataset), **TINY})
    variants = {
        "seed-0": {}, "seed-1": {"runtime.seed": 1}, "ridge": {"model.kind": "ridge"},
        "one-horizon": {"model.kind": "ridge", "data.horizons": (1, 5, 10)},
        "other-split": {"model.kind": "ridge", "data.train_fraction": 0.6},
    }
    for run_id, changes in variants.items():
        assert run_training(base.replace(**changes), root / run_id) == "completed", run_id
    return root


def listing(root) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_seed_ensemble_is_a_run_the_app_reads_like_any_other(members):
    run_id = build_ensemble(members, ["seed-0", "seed-1"], name="two seeds", tags=["ens"])
    try:
        files = RunFiles(members / run_id)
        summary = runs.run_state(members, run_id)
        assert (summary.status, summary.model_kind, summary.name, summary.tags) == ("completed", ENSEMBLE_KIND, "two seeds", ["ens"])
        saved = read_json(files.config)
        assert saved["ensemble"]["members"] == ["seed-0", "seed-1"] and saved["ensemble"]["member_seeds"] == [0, 1]
        assert saved["config"] == read_json(RunFiles(members / "seed-0").config)["config"]

        # The predictions are the members' combined, and the logged metrics are theirs.
        parts = [load_predictions(RunFiles(members / m).predictions) for m in ("seed-0", "seed-1")]
        expected = combine_predictions(parts, [1, 5])
        got = load_predictions(files.predictions)
        assert got.equals(expected)
        pred, target = split_arrays(got, "val", [1, 5])
        own = metrics.summarize(pred[..., 0], target[..., 0], np.isfinite(pred[..., 0]) & np.isfinite(target[..., 0]))
        logged = runs.query_metrics(members, [run_id])
        value = dict(zip(logged["name"].to_list(), logged["value"].to_list()))
        assert value["val/rank_ic"] == pytest.approx(own["rank_ic"])
        assert {"val/rank_ic_5d", "test/rank_ic", "test/ic_5d", "val/best_rank_ic"} <= set(value)
        assert summary.best_rank_ic == pytest.approx(own["rank_ic"])
        # A deep model and a baseline combine too (same dataset, horizons and dates).
        assert build_ensemble(members, ["seed-0", "ridge"]) in listing(members)

        assert not files.checkpoints.exists()
        with pytest.raises(runs.RunError, match="no checkpoints/last.pt"):
            queue.resume_run(members, run_id)
        with pytest.raises(EnsembleError, match="itself an ensemble"):
            build_ensemble(members, [run_id, "seed-0"])
    finally:
        for name in listing(members):   # the other tests expect the members only
            if (read_json(RunFiles(members / name).run_info) or {}).get("kind") == ENSEMBLE_KIND:
                launch.delete_run(members, name)


@pytest.mark.parametrize("ids, message", [
    (["seed-0"], "at least 2 different runs"),
    (["seed-0", "seed-0", "seed-1"], "listed twice"),
    (["seed-0", "nowhere"], "no run 'nowhere'"),
    (["seed-0", "one-horizon"], "differs from seed-0 in data.horizons"),
    (["ridge", "other-split"], "predicts other (test|val) dates"),
    (["seed-0", "../seed-1"], "run id"),
])
def test_members_that_do_not_fit_are_refused_and_nothing_is_written(members, ids, message):
    before = listing(members)
    with pytest.raises((EnsembleError, ValueError), match=message):
        build_ensemble(members, ids)
    assert listing(members) == before


def test_unfinished_member_is_refused(members):
    files = RunFiles(members / "seed-1")
    state = read_json(files.status)["state"]
    update_status(files, state="running")
    try:
        with pytest.raises(EnsembleError, match="seed-1 is running"):
            build_ensemble(members, ["seed-0", "seed-1"])
    finally:
        update_status(files, state=state)


def test_cli_prints_the_id_or_one_line_of_error(members, capsys):
    assert cli.main(["--runs-dir", str(members), "ensemble", "seed-0", "one-horizon"]) == 2
    assert "data.horizons" in capsys.readouterr().err
    assert cli.main(["--runs-dir", str(members), "ensemble", "seed-0", "seed-1", "--name", "cli"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert runs.run_state(members, run_id).model_kind == ENSEMBLE_KIND
    launch.delete_run(members, run_id)


def test_paired_comparison_is_the_paired_t_of_the_daily_rank_ics(members):
    table = paired_comparison(members, ["seed-0", "seed-1", "ridge"], "ridge", "val", 5)
    assert table["run"].to_list() == ["seed-0", "seed-1"]
    ref = daily_rank_ic_frame(load_predictions(RunFiles(members / "ridge").predictions), "val", 5)
    own = daily_rank_ic_frame(load_predictions(RunFiles(members / "seed-1").predictions), "val", 5)
    both = own.join(ref, on="Date", suffix="_ref")
    t, n = metrics.paired_t(both["rank_ic"].to_list(), both["rank_ic_ref"].to_list())
    row = table.row(1, named=True)
    assert (row["days"], row["t"]) == (n, pytest.approx(t)) and n > 10
    assert row["difference"] == pytest.approx(both["rank_ic"].mean() - both["rank_ic_ref"].mean())
    with pytest.raises(ValueError, match="no predictions for horizon 10d"):
        paired_comparison(members, ["seed-0", "ridge"], "ridge", "val", 10)
