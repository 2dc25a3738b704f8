"""Dense panel loading and walk-forward splits with purge."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from atft_core.config import DataConfig
from atft_core.data import DataError, estimate_panel_bytes, load_panel, make_splits
from atft_core.data.demo import raw_folder
from atft_core.data.panel import _check_memory


def test_panel_matches_file(demo_dataset):
    p = load_panel(DataConfig(path=str(demo_dataset)))
    df = pl.read_parquet(demo_dataset)
    d, n, f = p.features.shape
    assert (d, n) == (df["Date"].n_unique(), df["Code"].n_unique()) and f == len(p.feature_names)
    assert int(p.valid.sum()) == df.height
    assert torch.all(p.features[~p.valid] == 0) and torch.all(torch.isnan(p.targets[~p.valid]))
    row = df.row(1000, named=True)
    di = int(np.searchsorted(p.dates, np.datetime64(row["Date"])))
    si = p.codes.index(row["Code"])
    assert p.features[di, si, 0].item() == pytest.approx(row[p.feature_names[0]])
    assert p.returns[di, si].item() == pytest.approx(row["raw_ret_1d"], rel=1e-6)
    assert p.targets.shape[-1] == 4 and p.sectors.min() >= 0 and len(p.sector_names) > 1


def test_panel_honours_config(demo_dataset):
    cfg = DataConfig(path=str(demo_dataset), features=("feat_ret_1d", "feat_vol_20"), horizons=(1, 5),
                     start="2016-03-01", end="2016-06-30")
    p = load_panel(cfg)
    assert p.feature_names == cfg.features and p.targets.shape[-1] == 2
    assert str(p.dates[0]) >= "2016-03-01" and str(p.dates[-1]) <= "2016-06-30"
    with pytest.raises(DataError, match=r"loaded 49 features but data.expected_feature_count=306"):
        load_panel(DataConfig(path=str(demo_dataset), expected_feature_count=306))
    with pytest.raises(DataError, match="feat_nope"):
        load_panel(DataConfig(path=str(demo_dataset), features=("feat_nope",)))
    with pytest.raises(DataError, match=r"no \['target_3d'\]"):
        load_panel(DataConfig(path=str(demo_dataset), horizons=(1, 3)))


def test_execution_lag_shifts_targets_by_one_trading_day(demo_dataset):
    base = DataConfig(path=str(demo_dataset), horizons=(1, 5))
    p0, p1 = load_panel(base), load_panel(dataclasses.replace(base, execution_lag=1))
    both = p1.valid[:-1] & p0.valid[1:]
    torch.testing.assert_close(p1.targets[:-1][both], p0.targets[1:][both], rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(p1.targets[:-1][~p0.valid[1:]]).all()
    assert torch.isnan(p1.targets[-1]).all()
    # against raw prices: Close(t+1+h) / Close(t+1) - 1 for a stock that traded throughout
    q = pl.read_parquet(raw_folder(demo_dataset) / "daily_quotes.parquet")
    code = p0.codes[3]
    close = q.filter(pl.col("Code") == code).sort("Date")["AdjustmentClose"].to_numpy()
    t = 40
    assert not np.isnan(close[t + 1:t + 7]).any()
    assert p1.targets[t, 3, 1].item() == pytest.approx(close[t + 6] / close[t + 1] - 1, rel=1e-5)


def test_memory_estimate_and_refusal():
    assert estimate_panel_bytes(10, 20, 30, 4) == 10 * 20 * (30 + 4 + 1) * 4 + 10 * 20
    assert estimate_panel_bytes(10, 20, 30, 4, bytes_per_value=2) == 10 * 20 * 35 * 2 + 200
    with pytest.raises(DataError, match="GiB of RAM"):
        _check_memory(1 << 60, "a huge panel")


@pytest.mark.parametrize("lag", [0, 1])
@pytest.mark.parametrize("by_date", [False, True])
def test_splits_keep_training_targets_out_of_later_segments(lag, by_date):
    dates = np.busday_offset(np.datetime64("2018-01-01"), np.arange(600), roll="forward")
    extra = {"train_end": "2019-06-28", "val_end": "2020-01-31"} if by_date else {}
    cfg = DataConfig(execution_lag=lag, embargo_days=0, **extra)
    s = make_splits(dates, cfg)
    reach = max(cfg.horizons) + lag
    assert s.train.max() + reach < s.val.min() and s.val.max() + reach < s.test.min()
    assert s.purge == reach and f"purge {reach} + embargo 0" in s.describe()
    assert str(dates[s.train[0]]) in s.describe() and f"({len(s.val)} d)" in s.describe()
    if by_date:
        assert dates[s.train[-1]] <= np.datetime64("2019-06-28") < dates[s.train[-1] + 1]


def test_splits_errors():
    dates = np.busday_offset(np.datetime64("2018-01-01"), np.arange(60), roll="forward")
    with pytest.raises(DataError, match="segment is empty"):
        make_splits(dates, DataConfig(embargo_days=5))
    with pytest.raises(DataError, match="purge_days=3"):
        make_splits(np.arange(500).astype("datetime64[D]"), DataConfig(purge_days=3))
    s = make_splits(np.arange(500).astype("datetime64[D]"), DataConfig(purge_days=30, embargo_days=5))
    assert s.val.min() - s.train.max() == 36
