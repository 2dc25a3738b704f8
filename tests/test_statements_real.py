"""No look-ahead through the statements, on the real J-Quants filings (skipped without
../shared/data): later filings cannot move earlier features, and a filing counts from the first
close that could include it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from atft_core.data import build_dataset
from atft_core.data import statements as S
from conftest import SHARED_DATA

QUOTES = SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet"
STATEMENTS = SHARED_DATA / "jquants_statements_2021_2024.parquet"
pytestmark = pytest.mark.skipif(not STATEMENTS.exists(), reason=f"real data not present at {SHARED_DATA}")
N_STOCKS = 80


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Quotes from 2020 and statements of every 11th stock (a small, fast slice of the real data)."""
    tmp = tmp_path_factory.mktemp("real_statements")
    quotes = pl.read_parquet(QUOTES).filter(pl.col("Date") >= pl.date(2020, 1, 1))
    codes = quotes["Code"].unique().sort()[::11][:N_STOCKS]
    quotes.filter(pl.col("Code").is_in(codes.implode())).write_parquet(tmp / "quotes.parquet")
    statements = pl.read_parquet(STATEMENTS).filter(pl.col("LocalCode").is_in(codes.implode()))
    original = _build(tmp, "original", statements)
    return {"tmp": tmp, "statements": statements, "original": original}


def _build(tmp: Path, name: str, statements: pl.DataFrame) -> pl.DataFrame:
    statements.write_parquet(tmp / f"{name}_statements.parquet")
    out = tmp / f"{name}.parquet"
    build_dataset(tmp / "quotes.parquet", SHARED_DATA / "jquants_listed_info.csv", out,
                  index=SHARED_DATA / "jquants_topix_2004_2024.parquet", statements=tmp / f"{name}_statements.parquet")
    return pl.read_parquet(out)


def test_later_filings_leave_earlier_features_unchanged(inputs):
    """Values and times of every filing after the cut are perturbed. Each filing's figures are
    scaled by one factor, so its Profit / EPS share count stays: the shared quotes are adjusted
    for later splits, and the split basis read from later filings' share counts is the one way
    they reach earlier yields, by design (next test)."""
    cut = pl.date(2022, 6, 30)
    st = inputs["statements"]
    later = pl.col("DisclosedDate").str.to_date() > cut
    rng = np.random.default_rng(0)
    noise = pl.Series(rng.uniform(0.3, 3.0, st.height))
    times = pl.Series(rng.choice(["09:00:00", "13:00:00", "15:00:00", "16:30:00", ""], st.height))
    values = ("Profit", "EarningsPerShare", "BookValuePerShare", "ForecastDividendPerShareAnnual")
    perturbed = st.with_columns(
        *[pl.when(later).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c) for c in values],
        pl.when(later).then(times).otherwise(pl.col("DisclosedTime")).alias("DisclosedTime"))
    a, b = inputs["original"], _build(inputs["tmp"], "perturbed", perturbed)
    features = [c for c in a.columns if c.startswith("feat_")] + ["raw_ret_1d"]
    past_a, past_b = a.filter(pl.col("Date") <= cut), b.filter(pl.col("Date") <= cut)
    assert past_a.height > 0 and past_a.select(["Code", "Date", *features]).equals(past_b.select(["Code", "Date", *features]))
    assert not a.filter(pl.col("Date") > cut)["feat_fin_ey"].equals(b.filter(pl.col("Date") > cut)["feat_fin_ey"]), \
        "the perturbation did not reach later features: the test would prove nothing"


def test_later_filings_reach_earlier_per_share_figures_only_through_the_splits_they_show(inputs):
    """Adjusted quotes divide every earlier price by a later split; the filings after the cut
    show those splits in their share counts, and the earlier per-share figures are divided by
    exactly them (so yields are as on the day). Nothing else of the later filings reaches earlier
    states: with the later filings dropped, the states up to the cut are the same times the ratio."""
    cut = dt.date(2022, 6, 30)
    sessions = inputs["original"]["Date"].unique().sort()
    filings = S.effective_dates(S.read_statements(inputs["tmp"] / "original_statements.parquet"), sessions)
    full = S.inferred_split_basis(filings)
    known = S.inferred_split_basis(filings.filter(pl.col("EffectiveDate") <= cut))
    later_splits = full.filter(pl.col("EffectiveDate") <= cut).group_by("Code").agg(pl.col("basis").last().alias("ratio"))
    assert (later_splits["ratio"] != 1.0).sum() >= 3, "no split after the cut in the sample: the test would prove nothing"
    a = S.filing_states(full).filter(pl.col("EffectiveDate") <= cut)
    b = S.filing_states(known).join(later_splits, on="Code")
    assert a["Code"].to_list() == b["Code"].to_list() and a["EffectiveDate"].to_list() == b["EffectiveDate"].to_list()
    assert a["profit_growth"].equals(b["profit_growth"])
    for name in ("ttm_eps", "bps", "dps"):  # (x / 3 + y / 3 is not always (x + y) / 3 to the last bit)
        assert a[name].is_null().equals(b[name].is_null()), name
        assert np.allclose(a[name].to_numpy(), (b[name] / b["ratio"]).to_numpy(), rtol=1e-12, atol=0, equal_nan=True), name


def _first_difference(a: pl.DataFrame, b: pl.DataFrame, code: str):
    fin = [c for c in a.columns if c.startswith("feat_fin_") or c == "feat_flag_fin_missing"]
    x, y = a.filter(pl.col("Code") == code).select(["Date", *fin]), b.filter(pl.col("Code") == code).select(["Date", *fin])
    differs = pl.any_horizontal(pl.col(c).ne_missing(y[c]) for c in fin)
    return x.filter(differs)["Date"].min()


def test_a_filing_moved_after_the_close_counts_one_session_later(inputs):
    st = inputs["statements"].with_row_index("row")
    sessions = inputs["original"]["Date"].unique().sort()
    day = pl.col("DisclosedDate").str.to_date()
    one_a_day = st.group_by("LocalCode", "DisclosedDate").len().filter(pl.col("len") == 1)
    candidates = st.join(one_a_day, on=["LocalCode", "DisclosedDate"]).filter(
        (pl.col("DisclosedTime") == "14:00:00") & day.is_in(sessions.implode()) & pl.col("Profit").is_not_null()
        & (day > pl.date(2022, 1, 1)))
    row = candidates.sort("row").row(0, named=True)
    when = pl.col("row") == row["row"]
    moved = _build(inputs["tmp"], "moved", st.with_columns(
        pl.when(when).then(pl.lit("16:00:00")).otherwise(pl.col("DisclosedTime")).alias("DisclosedTime")).drop("row"))
    removed = _build(inputs["tmp"], "removed", st.filter(~when).drop("row"))
    disclosed = pl.Series([row["DisclosedDate"]]).str.to_date()[0]
    next_session = sessions.filter(sessions > disclosed)[0]
    assert _first_difference(inputs["original"], removed, row["LocalCode"]) == disclosed
    assert _first_difference(moved, removed, row["LocalCode"]) == next_session
