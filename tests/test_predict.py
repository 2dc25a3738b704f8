"""Ranking the stocks of one date with a finished run (`atft_core.predict --date`): the latest
date of a dataset has no forward target, and the ranking must not need one."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from atft_core.config import RunConfig
from atft_core.data.errors import DataError
from atft_core.predict import predict_run, rank_stocks
from atft_core.train import run_training

TINY = {"data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
        "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 0, 0),
        "train.days_per_step": 1}


@pytest.fixture(scope="module")
def deep_run(demo_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "deep"
    cfg = RunConfig().replace(**{"data.path": str(demo_dataset), **TINY})
    assert run_training(cfg, root) == "completed"
    return root


def test_latest_date_is_ranked_without_a_forward_target(deep_run, demo_dataset, tmp_path):
    frame = pl.read_parquet(demo_dataset)
    last = frame["Date"].max()
    assert frame.filter(pl.col("Date") == last)["target_1d"].null_count() == frame.filter(pl.col("Date") == last).height
    ranking = rank_stocks(deep_run, demo_dataset, "latest")
    table = ranking.table
    assert ranking.date == ranking.dataset_last_date == last
    assert table.height == frame.filter(pl.col("Date") == last).height
    assert table["rank"].to_list() == list(range(1, table.height + 1))
    assert table["score_1d"].to_list() == sorted(table["score_1d"].to_list(), reverse=True)
    assert set(table["decile"]) == set(range(1, 11)) and table["decile"][0] == 10 and table["decile"][-1] == 1
    assert {"Sector33Code", "q10_1d", "q50_1d", "q90_1d", "q90_5d"} <= set(table.columns)
    assert ranking.interval_columns() == ("q10_1d", "q90_1d")
    # The same scores as the every-day prediction over the whole dataset: the date's window is enough.
    predict_run(deep_run, demo_dataset, tmp_path / "all.parquet")
    everyday = pl.read_parquet(tmp_path / "all.parquet").filter(pl.col("Date") == last).sort("Code")
    mine = table.sort("Code")
    assert mine["Code"].to_list() == everyday["Code"].to_list()
    np.testing.assert_allclose(mine["score_1d"].to_numpy(), everyday["pred_1d"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_a_chosen_date_and_the_errors_that_name_the_date(deep_run, demo_dataset):
    dates = pl.read_parquet(demo_dataset)["Date"].unique().sort().to_list()
    chosen = dates[len(dates) // 2]
    assert rank_stocks(deep_run, demo_dataset, chosen.isoformat(), horizon=5).date == chosen
    weekend = next(d for d in (dates[10] + dt.timedelta(days=k) for k in range(1, 7)) if d not in set(dates))
    with pytest.raises(DataError, match=f"{weekend} is not a date of .* the last one before it is"):
        rank_stocks(deep_run, demo_dataset, weekend.isoformat())
    with pytest.raises(DataError, match="expected 'latest' or YYYY-MM-DD"):
        rank_stocks(deep_run, demo_dataset, "yesterday")
    with pytest.raises(DataError, match="days of history"):
        rank_stocks(deep_run, demo_dataset, dates[1].isoformat())   # the lookback does not fit yet
    with pytest.raises(FileNotFoundError, match="no checkpoints/best.pt"):
        rank_stocks(deep_run.parent, demo_dataset)


def test_baseline_ranks_without_quantiles(demo_dataset, tmp_path):
    root = tmp_path / "ridge"
    cfg = RunConfig().replace(**{"data.path": str(demo_dataset), **TINY, "model.kind": "ridge"})
    assert run_training(cfg, root) == "completed"
    ranking = rank_stocks(root, demo_dataset)
    assert ranking.interval_columns() is None and not [c for c in ranking.table.columns if c.startswith("q")]


def test_cli_prints_the_top_and_writes_the_table(deep_run, demo_dataset, tmp_path):
    out = tmp_path / "ranked.csv"
    done = subprocess.run([sys.executable, "-m", "atft_core.predict", "--run", str(deep_run), "--dataset",
                           str(demo_dataset), "--date", "latest", "--top", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ranked by score_1d" in done.stdout and pl.read_csv(out).height > 5
    bad = subprocess.run([sys.executable, "-m", "atft_core.predict", "--run", str(deep_run), "--dataset",
                          str(demo_dataset), "--date", "2016-13-01"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --date") and bad.stderr.count("\n") == 1
