"""The demo market: deterministic bytes, planted lead-lag signal, both J-Quants quote forms."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from atft_core.data import DataError, build_dataset, make_demo
from atft_core.data.demo import raw_folder


def test_same_seed_same_bytes(tmp_path):
    a, b, c = (tmp_path / n / "demo.parquet" for n in ("a", "b", "c"))
    make_demo(a, n_stocks=30, n_days=260, seed=1)
    make_demo(b, n_stocks=30, n_days=260, seed=1)
    make_demo(c, n_stocks=30, n_days=260, seed=2)
    assert a.read_bytes() == b.read_bytes()
    assert (raw_folder(a) / "daily_quotes.parquet").read_bytes() == (raw_folder(b) / "daily_quotes.parquet").read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_demo_has_real_data_quirks(demo_dataset):
    q = pl.read_parquet(raw_folder(demo_dataset) / "daily_quotes.parquet")
    no_trade = q.filter(pl.col("AdjustmentClose").is_nan())
    assert no_trade.height > 0 and (no_trade["AdjustmentVolume"] == 0).all()
    first = q.group_by("Code").agg(pl.col("Date").min())["Date"]
    assert first.n_unique() > 1, "some stocks list late"
    assert q["TurnoverValue"].is_nan().any()
    sectors = pl.read_csv(raw_folder(demo_dataset) / "listed_info.csv", schema_overrides={"Sector33Code": pl.String})
    assert sectors["Sector33Code"].str.len_chars().eq(4).all()


def test_planted_signal_rank_ic(demo_dataset):
    ds = pl.read_parquet(demo_dataset, columns=["Code", "Date", "target_1d"])
    truth = pl.read_parquet(raw_folder(demo_dataset) / "truth.parquet")
    joined = ds.join(truth, on=["Code", "Date"]).drop_nulls("target_1d")
    daily = joined.group_by("Date").agg(pl.corr("signal", "target_1d", method="spearman").alias("ic"))
    ic = daily["ic"].fill_nan(None).mean()
    assert 0.08 < ic < 0.3, f"planted lead-lag RankIC {ic:.3f} outside the documented ~0.1-0.2"


def test_unadjusted_quotes_with_adjustment_factor(demo_dataset, tmp_path):
    """A 1:2 split given as raw prices + AdjustmentFactor builds the same features as adjusted quotes."""
    raw = raw_folder(demo_dataset)
    adj = pl.read_parquet(raw / "daily_quotes.parquet")
    split_day = adj["Date"].unique().sort()[100]
    code = adj["Code"][0]
    before = (pl.col("Code") == code) & (pl.col("Date") < split_day)
    unadj = adj.select(
        "Date", "Code",
        *[pl.when(before).then(pl.col(f"Adjustment{c}") * 2).otherwise(pl.col(f"Adjustment{c}")).alias(c)
          for c in ("Open", "High", "Low", "Close")],
        pl.when(before).then(pl.col("AdjustmentVolume") / 2).otherwise(pl.col("AdjustmentVolume")).alias("Volume"),
        "TurnoverValue",
        pl.when((pl.col("Code") == code) & (pl.col("Date") == split_day)).then(0.5).otherwise(1.0).alias("AdjustmentFactor"),
    )
    csv = tmp_path / "unadjusted.csv"
    unadj.write_csv(csv)
    build_dataset(csv, raw / "listed_info.csv", tmp_path / "u.parquet", index=raw / "topix.parquet")
    a = pl.read_parquet(demo_dataset).filter(pl.col("Code") == code)
    b = pl.read_parquet(tmp_path / "u.parquet").filter(pl.col("Code") == code)
    feats = [c for c in a.columns if c.startswith("feat_")]
    np.testing.assert_allclose(a.select(feats).to_numpy(), b.select(feats).to_numpy(), atol=2e-4)
    np.testing.assert_allclose(a["target_20d"].to_numpy(), b["target_20d"].to_numpy(), rtol=1e-9)


def test_demo_refuses_tiny_sizes(tmp_path):
    with pytest.raises(DataError, match="at least 20 stocks and 260 days"):
        make_demo(tmp_path / "d.parquet", n_stocks=5, n_days=260)
    assert not (tmp_path / "d.parquet").exists()
