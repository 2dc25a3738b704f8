"""Financial statements: when a filing counts, trailing figures from cumulative ones, the share
basis across splits, determinism, and the build with --statements (synthetic data, offline)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from atft_core.data import DataError, build_dataset, validate_dataset
from atft_core.data import statements as S
from atft_core.data.__main__ import main
from atft_core.data.demo import raw_folder

D = dt.date


def _filing(day: str, time: str | None, code: str = "10010", **values) -> dict:
    row = {"DisclosedDate": day, "DisclosedTime": time, "LocalCode": code}
    return row | {c: values.get(c) for c in S.REQUIRED[3:]} | {k: v for k, v in values.items() if k not in S.REQUIRED}


def _frame(rows: list[dict], tmp: Path) -> Path:
    path = tmp / "statements.parquet"
    pl.DataFrame(rows, infer_schema_length=None).write_parquet(path)
    return path


SESSIONS = pl.Series([D(2024, 11, 1), D(2024, 11, 5), D(2024, 11, 6), D(2024, 10, 31), D(2024, 10, 30)])


@pytest.mark.parametrize("day, time, effective", [
    ("2024-10-30", "14:59:00", D(2024, 10, 30)),   # during the session: that day's close includes it
    ("2024-10-30", "15:00:00", D(2024, 10, 31)),   # at the close (15:00 before 2024-11-05): next session
    ("2024-10-31", "15:10:00", D(2024, 11, 1)),
    ("2024-11-05", "15:10:00", D(2024, 11, 5)),    # the session closes at 15:30 from 2024-11-05
    ("2024-11-05", "15:30:00", D(2024, 11, 6)),
    ("2024-11-05", None, D(2024, 11, 6)),           # no time: next session
    ("2024-11-05", "", D(2024, 11, 6)),
    ("2024-11-02", "10:00:00", D(2024, 11, 5)),    # a Saturday and a holiday Monday: next session
    ("2024-11-06", "16:00:00", None),              # after the last session: never counts
])
def test_a_filing_counts_from_the_first_close_that_includes_it(tmp_path, day, time, effective):
    filings = S.read_statements(_frame([_filing(day, time, Profit=1.0)], tmp_path))
    out = S.effective_dates(filings, SESSIONS)
    assert (out["EffectiveDate"].to_list() or [None]) == [effective]


def _states(rows: list[dict], tmp: Path, basis: float = 1.0) -> pl.DataFrame:
    filings = S.read_statements(_frame(rows, tmp))
    days = pl.date_range(D(2019, 1, 1), D(2024, 12, 31), eager=True)
    sessions = days.filter(days.dt.weekday() <= 5)
    filings = S.effective_dates(filings, sessions).with_columns(pl.lit(basis).alias("basis"))
    return S.filing_states(filings)


def _march_company(code: str = "10010", period_columns: bool = False) -> list[dict]:
    """Two fiscal years ending in March; cumulative profit (yen) and EPS (shares: 1,000)."""
    ytd = {("2021-08-05", "1Q", "2021-06-30"): 100, ("2021-11-05", "2Q", "2021-09-30"): 220,
           ("2022-02-07", "3Q", "2021-12-31"): 330, ("2022-05-12", "FY", "2022-03-31"): 480,
           ("2022-08-05", "1Q", "2022-06-30"): 130, ("2022-11-04", "2Q", "2022-09-30"): 250,
           ("2023-02-06", "3Q", "2022-12-31"): 400}
    rows = []
    for (day, kind, end), profit in ytd.items():
        full_year = kind == "FY"
        extra = {"TypeOfCurrentPeriod": kind, "CurrentPeriodEndDate": end} if period_columns else {}
        rows.append(_filing(day, "15:00:00", code, Profit=profit * 1000.0, EarningsPerShare=float(profit),
                            BookValuePerShare=900.0 if full_year else None,
                            ForecastDividendPerShareAnnual=None if full_year else 12.0, **extra))
    return rows


@pytest.mark.parametrize("period_columns", [False, True])
def test_trailing_eps_is_built_from_cumulative_figures(tmp_path, period_columns):
    states = _states(_march_company(period_columns=period_columns), tmp_path)
    at = {r["EffectiveDate"]: r for r in states.iter_rows(named=True)}
    # full year: its own cumulative EPS
    assert at[D(2022, 5, 13)]["ttm_eps"] == 480
    # first quarter of the next year: last full year + this year's Q1 - last year's Q1
    assert at[D(2022, 8, 8)]["ttm_eps"] == 480 + 130 - 100
    # the nine-month figure (400) is not read as a full year
    assert at[D(2023, 2, 7)]["ttm_eps"] == 480 + 400 - 330
    assert at[D(2023, 2, 7)]["profit_growth"] == pytest.approx((400 - 330) / 330)
    assert at[D(2022, 5, 13)]["bps"] == 900 and at[D(2022, 8, 8)]["dps"] == 12
    # before a year of history the trailing figure is unknown, then it is the last one computed
    assert at[D(2021, 8, 6)]["ttm_eps"] is None and at[D(2022, 2, 8)]["ttm_eps"] is None


def test_a_revision_replaces_its_period_and_same_moment_filings_do_not_depend_on_row_order(tmp_path):
    rows = _march_company()
    revised = _filing("2022-08-10", "16:00:00", Profit=160_000.0, EarningsPerShare=160.0)
    states = _states(rows + [revised], tmp_path)
    assert states.filter(pl.col("EffectiveDate") == D(2022, 8, 11))["ttm_eps"].item() == 480 + 160 - 100
    twins = [_filing("2023-05-11", "15:00:00", Profit=600_000.0, EarningsPerShare=600.0, BookValuePerShare=950.0),
             _filing("2023-05-11", "15:00:00", Profit=590_000.0, EarningsPerShare=590.0, BookValuePerShare=940.0)]
    a = _states(rows + twins, tmp_path)
    b = _states(list(reversed(twins)) + rows[::-1], tmp_path)
    assert a.equals(b)


def test_per_share_values_follow_the_split_factor(tmp_path):
    """A filing made after a 1:2 split reports half the EPS; on the base basis it is the same."""
    before = _states([_filing("2022-05-12", "15:00:00", Profit=480_000.0, EarningsPerShare=480.0, BookValuePerShare=900.0)],
                     tmp_path)
    after = _states([_filing("2022-05-12", "15:00:00", Profit=480_000.0, EarningsPerShare=240.0, BookValuePerShare=450.0)],
                    tmp_path, basis=0.5)
    assert before.select(S.STATE).equals(after.select(S.STATE))


def _split_company(after: str = "2022-05-12", ratio: float = 2.0) -> list[dict]:
    """`_march_company` with a 1:`ratio` split: filings from `after` on report per-share figures
    on the new share basis (Profit, in yen, is unchanged; the implied share count jumps)."""
    later = lambda r: r["DisclosedDate"] >= after  # noqa: E731
    per_share = ("EarningsPerShare", "BookValuePerShare", "ForecastDividendPerShareAnnual")
    return [r | {c: r[c] / ratio for c in per_share if r[c] is not None} if later(r) else r for r in _march_company()]


def _inferred(rows: list[dict], tmp: Path) -> pl.DataFrame:
    filings = S.read_statements(_frame(rows, tmp))
    days = pl.date_range(D(2019, 1, 1), D(2024, 12, 31), eager=True)
    return S.inferred_split_basis(S.effective_dates(filings, days.filter(days.dt.weekday() <= 5)))


@pytest.mark.parametrize("ratio", [2.0, 5.0, 0.2])
def test_a_split_the_filings_show_puts_earlier_per_share_figures_on_the_new_basis(tmp_path, ratio):
    """Adjusted quotes carry no split factor: the jump of Profit / EPS by a split ratio gives one,
    and the earlier filings' per-share figures are divided by it (the adjusted prices are too)."""
    filings = _inferred(_split_company(ratio=ratio), tmp_path)
    assert filings.filter(pl.col("DisclosedDate") < D(2022, 5, 12))["basis"].unique().to_list() == [ratio]
    assert filings.filter(pl.col("DisclosedDate") >= D(2022, 5, 12))["basis"].unique().to_list() == [1.0]
    assert S.split_summary(filings) == {"splits_inferred": 1, "split_stocks": 1}
    # on the new basis the states are those of the company without the split, divided by the ratio
    plain = S.filing_states(_inferred(_march_company(), tmp_path))
    split = S.filing_states(filings)
    for name in ("ttm_eps", "bps", "dps"):
        assert split[name].to_list() == [None if v is None else v / ratio for v in plain[name].to_list()]


def test_share_count_moves_that_are_not_splits_leave_the_basis_alone(tmp_path):
    rows = _march_company()
    glitch = [r | {"EarningsPerShare": r["EarningsPerShare"] / 2} if r["DisclosedDate"] == "2022-02-07" else r
              for r in rows]                                          # one filing at half: undone by the next
    issuance = _split_company(ratio=1.5)                            # 1:1.5 is not inferred (issuance looks alike)
    tiny = [r | {"EarningsPerShare": r["EarningsPerShare"] / 1000, "Profit": r["Profit"] / 1000}
            if r["DisclosedDate"] >= "2022-05-12" else r for r in _split_company()]  # EPS < 1 yen: too rounded
    for rows in (glitch, issuance, tiny):
        assert _inferred(rows, tmp_path)["basis"].unique().to_list() == [1.0]


@pytest.mark.parametrize("change, message", [
    (lambda r: r | {"DisclosedTime": "3pm"}, "column 'DisclosedTime'"),
    (lambda r: r | {"DisclosedDate": "2022-02-30"}, "column 'DisclosedDate'"),
    (lambda r: r | {"LocalCode": None}, "missing 'LocalCode'"),
    (lambda r: r | {"Profit": "lots"}, "column 'Profit'"),
    (lambda r: {k: v for k, v in r.items() if k != "EarningsPerShare"}, "'EarningsPerShare'"),
])
def test_bad_statements_are_refused_naming_the_column(tmp_path, change, message):
    rows = [{k: (None if v is None else str(v)) for k, v in change(r).items()} for r in _march_company()[:1]]
    path = tmp_path / "bad.csv"
    pl.DataFrame(rows).write_csv(path)
    with pytest.raises(DataError) as err:
        S.read_statements(path)
    assert message in str(err.value) and "bad.csv" in str(err.value)


# ---- the build ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_demo(tmp_path_factory) -> Path:
    """A two-year demo: statements need filings a year apart for growth and trailing figures."""
    from atft_core.data.demo import make_demo

    out = tmp_path_factory.mktemp("demo2y") / "demo.parquet"
    make_demo(out, n_stocks=30, n_days=520, seed=5)
    return out


def test_statements_too_short_for_a_feature_say_why(demo_dataset, tmp_path):
    raw = raw_folder(demo_dataset)  # one year: no filing has the same period a year earlier
    with pytest.raises(DataError, match="fin_profit_growth: needs filings of the same period a year apart"):
        _build(raw, tmp_path / "short.parquet", raw / "statements.parquet")
    assert not list(tmp_path.iterdir())


def _build(raw: Path, out: Path, statements: Path | None):
    return build_dataset(raw / "daily_quotes.parquet", raw / "listed_info.csv", out, index=raw / "topix.parquet",
                         statements=statements)


def test_statements_add_features_and_leave_the_price_features_as_they_were(long_demo, tmp_path):
    raw = raw_folder(long_demo)
    summary = _build(raw, tmp_path / "with.parquet", raw / "statements.parquet")
    plain, with_st = pl.read_parquet(long_demo), pl.read_parquet(tmp_path / "with.parquet")
    assert summary.feature_names == validate_dataset(long_demo).feature_names + S.FEATURE_COLUMNS
    assert plain.equals(with_st.drop(S.FEATURE_COLUMNS))
    flag = with_st.select("Date", "Code", "feat_flag_fin_missing")
    first = pl.read_parquet(raw / "statements.parquet")["DisclosedDate"].str.to_date().min()
    assert flag.filter(pl.col("Date") < first)["feat_flag_fin_missing"].min() == 1
    st = summary.statements
    assert st["stocks_known"] == summary.n_stocks and 0.5 < st["stock_days_known"] < 1 and st["price_basis"] == "adjusted"
    assert "statements filing known for 30 of 30 stocks" in summary.to_text()


def _api_form(q: pl.DataFrame, split_code: str | None = None, split_day=None) -> pl.DataFrame:
    """The demo quotes as the API gives them: traded prices + AdjustmentFactor (a 1:2 split of
    `split_code` on `split_day`: traded prices halve from that day, volume doubles)."""
    split = (pl.col("Code") == split_code) & (pl.col("Date") >= split_day) if split_code else pl.lit(False)
    on_the_day = split & (pl.col("Date") == split_day) if split_code else pl.lit(False)
    ratio = pl.when(split).then(0.5).otherwise(1.0)
    return q.select(
        "Date", "Code", *[(pl.col(f"Adjustment{c}") * ratio).alias(c) for c in ("Open", "High", "Low", "Close")],
        (pl.col("AdjustmentVolume") / ratio).alias("Volume"), "TurnoverValue",
        pl.when(on_the_day).then(0.5).otherwise(1.0).alias("AdjustmentFactor"))


def test_traded_prices_and_split_factors_keep_yields_on_one_share_basis(long_demo, tmp_path):
    """A 1:2 split with traded prices: prices halve, later filings report half the per-share
    figures; with the split factor every feature is what it is without the split."""
    raw = raw_folder(long_demo)
    q, st = pl.read_parquet(raw / "daily_quotes.parquet"), pl.read_parquet(raw / "statements.parquet")
    code, day = q["Code"][0], q["Date"].unique().sort()[300]
    split_st = st.with_columns(
        pl.when((pl.col("LocalCode") == code) & (pl.col("DisclosedDate").str.to_date() >= day))
        .then(pl.col(c) * 0.5).otherwise(pl.col(c)).alias(c)
        for c in ("EarningsPerShare", "BookValuePerShare", "ForecastDividendPerShareAnnual"))
    built = {}
    for name, quotes, statements in (("plain", _api_form(q), st), ("split", _api_form(q, code, day), split_st)):
        quotes.write_parquet(tmp_path / f"{name}_q.parquet")
        statements.write_parquet(tmp_path / f"{name}_s.parquet")
        built[name] = build_dataset(tmp_path / f"{name}_q.parquet", raw / "listed_info.csv", tmp_path / f"{name}.parquet",
                                    index=raw / "topix.parquet", statements=tmp_path / f"{name}_s.parquet")
    assert built["split"].statements["price_basis"] == "traded"
    assert not any("split-adjusted only" in w for w in built["split"].warnings)
    a, b = pl.read_parquet(tmp_path / "plain.parquet"), pl.read_parquet(tmp_path / "split.parquet")
    # (volume features differ a little: log1p is not scale-free, and the split doubles the volume)
    assert a.select(S.FEATURE_COLUMNS + ("feat_ret_1d", "feat_ret_20d", "target_5d")).equals(
        b.select(S.FEATURE_COLUMNS + ("feat_ret_1d", "feat_ret_20d", "target_5d")))


def test_adjusted_quotes_and_a_split_only_the_filings_show_keep_yields_on_one_share_basis(long_demo, tmp_path):
    """Split-adjusted quotes (the shared data's form) show no split: a stock's adjusted prices are
    its traded ones divided by every later split. The same 1:2 split world as above: every earlier
    adjusted price halves, later filings report half the per-share figures; the split read from the
    filings' share counts makes every feature what it is without the split."""
    raw = raw_folder(long_demo)
    q, st = pl.read_parquet(raw / "daily_quotes.parquet"), pl.read_parquet(raw / "statements.parquet")
    code, day = q["Code"][0], q["Date"].unique().sort()[300]
    stock = pl.col("LocalCode") == code
    # EPS in whole yen for this stock, so its share count can be read (the demo's are fractions of one)
    st = st.with_columns(pl.when(stock).then(pl.col("EarningsPerShare") * 100).otherwise(pl.col("EarningsPerShare")))
    later = stock & (pl.col("DisclosedDate").str.to_date() >= day)
    split_st = st.with_columns(pl.when(later).then(pl.col(c) / 2).otherwise(pl.col(c)).alias(c)
                               for c in ("EarningsPerShare", "BookValuePerShare", "ForecastDividendPerShareAnnual"))
    prices = [f"Adjustment{c}" for c in ("Open", "High", "Low", "Close")]
    split_q = q.with_columns(*[pl.when(pl.col("Code") == code).then(pl.col(c) * 0.5).otherwise(pl.col(c)).alias(c)
                               for c in prices],
                             pl.when(pl.col("Code") == code).then(pl.col("AdjustmentVolume") * 2)
                             .otherwise(pl.col("AdjustmentVolume")).alias("AdjustmentVolume"))
    built = {}
    for name, quotes, statements in (("plain", q, st), ("split", split_q, split_st)):
        quotes.write_parquet(tmp_path / f"{name}_q.parquet")
        statements.write_parquet(tmp_path / f"{name}_s.parquet")
        built[name] = build_dataset(tmp_path / f"{name}_q.parquet", raw / "listed_info.csv", tmp_path / f"{name}.parquet",
                                    index=raw / "topix.parquet", statements=tmp_path / f"{name}_s.parquet")
    assert built["split"].statements["price_basis"] == "adjusted"
    assert built["split"].statements["splits_inferred"] == built["plain"].statements["splits_inferred"] + 1
    a, b = pl.read_parquet(tmp_path / "plain.parquet"), pl.read_parquet(tmp_path / "split.parquet")
    columns = S.FEATURE_COLUMNS + ("feat_ret_1d", "feat_ret_20d", "target_5d")
    assert a.select(columns).equals(b.select(columns))


def test_cli_builds_with_statements_and_check_reports_coverage(long_demo, tmp_path, capsys):
    raw = raw_folder(long_demo)
    out = tmp_path / "cli.parquet"
    assert main(["build", "--quotes", str(raw / "daily_quotes.parquet"), "--listed-info", str(raw / "listed_info.csv"),
                 "--statements", str(raw / "statements.parquet"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "statements filing known for" in text and "calendar  " in text
