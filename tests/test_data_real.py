"""The real shared J-Quants data builds and passes check, and its labels are the close-to-close
returns the prices say (skipped when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from atft_core.config import DataConfig
from atft_core.data import build_dataset, load_panel
from atft_core.data.__main__ import main
from conftest import SHARED_DATA


def test_real_data_builds_and_checks(tmp_path, capsys):
    quotes = SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet"
    if not quotes.exists():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    out = tmp_path / "real.parquet"
    rc = main(["build", "--quotes", str(quotes), "--listed-info", str(SHARED_DATA / "jquants_listed_info.csv"),
               "--index", str(SHARED_DATA / "jquants_topix_2004_2024.parquet"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["check", str(out), "--min-stocks", "20"]) == 0
    text = capsys.readouterr().out
    assert "stocks    943" in text and "2016-02-01 .. 2024-12-30" in text and "coverage 100.0%" in text


def _direct_targets(quotes: pl.DataFrame, calendar: pl.Series, horizons, lag: int) -> pl.DataFrame:
    """Close(t+lag+h) / Close(t+lag) - 1 per stock and date, straight from the quotes: t+k is the
    k-th market day after t (the file's calendar), null where the stock did not trade on either day."""
    cal = pl.DataFrame({"Date": calendar}).with_row_index("di")
    traded = quotes.join(cal, on="Date").filter((pl.col("AdjustmentClose") > 0) & (pl.col("AdjustmentVolume") > 0))
    close = traded.select("Code", "di", pl.col("AdjustmentClose").alias("c"))
    out = traded.select("Code", "Date", "di")
    entry = close.with_columns(pl.col("di") - lag).rename({"c": "entry"})
    out = out.join(entry, on=["Code", "di"], how="left")
    for h in horizons:
        exit_ = close.with_columns(pl.col("di") - lag - h).rename({"c": f"exit_{h}"})
        out = out.join(exit_, on=["Code", "di"], how="left")
        out = out.with_columns((pl.col(f"exit_{h}") / pl.col("entry") - 1).alias(f"direct_{h}d"))
    return out.select("Code", "Date", *[f"direct_{h}d" for h in horizons])


def test_real_targets_are_close_to_close_per_date(tmp_path):
    """Every h-day label the model trains and is scored on (the loaded panel, lag 0 and 1) is
    Close(t+lag+h) / Close(t+lag) - 1 on the market calendar, on real quotes of 2023-2024."""
    quotes_path = SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet"
    if not quotes_path.exists():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    full = pl.read_parquet(quotes_path).filter(pl.col("Date") >= pl.date(2023, 1, 1))
    calendar = full["Date"].unique().sort()
    quotes = full.filter(pl.col("Code").is_in(full["Code"].unique().sort()[::16].implode()))
    quotes.write_parquet(tmp_path / "quotes.parquet")
    out = tmp_path / "real.parquet"
    build_dataset(tmp_path / "quotes.parquet", SHARED_DATA / "jquants_listed_info.csv", out)
    horizons = (1, 5, 10, 20)
    for lag in (0, 1):
        panel = load_panel(DataConfig(path=str(out), horizons=horizons, execution_lag=lag))
        direct = _direct_targets(quotes, calendar, horizons, lag)
        days = pl.DataFrame({"Date": panel.dates.astype("datetime64[D]").tolist()}).with_row_index("d")
        cells = direct.join(days, on="Date").join(pl.DataFrame({"Code": panel.codes}).with_row_index("s"), on="Code")
        d, s = torch.from_numpy(cells["d"].to_numpy().astype(np.int64)), torch.from_numpy(cells["s"].to_numpy().astype(np.int64))
        assert panel.valid[d, s].all() and int(panel.valid.sum()) == cells.height > 20_000
        for k, h in enumerate(horizons):
            got = panel.targets[d, s, k].double().numpy()
            want = cells[f"direct_{h}d"].to_numpy().astype(float)
            known = np.isfinite(want)
            assert (np.isfinite(got) == known).all(), f"{h}-day label, lag {lag}: known on other stock-days than the prices say"
            assert known.sum() > 0.9 * cells.height
            np.testing.assert_allclose(got[known], want[known], rtol=1e-5, atol=1e-7, err_msg=f"{h}-day label, lag {lag}")
