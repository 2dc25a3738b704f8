"""Financial statements (J-Quants `statements`) -> as-of, per-stock daily features.

A filing counts from the first session whose close it could have moved (docs/data.md):
disclosed before that day's close (15:00; 15:30 from 2024-11-05) on a trading day -> that day;
at or after the close, on a non-trading day, or without a time -> the next trading day.

Steps, each looking only backward in public time:
1. `read_statements`: check and normalise the file (DataError naming file, column, rows).
2. `effective_dates`: the session each filing counts from, on the market calendar.
3. `filing_states`: per stock, the state after each session's filings, in the order they became
   public: trailing-twelve-month EPS built from the cumulative year-to-date figures, book value
   and forecast dividend per share, profit growth against the same period a year earlier.
   Per-share values are divided by the quotes' cumulative split factor at the filing
   (`basis`), so that they and the prices share one share basis across splits.
4. `daily_features`: the latest state as of each stock-day, divided by that day's price.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .errors import DataError
from .inputs import codes_as_text, dates_column, numeric_text, read_table
from .schema import require_columns

REQUIRED = ("DisclosedDate", "DisclosedTime", "LocalCode", "Profit", "EarningsPerShare",
            "BookValuePerShare", "ForecastDividendPerShareAnnual")
"""J-Quants `statements` columns the build needs (the subset in ../shared/data has just these)."""
OPTIONAL = ("TypeOfCurrentPeriod", "CurrentPeriodEndDate", "DisclosureNumber",
            "NextYearForecastDividendPerShareAnnual")
"""Used when present (`fetch` writes them): the filing's period instead of an inferred one, the
order of filings made at one moment, and the next year's dividend forecast of full-year filings."""
VALUES = ("Profit", "EarningsPerShare", "BookValuePerShare", "ForecastDividendPerShareAnnual",
          "NextYearForecastDividendPerShareAnnual")

SESSION_CLOSE = ((dt.date(2024, 11, 5), dt.time(15, 30)), (dt.date(1900, 1, 1), dt.time(15, 0)))
"""(first day, closing time) of the TSE cash session, newest first (the close moved on 2024-11-05)."""
REPORT_LAG_DAYS = 35
"""Typical days from a period's end to its report (TSE asks for at most 45; most report after
25-45): infers the period of a filing that does not state it (the quarter end of the stock's
grid nearest to disclosure - 35 days). On the shared filings 96% of the reports from mid-2022
on find the same period a year earlier this way (93% with 45 days)."""
PERIOD_TYPES = {"1Q": 1, "2Q": 2, "3Q": 3, "4Q": 0, "FY": 0}
"""TypeOfCurrentPeriod -> quarters since the end of the last fiscal year (0: a full year)."""
MIN_EPS_FOR_SHARES = 1.0
"""|EPS| (yen) below which Profit / EPS is too rounded to estimate the share count."""
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 1 / 2, 1 / 5, 1 / 10)
"""Share-count ratios read as a split (1:r) or a consolidation (r < 1) between two filings: the
ratios TSE companies use. Uncommon ones (1:1.5, 1:1.2, 3:1) are not inferred: a share issuance
or a buyback moves the count by such amounts too."""
SPLIT_TOLERANCE = 0.03
"""Relative distance from a SPLIT_RATIOS value within which a jump of the share count counts as
that split. EPS is profit over the period's average share count, so buybacks and issuance move
the implied count by a few percent between filings (real 1:2 splits read 1.98-2.06 here)."""

METHOD = 2
"""Version of how the statement features are computed, part of a build's fingerprint with
statements: the same files built by a different method are a different dataset (2: the split
basis of split-adjusted quotes read from the filings' share counts)."""
FEATURES = ("fin_ey", "fin_bp", "fin_dy", "fin_profit_growth", "fin_days_since", "fin_ret_since")
"""Statement features, normalised per date like the price features (docs/data.md)."""
NEEDS = {
    "fin_ey": "needs a full-year filing, or quarterly ones a year apart, with EarningsPerShare",
    "fin_bp": "needs BookValuePerShare",
    "fin_dy": "needs a dividend forecast (ForecastDividendPerShareAnnual)",
    "fin_profit_growth": "needs filings of the same period a year apart, with Profit",
    "fin_days_since": "needs a filing during the quotes' dates",
    "fin_ret_since": "needs a filing after a stock's first quote",
}
"""What each feature needs from the statements (the build's error when none has it)."""
FLAG = "flag_fin_missing"
"""1 where a stock has no filing known yet (its statement features are then 0)."""
FEATURE_COLUMNS = tuple(f"feat_{n}" for n in FEATURES + (FLAG,))
"""The dataset columns a build with statements adds, after the price features."""
STATE = ("ttm_eps", "bps", "dps", "profit_growth")


def read_statements(path: str | Path) -> pl.DataFrame:
    """The filings as Code, DisclosedDate (date), DisclosedTime (time, null when absent), the
    value columns (float64, null when missing) and the optional period columns present.

    Rows without any value (e.g. filings of columns this build does not read) are left out.
    """
    where = f"statements file {path}"
    df = read_table(path, "statements")
    require_columns(df.columns, REQUIRED, where)
    df = dates_column(codes_as_text(df, "LocalCode", where), "DisclosedDate", where)
    df = df.with_columns(numeric_text(df, c, where) for c in VALUES if c in df.columns)
    df = df.with_columns(_times(df["DisclosedTime"], where))
    if "CurrentPeriodEndDate" in df.columns:
        df = df.with_columns(_optional_date(df["CurrentPeriodEndDate"]))
    if "TypeOfCurrentPeriod" in df.columns:
        df = df.with_columns(pl.col("TypeOfCurrentPeriod").cast(pl.String).str.strip_chars())
    if "DisclosureNumber" in df.columns:
        df = df.with_columns(pl.col("DisclosureNumber").cast(pl.String).str.strip_chars())
    present = [c for c in dict.fromkeys(VALUES + OPTIONAL) if c in df.columns]
    df = df.select(pl.col("LocalCode").alias("Code"), "DisclosedDate", "DisclosedTime", *present)
    return df.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in VALUES if c in df.columns))


def _times(raw: pl.Series, where: str) -> pl.Series:
    """'HH:MM:SS' or 'HH:MM' -> time; empty or null -> null; anything else is an error."""
    if raw.dtype == pl.Time:
        return raw
    text = raw.cast(pl.String).str.strip_chars()
    parsed = pl.select(pl.coalesce(text.str.to_time("%H:%M:%S", strict=False),
                                   text.str.to_time("%H:%M", strict=False))).to_series()
    bad = [(i, v) for i, (v, t) in enumerate(zip(text, parsed)) if v and t is None]
    if bad:
        ex = ", ".join(f"row {i}: {v!r}" for i, v in bad[:5])
        raise DataError(f"{where}: {len(bad)} unreadable time(s) in column 'DisclosedTime' ({ex}); expected HH:MM:SS")
    return parsed.alias("DisclosedTime")


def _optional_date(values: pl.Series) -> pl.Series:
    if values.dtype == pl.Date:
        return values
    if isinstance(values.dtype, pl.Datetime):
        return values.dt.date()
    return values.cast(pl.String).str.strip_chars().str.slice(0, 10).str.to_date(strict=False)


def _close_time() -> pl.Expr:
    """The session's closing time on DisclosedDate."""
    expr = pl.lit(SESSION_CLOSE[-1][1])
    for first, close in reversed(SESSION_CLOSE[:-1]):
        expr = pl.when(pl.col("DisclosedDate") >= first).then(pl.lit(close)).otherwise(expr)
    return expr


def effective_dates(filings: pl.DataFrame, sessions: pl.Series) -> pl.DataFrame:
    """Add EffectiveDate: the first session (of the sorted market calendar `sessions`) whose
    close includes the filing. Filings after the last session are dropped."""
    before_close = pl.col("DisclosedTime").is_not_null() & (pl.col("DisclosedTime") < _close_time())
    first_day = pl.when(before_close).then(pl.col("DisclosedDate")).otherwise(pl.col("DisclosedDate") + pl.duration(days=1))
    cal = pl.DataFrame({"EffectiveDate": sessions.sort().unique(maintain_order=True)})
    out = filings.with_columns(first_day.alias("__first")).sort("__first").join_asof(
        cal, left_on="__first", right_on="EffectiveDate", strategy="forward")
    return out.drop("__first").filter(pl.col("EffectiveDate").is_not_null())


def public_order(filings: pl.DataFrame) -> pl.DataFrame:
    """Filings per stock in the order they became public; filings of one moment in a fixed
    order that does not depend on the file's row order (disclosure number, then the values)."""
    keys = ["Code", "DisclosedDate", "DisclosedTime"]
    keys += [c for c in ("DisclosureNumber",) + VALUES + ("TypeOfCurrentPeriod", "CurrentPeriodEndDate")
             if c in filings.columns]
    return filings.sort(keys, nulls_last=True)


def _split_ratio(ratio: float | None) -> float:
    """The SPLIT_RATIOS value within SPLIT_TOLERANCE of a share-count ratio, else 1.0 (no split)."""
    if ratio is None:
        return 1.0
    return next((r for r in SPLIT_RATIOS if abs(ratio / r - 1.0) <= SPLIT_TOLERANCE), 1.0)


def _implied_shares(profit: float | None, eps: float | None) -> float | None:
    """Profit / EPS, the period's average share count; None where too rounded or not positive."""
    if profit is None or eps is None or abs(eps) < MIN_EPS_FOR_SHARES or profit / eps <= 0:
        return None
    return profit / eps


def inferred_split_basis(filings: pl.DataFrame) -> pl.DataFrame:
    """Add `basis` for quotes that are split-adjusted only: per filing, the product of the split
    ratios of the splits the stock made after it, read from its later filings' share counts.

    A split shows in the filings as a jump of Profit / EarningsPerShare by a SPLIT_RATIOS value
    (both counted on usable filings, `_implied_shares`), and the adjusted prices of every earlier
    day are divided by the same ratio. Dividing a filing's per-share values by its basis puts them
    on the adjusted prices' share basis, so a yield is what it was on that day: this undoes the
    hindsight already in the adjusted prices and adds none (the later filings only say what the
    prices' adjustment already applied). A jump undone by the next usable filing (a one-off
    glitch: a parent-only figure, a misprint) is not a split. Splits after a stock's last usable
    filing, or between filings without a usable EPS, cannot be seen and stay in the prices.
    """
    ordered = public_order(filings)
    shares = [_implied_shares(p, e) for p, e in zip(ordered["Profit"], ordered["EarningsPerShare"])]
    ratio = [1.0] * ordered.height
    codes = ordered["Code"].to_list()
    last: dict[str, int] = {}
    for i, (code, n) in enumerate(zip(codes, shares)):
        if n is None:
            continue
        if code in last:
            ratio[i] = _split_ratio(n / shares[last[code]])
        last[code] = i
    _drop_undone_jumps(codes, shares, ratio)
    basis, after, code = [1.0] * ordered.height, 1.0, None
    for i in range(ordered.height - 1, -1, -1):
        if codes[i] != code:
            code, after = codes[i], 1.0
        basis[i] = after
        after *= ratio[i]
    return ordered.with_columns(pl.Series("basis", basis, dtype=pl.Float64))


def _drop_undone_jumps(codes: list[str], shares: list[float | None], ratio: list[float]) -> None:
    """Set to 1 (in place) a jump after which the stock's next usable filing is back at the share
    count from before it (within SPLIT_TOLERANCE), and that filing's jump back."""
    usable = [i for i, n in enumerate(shares) if n is not None]
    for before, at, after in zip(usable, usable[1:], usable[2:]):
        same_stock = codes[before] == codes[at] == codes[after]
        if same_stock and ratio[at] != 1.0 and abs(shares[after] / shares[before] - 1.0) <= SPLIT_TOLERANCE:
            ratio[at] = ratio[after] = 1.0


def split_summary(filings: pl.DataFrame) -> dict:
    """How many splits `inferred_split_basis` read from the filings, and in how many stocks."""
    jumps = filings.with_columns((pl.col("basis") / pl.col("basis").shift(-1).over("Code")).alias("r"))
    splits = jumps.filter(pl.col("r").is_not_null() & (pl.col("r") != 1.0))
    return {"splits_inferred": splits.height, "split_stocks": splits["Code"].n_unique()}


def _month(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def _position(day: dt.date) -> float:
    """Months since year 0 as a real number; the end of month k (from `_month`) is at k + 1."""
    return _month(day) + (day.day - 1) / calendar.monthrange(day.year, day.month)[1]


@dataclass
class _History:
    """One stock's filings so far, and its state (see `filing_states`)."""

    reports: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)
    """Period-end month -> (YTD profit, YTD EPS on the base share basis), latest revision."""
    grid_votes: Counter = field(default_factory=Counter)
    fy_votes: Counter = field(default_factory=Counter)
    reset_votes: Counter = field(default_factory=Counter)
    last_period: int | None = None
    state: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(STATE))

    def add(self, row: dict) -> None:
        basis = row["basis"]
        for key, column in (("bps", "BookValuePerShare"), ("dps", "ForecastDividendPerShareAnnual"),
                            ("dps", "NextYearForecastDividendPerShareAnnual")):
            value = row.get(column)
            if value is not None:
                self.state[key] = value / basis
                if key == "dps":
                    break
        profit, eps = row["Profit"], row["EarningsPerShare"]
        if profit is None and eps is None:
            return
        period, quarter = self._period(row)
        if period is None:
            return
        self.reports[period] = (profit, None if eps is None else eps / basis)
        if self.last_period is None or period >= self.last_period:
            self.last_period = period
            self._update_state(period, quarter)

    def _period(self, row: dict) -> tuple[int | None, int | None]:
        """(period-end month, quarters since the fiscal year's end or None when unknown)."""
        stated = row.get("CurrentPeriodEndDate")
        kind = PERIOD_TYPES.get(row.get("TypeOfCurrentPeriod") or "")
        if stated is not None and kind is not None:
            period = _month(stated)
            self.fy_votes[(period - 3 * kind) % 12] += 1
            return period, kind
        guess = _position(row["DisclosedDate"] - dt.timedelta(days=REPORT_LAG_DAYS))
        nearest = round(guess) - 1
        self.grid_votes[nearest % 3] += 1
        residue = max(range(3), key=lambda r: (self.grid_votes[r], r == nearest % 3))
        period = min((nearest + j for j in range(-2, 3) if (nearest + j) % 3 == residue),
                     key=lambda k: abs(k + 1 - guess))
        self._vote_fiscal_year_end(row, period)
        return period, self._quarter(period)

    def _vote_fiscal_year_end(self, row: dict, period: int) -> None:
        """Full-year filings carry book value but no current-year dividend forecast; and the
        cumulative profit drops right after a fiscal year ends."""
        if row["BookValuePerShare"] is not None and row["ForecastDividendPerShareAnnual"] is None:
            self.fy_votes[period % 12] += 1
        before = self.reports.get(period - 3)
        if before and before[0] is not None and row["Profit"] is not None and abs(row["Profit"]) < abs(before[0]):
            self.reset_votes[(period - 3) % 12] += 1

    def _quarter(self, period: int) -> int | None:
        months = [(period - 3 * q) % 12 for q in range(4)]
        fy = [self.fy_votes[m] for m in months]
        score = [(r,) if len(set(fy)) == 1 else (f, r) for f, r in zip(fy, (self.reset_votes[m] for m in months))]
        best = max(score)
        if not any(best) or score.count(best) > 1:
            return None
        return score.index(best)

    def _update_state(self, period: int, quarter: int | None) -> None:
        profit, eps = self.reports[period]
        earlier = self.reports.get(period - 12)
        if profit is not None and earlier and earlier[0]:
            self.state["profit_growth"] = (profit - earlier[0]) / abs(earlier[0])
        if quarter == 0:
            if eps is not None:
                self.state["ttm_eps"] = eps
            return
        year_end = self.reports.get(period - 3 * quarter) if quarter else None
        if eps is not None and year_end and year_end[1] is not None and earlier and earlier[1] is not None:
            self.state["ttm_eps"] = year_end[1] + eps - earlier[1]


def filing_states(filings: pl.DataFrame) -> pl.DataFrame:
    """Per stock and EffectiveDate, the state after every filing that counts by that session.

    `filings` has the columns of `read_statements`, EffectiveDate and `basis` (the quotes'
    cumulative split factor at EffectiveDate, 1.0 without one). State columns: `ttm_eps`
    (trailing twelve months: the full year's EPS, or last full year + this year's cumulative
    EPS - the same period's a year earlier), `bps` (latest book value per share), `dps` (latest
    forecast of the annual dividend per share), `profit_growth` ((cumulative profit - the same
    period's a year earlier) / |the latter|); per-share values on the base share basis, each
    the most recent one that could be computed.
    """
    rows = []
    columns = list(filings.columns)
    history: _History | None = None
    code = None
    for values in public_order(filings).iter_rows():
        row = dict(zip(columns, values))
        if row["Code"] != code:
            code, history = row["Code"], _History()
        for column in VALUES + OPTIONAL:
            row.setdefault(column, None)
        history.add(row)
        rows.append({"Code": code, "EffectiveDate": row["EffectiveDate"], **history.state})
    schema = {"Code": pl.String, "EffectiveDate": pl.Date, **dict.fromkeys(STATE, pl.Float64)}
    states = pl.DataFrame(rows, schema=schema, orient="row")
    # the state after the last filing counting by a session (rows are in public order)
    return states.group_by("Code", "EffectiveDate", maintain_order=True).last().sort("Code", "EffectiveDate")


def daily_features(df: pl.DataFrame, states: pl.DataFrame) -> pl.DataFrame:
    """Add the statement features (FEATURES, unnormalised) and FLAG to one chunk of whole stocks.

    `df`: rows sorted by (Code, Date), one per market day of each stock, with `di` (market-day
    number), `close_ff` (adjusted close, forward-filled), `close_raw` (traded close, null when
    not traded) and `basis` (cumulative split factor). Yields divide by the day's price on the
    base share basis, close_raw / basis.
    """
    c = pl.col
    df = df.with_columns(
        (c("close_raw").forward_fill() / c("basis").forward_fill()).over("Code").alias("__price"),
        c("close_ff").shift(1).over("Code").alias("__close_before"),
    )
    marks = df.select("Code", c("Date").alias("EffectiveDate"), c("di").alias("__eff_di"), "__close_before")
    states = states.join(marks, on=["Code", "EffectiveDate"], how="left")
    # a filing from before the stock's first quote counts from that first day, with no return
    joined = df.sort("Date").join_asof(states.sort("EffectiveDate"), left_on="Date", right_on="EffectiveDate",
                                      by="Code", strategy="backward", check_sortedness=False)
    joined = joined.sort("Code", "Date")
    first_di = c("di").first().over("Code")
    price = c("__price")
    return joined.with_columns(
        (c("ttm_eps") / price).alias("fin_ey"),
        (c("bps") / price).alias("fin_bp"),
        (c("dps") / price).alias("fin_dy"),
        c("profit_growth").alias("fin_profit_growth"),
        (c("di") - pl.max_horizontal(c("__eff_di").fill_null(first_di), first_di)).cast(pl.Float64).alias("fin_days_since"),
        (c("close_ff") / c("__close_before_right") - 1).alias("fin_ret_since"),
        c("EffectiveDate").is_null().cast(pl.Float64).alias(FLAG),
    ).drop("__price", "__close_before", "__close_before_right", "__eff_di", "EffectiveDate", *STATE)
