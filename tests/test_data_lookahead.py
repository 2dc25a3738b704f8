"""No look-ahead: changing prices after date t leaves every feature on dates <= t bit-identical.

Covers the per-stock windows, the per-date normalisation and the sector / market features
(those mix stocks within a date, never across future dates). Targets must change (they look
forward by design), which shows the perturbation reached the build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from atft_core.data import build_dataset
from atft_core.data.demo import raw_folder
from conftest import SHARED_DATA

PRICE_COLUMNS = ("AdjustmentOpen", "AdjustmentHigh", "AdjustmentLow", "AdjustmentClose")


def _perturb_after(df: pl.DataFrame, cut, columns, seed: int) -> pl.DataFrame:
    noise = np.random.default_rng(seed).uniform(0.7, 1.3, df.height)
    scale = pl.when(pl.col("Date") > cut).then(pl.Series(noise)).otherwise(1.0)
    return df.with_columns((pl.col(c) * scale).alias(c) for c in columns)


def _assert_past_identical(a: Path, b: Path, cut) -> None:
    x, y = pl.read_parquet(a), pl.read_parquet(b)
    past_x, past_y = x.filter(pl.col("Date") <= cut), y.filter(pl.col("Date") <= cut)
    assert past_x.height > 0 and past_x.select("Code", "Date").equals(past_y.select("Code", "Date"))
    cols = ["raw_ret_1d", "Sector33Code"] + [c for c in x.columns if c.startswith("feat_")]
    for c in cols:
        assert past_x[c].equals(past_y[c], check_names=True), f"{c} on dates <= {cut} moved"
    future = x.filter(pl.col("Date") > cut)["feat_ret_1d"].equals(y.filter(pl.col("Date") > cut)["feat_ret_1d"])
    assert not future, "the perturbation did not change later features: the test would prove nothing"
    assert not past_x["target_5d"].equals(past_y["target_5d"]), "targets near the cut should see the change"


def _build_pair(quotes: pl.DataFrame, listed: Path, index: pl.DataFrame | None, cut, tmp: Path) -> tuple[Path, Path]:
    outs = []
    for tag, q, ix in (("orig", quotes, index),
                       ("pert", _perturb_after(quotes, cut, PRICE_COLUMNS + ("AdjustmentVolume", "TurnoverValue"), 1),
                        None if index is None else _perturb_after(index, cut, ("Open", "High", "Low", "Close"), 2))):
        qp = tmp / f"{tag}_quotes.parquet"
        q.write_parquet(qp)
        ip = None
        if ix is not None:
            ip = tmp / f"{tag}_index.parquet"
            ix.write_parquet(ip)
        out = tmp / f"{tag}.parquet"
        build_dataset(qp, listed, out, index=ip)
        outs.append(out)
    return outs[0], outs[1]


@pytest.mark.parametrize("with_index", [True, False])
def test_demo_features_ignore_the_future(demo_dataset, tmp_path, with_index):
    raw = raw_folder(demo_dataset)
    quotes = pl.read_parquet(raw / "daily_quotes.parquet")
    cut = quotes["Date"].unique().sort()[150]
    index = pl.read_parquet(raw / "topix.parquet") if with_index else None
    listed = Path(shutil.copy(raw / "listed_info.csv", tmp_path / "listed_info.csv"))
    a, b = _build_pair(quotes, listed, index, cut, tmp_path)
    _assert_past_identical(a, b, cut)


def test_real_data_features_ignore_the_future(tmp_path):
    quotes_path = SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet"
    if not quotes_path.exists():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    quotes = pl.read_parquet(quotes_path)
    codes = quotes["Code"].unique().sort()[::9][:100]
    quotes = quotes.filter(pl.col("Code").is_in(codes.implode()))
    index = pl.read_parquet(SHARED_DATA / "jquants_topix_2004_2024.parquet")
    cut = pl.date(2020, 6, 30)
    cut = quotes.filter(pl.col("Date") <= cut)["Date"].max()
    a, b = _build_pair(quotes, SHARED_DATA / "jquants_listed_info.csv", index, cut, tmp_path)
    _assert_past_identical(a, b, cut)
