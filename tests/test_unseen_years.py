"""bench/unseen_years.py: a run is scored on the days before its training window, never after validation."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import unseen_years  # noqa: E402
from test_train import tiny_config  # noqa: E402
from atft_core.run_files import RunFiles  # noqa: E402
from atft_core.train import run_training  # noqa: E402


def test_unseen_past_ends_before_the_training_window_and_nothing_after_validation_is_read(demo_dataset, tmp_path):
    dates = pl.read_parquet(demo_dataset, columns=["Date"])["Date"].unique().sort()
    start = dates[80]
    run = tmp_path / "runs" / "late-start"
    cfg = tiny_config(demo_dataset, **{"data.start": start.isoformat(), "data.embargo_days": 0, "data.train_fraction": 0.5,
                                           "data.val_fraction": 0.2, "train.phase_epochs": (1, 0, 0, 0)})
    assert run_training(cfg, run) == "completed"
    line, factor = unseen_years.summarize(run, demo_dataset, tmp_path / "cache", ("feat_ret_1d",)).split("\n")
    assert line.startswith(str(run)) and "unseen past n/a" not in line
    past_days = int(line.split("(")[1].split(" d)")[0])
    # scored: the days with a full lookback window, up to the purge (20 days) before the window
    assert past_days == 80 - 20 - (cfg.data.lookback - 1)
    scored = pl.read_parquet(tmp_path / "cache" / "runs-late-start.parquet")["Date"]
    val_end = pl.read_parquet(RunFiles(run).predictions).filter(pl.col("split") == "val")["Date"].max()
    assert scored.max() > val_end   # the cache holds every date; the summary must not read past validation
    years = [int(part.split(":")[0]) for part in line.split("|")[1].split()]
    assert max(years) <= val_end.year
    # the factor line is scored on the same unseen days
    assert factor.startswith("  -feat_ret_1d (factor)") and f"({past_days} d)" in factor and "paired t " in factor
    assert "paired t n/a" not in factor
    # a seed ensemble of two runs is scored on the same days
    other = tmp_path / "runs" / "late-start-s1"
    assert run_training(cfg.replace(**{"runtime.seed": 1}), other) == "completed"
    both = unseen_years.ensemble([run, other], [demo_dataset, demo_dataset], tmp_path / "cache")
    assert both.startswith("ensemble of 2 runs") and f"({past_days} d)" in both
