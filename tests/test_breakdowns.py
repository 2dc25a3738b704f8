"""RankIC and the net book by year, month and Sector33 against direct per-group computations."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from atft_core import breakdowns, costs, metrics

N_STOCKS, N_DAYS = 30, 70


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(21)
    dates = np.busday_offset("2023-11-01", np.arange(N_DAYS), roll="forward")   # Nov 2023 .. Feb 2024
    target = rng.normal(0, 0.02, (N_DAYS, N_STOCKS))
    pred = target + rng.normal(0, 0.03, (N_DAYS, N_STOCKS))
    mask = rng.random((N_DAYS, N_STOCKS)) > 0.05
    sectors = np.array(["7050"] * 12 + ["3650"] * 12 + ["9050"] * 4 + [None] * 2, dtype=object)
    return dates.astype("datetime64[D]"), pred, target, mask, sectors


def _book(pred, target, mask, horizon):
    w = metrics.long_short_weights(pred, mask & np.isfinite(target))
    return w, costs.traded_weights(w, horizon)


@pytest.mark.parametrize("horizon", [1, 5])
def test_by_period_matches_direct_means(panel, horizon):
    dates, pred, target, mask, _ = panel
    ric = metrics.daily_rank_ic(pred, target, mask)
    gross = metrics.long_short_returns(pred, target, mask)
    w, traded = _book(pred, target, mask, horizon)
    months = breakdowns.by_period(dates, ric, gross, traded.sum(axis=1), horizon, (0.0, 10.0), "month")
    years = breakdowns.by_period(dates, ric, gross, traded.sum(axis=1), horizon, (0.0, 10.0), "year")
    assert months["period"].unique(maintain_order=True).to_list() == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert years["period"].unique(maintain_order=True).to_list() == ["2023", "2024"]
    for frame, key in ((months, lambda d: str(d)[:7]), (years, lambda d: str(d)[:4])):
        for row in frame.iter_rows(named=True):
            sel = np.array([key(d) == row["period"] for d in dates])
            assert row["days"] == sel.sum() and row["rank_ic"] == pytest.approx(np.nanmean(ric[sel]))
            tau = np.abs(w[horizon:] - w[:-horizon]).sum(axis=1) / 4          # direct turnover
            net = (gross[horizon:] - 4 * tau * row["cost_bps"] / 1e4)[sel[horizon:]] / horizon
            assert row["net_bp_per_day"] == pytest.approx(net.mean() * 1e4)
    assert years["rank_ic_low"].is_not_null().all() and months["rank_ic_low"].is_null().all()


def test_by_sector_ranks_within_sectors_and_contributions_add_up(panel):
    dates, pred, target, mask, sectors = panel
    horizon, levels = 1, (0.0, 20.0)
    w, traded = _book(pred, target, mask, horizon)
    table = breakdowns.by_sector(pred, target, mask, sectors, w, traded, horizon, levels)
    assert set(table["sector"]) == {"7050", "3650", "9050", breakdowns.UNKNOWN_SECTOR}
    banks = table.filter((pl.col("sector") == "7050") & (pl.col("cost_bps") == 0.0)).row(0, named=True)
    assert banks["name"] == "Banks"
    cols = sectors == "7050"
    direct = []
    for d in range(N_DAYS):
        ok = mask[d, cols]
        if ok.sum() >= 2:
            direct.append(spearmanr(pred[d, cols][ok], target[d, cols][ok]).statistic)
    assert banks["rank_ic"] == pytest.approx(np.mean(direct)) and banks["rank_ic_low"] < banks["rank_ic"]
    assert banks["stocks"] == pytest.approx(mask[:, cols].sum(axis=1).mean())
    # sectors' contributions add up to the whole book's net return per day, at every cost
    gross = metrics.long_short_returns(pred, target, mask)
    tau = costs.book_turnover(w, horizon)
    for c in levels:
        whole = np.nanmean(costs.net_returns(gross, tau, c)) / horizon * 1e4
        assert table.filter(pl.col("cost_bps") == c)["net_bp_per_day"].sum() == pytest.approx(whole)
    shares = table.filter(pl.col("cost_bps") == 0.0)
    assert shares["long_share"].sum() == pytest.approx(1.0) and shares["short_share"].sum() == pytest.approx(1.0)
    ordered = shares["rank_ic"].drop_nulls().to_list()
    assert ordered == sorted(ordered, reverse=True)


def test_read_sectors_takes_each_stocks_latest_label(tmp_path):
    path = tmp_path / "d.parquet"
    pl.DataFrame({"Date": ["2024-01-04", "2024-01-05", "2024-01-05", "2024-01-05"],
                  "Code": ["13010", "13010", "72030", "99990"],
                  "Sector33Code": ["50", "0050", "3700", None]}).with_columns(
        pl.col("Date").str.to_date()).write_parquet(path)
    found = breakdowns.read_sectors(path, ["72030", "13010", "99990", "00000"])
    assert found.tolist() == ["3700", "0050", None, None]
    assert breakdowns.sector_name("3700") == "Transportation Equipment" and breakdowns.sector_name(None) == "unknown"
    pl.DataFrame({"Date": [1], "Code": ["1"]}).write_parquet(tmp_path / "no_sector.parquet")
    with pytest.raises(ValueError, match="no_sector.parquet: no Sector33Code column"):
        breakdowns.read_sectors(tmp_path / "no_sector.parquet", ["1"])
    with pytest.raises(FileNotFoundError, match="missing.parquet: the run's dataset is not there"):
        breakdowns.read_sectors(tmp_path / "missing.parquet", ["1"])
