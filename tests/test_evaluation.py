"""A finished run's evaluation: intervals, costs and breakdowns from its files; the paired
comparison after costs; the `python -m atft_core.evaluate` command line."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from atft_core import costs, evaluation
from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
N_STOCKS, N_DAYS = 40, 120
SECTORS = ("7050", "3650", "9050", "5250")


def _frame(signal: float, seed: int) -> pl.DataFrame:
    """Predictions of a 40-stock market over 120 days (60 validation, 60 test), horizons 1 and 5."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset("2023-10-02", np.arange(N_DAYS), roll="forward").astype("datetime64[D]")
    market = np.random.default_rng(0).normal(0, 0.02, (N_DAYS, N_STOCKS))        # shared by every run
    cols = {"Date": np.repeat(dates, N_STOCKS), "Code": np.tile([f"{1000 + c}0" for c in range(N_STOCKS)], N_DAYS),
            "split": np.repeat(np.where(np.arange(N_DAYS) < N_DAYS // 2, "val", "test"), N_STOCKS)}
    for h in (1, 5):
        target = np.stack([market[d:d + h].sum(axis=0) for d in range(N_DAYS)])     # overlapping h-day sums
        cols[f"pred_{h}d"] = (signal * target + rng.normal(0, 0.02, target.shape)).ravel()
        cols[f"target_{h}d"] = target.ravel()
    return pl.DataFrame(cols).with_columns(pl.col("Date").cast(pl.Date))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    dataset = root.parent / "dataset.parquet"
    codes = [f"{1000 + c}0" for c in range(N_STOCKS)]
    pl.DataFrame({"Date": [dt.date(2023, 10, 2)] * N_STOCKS, "Code": codes,
                  "Sector33Code": [SECTORS[c % len(SECTORS)] for c in range(N_STOCKS)]}).write_parquet(dataset)
    for name, signal, kind in (("model", 1.0, "atft_gat_fan"), ("factor", 0.3, "reversal_1d"), ("noise", 0.0, "ridge")):
        files = RunFiles(root / name)
        files.root.mkdir()
        cfg = RunConfig().replace(**{"data.path": str(dataset), "model.kind": kind}).to_dict()
        write_json_atomic(files.config, {"config": cfg, "requested": cfg, "resolved": {}})
        _frame(signal, seed={"model": 1, "factor": 2, "noise": 3}[name]).write_parquet(files.predictions)
    return root


def test_evaluate_run_gives_intervals_costs_and_breakdowns(runs_dir):
    results = evaluation.evaluate_run(runs_dir / "model", window=5, horizon=5, cost_bps=(0, 10))
    assert list(results) == ["val", "test"]
    ev = results["val"]
    assert ev.horizon == 5 and ev.rank_ic.block == 10 and ev.rank_ic.low < ev.rank_ic.value < ev.rank_ic.high
    assert ev.rank_ic.value == pytest.approx(ev.summary["rank_ic"])
    assert ev.costs.days == N_DAYS // 2 - 5 and [lv.cost_bps for lv in ev.costs.levels] == [0.0, 10.0]
    assert ev.costs.levels[1].mean_daily < ev.costs.levels[0].mean_daily
    assert set(ev.cumulative["cost_bps"]) == {0.0, 10.0}
    last = ev.cumulative.filter(pl.col("cost_bps") == 10.0)["cum_return"][-1]
    assert last == pytest.approx(ev.costs.levels[1].mean_daily * ev.costs.days)   # sum of net return per day
    assert ev.years["period"].unique().sort().to_list() == ["2023"]
    assert ev.months["period"].unique().sort().to_list() == ["2023-10", "2023-11", "2023-12"]
    assert ev.sectors is not None and set(ev.sectors["sector"]) == set(SECTORS) and ev.sector_note == ""
    assert set(ev.sectors["name"]) == {"Banks", "Electric Appliances", "Services", "Information & Communication"}


def test_evaluation_without_the_dataset_says_why(runs_dir, tmp_path):
    moved = tmp_path / "model"
    moved.mkdir()
    (moved / "predictions.parquet").write_bytes((runs_dir / "model" / "predictions.parquet").read_bytes())
    cfg = RunConfig().replace(**{"data.path": str(tmp_path / "gone.parquet")}).to_dict()
    write_json_atomic(RunFiles(moved).config, {"config": cfg})
    ev = evaluation.evaluate_run(moved, window=5)["test"]
    assert ev.sectors is None and "gone.parquet: the run's dataset is not there" in ev.sector_note
    assert ev.costs.levels and ev.years.height


def test_paired_comparison_has_a_bootstrap_interval(runs_dir):
    table = evaluation.paired_comparison(runs_dir, ["model", "noise"], "factor", "test", 1)
    row = table.filter(pl.col("run") == "model").row(0, named=True)
    assert row["days"] == N_DAYS // 2 and row["difference_low"] < row["difference"] < row["difference_high"]
    assert row["difference"] > 0 and row["t"] > 2


def test_paired_costs_names_the_winner_after_costs(runs_dir):
    table = evaluation.paired_costs(runs_dir, "model", "noise", "test", 1, cost_bps=(0, 20))
    assert table["cost_bps"].to_list() == [0.0, 20.0] and (table["days"] == N_DAYS // 2 - 1).all()
    strong = table.row(0, named=True)
    assert strong["wins"] == "model" and strong["difference_low"] > 0
    assert strong["difference_bp_per_day"] == pytest.approx(strong["net_bp_per_day"] - strong["reference_net_bp_per_day"])
    same = evaluation.paired_costs(runs_dir, "model", "model", "test", 1, cost_bps=(10,)).row(0, named=True)
    assert same["difference_bp_per_day"] == 0.0 and same["wins"].startswith("undecided")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atft_core.evaluate", *args], cwd=REPO, capture_output=True, text=True)


def test_cli_prints_the_evaluation_and_the_paired_comparison(runs_dir):
    done = _cli("model", "--runs-dir", str(runs_dir), "--costs", "0,10", "--against", "noise")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "run model, horizon 1d" in out and "Validation: 60 days" in out and "RankIC 0." in out
    assert "break-even" in out and "10 bp" in out and "Banks" in out and "against noise, Test" in out
    js = _cli(str(runs_dir / "model"), "--format", "json", "--horizon", "5", "--against", "factor")
    data = json.loads(js.stdout)
    assert data["cost_bps"] == list(costs.DEFAULT_COST_BPS) and data["splits"]["test"]["horizon"] == 5
    assert data["splits"]["test"]["rank_ic"]["low"] is not None and data["against"]["test"]["costs"][0]["wins"]


@pytest.mark.parametrize("args, message", [
    (("model", "--costs", "5,x"), "costs: 'x' is not a number"),
    (("model", "--horizon", "10"), "no predictions for horizon 10d"),
    (("nothing",), "nothing: no finished run"),
])
def test_cli_refuses_bad_input_in_one_line(runs_dir, args, message):
    done = _cli(*args, "--runs-dir", str(runs_dir))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
