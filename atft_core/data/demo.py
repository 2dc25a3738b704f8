"""A synthetic Japanese-equity market with planted, known structure.

Daily return of stock i (sector k, supply chain g) on day t, as an overnight and an intraday part:

    r[t,i] = beta_i * m[t] + s[t,k] + c[t,g] - REVERSAL * e[t-1,i]             (overnight)
           + LEAD_LAG * mean_{partners j of i} e[t-1,j]                        (overnight)
           + e[t,i]                                                            (intraday)

m: market factor, s: sector factors, c: supply-chain factors, e: Student-t idiosyncratic news
(fat tails). Common moves come overnight (Tokyo opens on the US session) and a stock's own news
breaks during the session, so its open-to-close return is its news. Supply chains cut across
sectors: walking the stocks in sector order, they are dealt out to the chains like cards, so a
chain's members sit in different sectors (as long as no sector has more stocks than there are
chains). A stock's *partners* are the other members of its chain.

The second line is the cross-stock signal: the partners' news of today reaches the stock at
tomorrow's open. The stock's own features do not carry it: its own return has its own news and
the chain factor but not the partners' news, its sector means are over stocks of other chains,
and the index follows the market factor m only. (The one trace: a stock's own news counts for its
partners but not for itself, so within a chain the signal leans slightly against the own news.)
The chain factor makes partners strongly correlated, so the trailing-correlation graph links
them, and a model that looks at graph neighbours (the GAT) can read the signal off their intraday
returns; a per-stock model cannot.

The raw files (J-Quants-style quotes, listed info, a TOPIX-like index) are written to
`<out stem>_raw/` and then passed through the same `build` as real data. `truth.parquet` there
holds, per (Code, Date), the planted signal (the lead-lag part of r[t+1], known at t) and the
stock's chain. Same seed, same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .build import BuildParams, build_dataset
from .errors import DataError

SECTOR33_CODES = (
    "0050", "1050", "2050", "3050", "3100", "3150", "3200", "3250", "3300", "3350", "3400",
    "3450", "3500", "3550", "3600", "3650", "3700", "3750", "3800", "4050", "5050", "5100",
    "5150", "5200", "5250", "6050", "6100", "7050", "7100", "7150", "7200", "8050", "9050",
)
"""The 33 TSE sector codes as J-Quants writes them."""

# Definition of the synthetic market (daily scales of a large-cap Japanese stock; the chain factor
# is strong so that trailing correlations tell a stock's partners from the rest).
MARKET_VOL, SECTOR_VOL, CHAIN_VOL, IDIO_VOL = 0.010, 0.006, 0.020, 0.016
T_DOF = 4
"""Degrees of freedom of the Student-t idiosyncratic noise (fat tails)."""
REVERSAL = 0.08
"""Share of yesterday's idiosyncratic shock that reverses today."""
LEAD_LAG = 0.7
"""Loading of a stock's return on its chain partners' mean news of the previous day."""
STOCKS_PER_SECTOR = 12
STOCKS_PER_CHAIN = 8
OPEN_NOISE = 0.002
"""Noise of the open around the overnight move (auction noise)."""
NO_TRADE_RATE = 0.0005
LATE_LISTING_SHARE = 0.08
TURNOVER_MISSING_SHARE = 0.35
"""Turnover is missing on the first share of days (as in older J-Quants years)."""
OUTAGE_AT = 0.6
"""A whole-market no-trade day (like the TSE outage of 2020-10-01) at this share of the days."""
FIRST_DAY = dt.date(2016, 1, 4)
INDEX_HISTORY = 260
"""Days of index history before the first stock quote (warms up the market z-scores)."""
MIN_STOCKS, MIN_DAYS = 20, 260
"""Smallest demo whose 252-day features and cross-sections are meaningful."""


def raw_folder(out: Path) -> Path:
    """Where `demo` writes the raw files for PATH.parquet: PATH_raw/."""
    return out.with_name(f"{out.stem}_raw")


def _dates(n_days: int) -> np.ndarray:
    start = np.datetime64(FIRST_DAY, "D")
    return np.busday_offset(start, np.arange(n_days), roll="forward")


def _t_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(T_DOF, size=shape) / np.sqrt(T_DOF / (T_DOF - 2))


def simulate_returns(n_stocks: int, n_days: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Returns r and news e [D, N] and the planted structure (sector, chain, signal [D, N])."""
    n_sectors = int(np.clip(n_stocks // STOCKS_PER_SECTOR, 2, len(SECTOR33_CODES)))
    sector = np.sort(rng.integers(0, n_sectors, n_stocks))
    sector[:n_sectors] = np.arange(n_sectors)  # every sector has a stock
    sector = np.sort(sector)
    n_chains = max(2, n_stocks // STOCKS_PER_CHAIN)
    chain = np.arange(n_stocks) % n_chains  # dealt in sector order: a chain spans sectors
    beta = rng.uniform(0.6, 1.4, n_stocks)
    vol_scale = rng.uniform(0.7, 1.4, n_stocks)
    m = MARKET_VOL * _t_noise(rng, (n_days, 1))
    s = SECTOR_VOL * rng.standard_normal((n_days, n_sectors))
    c = CHAIN_VOL * rng.standard_normal((n_days, n_chains))
    e = IDIO_VOL * vol_scale * _t_noise(rng, (n_days, n_stocks))
    e_prev = np.vstack([np.zeros((1, n_stocks)), e[:-1]])
    r = beta * m + s[:, sector] + c[:, chain] + e - REVERSAL * e_prev
    chain_news = np.stack([e[:, chain == g].sum(axis=1) for g in range(n_chains)], axis=1)
    partners = np.bincount(chain)[chain] - 1  # >= STOCKS_PER_CHAIN - 1
    signal = LEAD_LAG * (chain_news[:, chain] - e) / partners  # known at t, pays at t+1
    r[1:] += signal[:-1]
    return {"r": np.clip(r, -0.5, 1.0), "news": e, "m": m[:, 0], "sector": sector, "chain": chain,
            "signal": signal}


def _quotes(sim: dict, dates: np.ndarray, codes: list[str], rng: np.random.Generator) -> pl.DataFrame:
    r = sim["r"]
    n_days, n_stocks = r.shape
    close = rng.lognormal(7.2, 0.8, n_stocks) * np.cumprod(1 + r, axis=0)
    prev = np.vstack([close[:1] / (1 + r[:1]), close[:-1]])
    overnight = (1 + r) / (1 + sim["news"]) - 1  # the news is the open-to-close return
    open_ = prev * (1 + overnight + OPEN_NOISE * rng.standard_normal(r.shape))
    high = np.maximum(open_, close) * (1 + np.abs(0.006 * rng.standard_normal(r.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(0.006 * rng.standard_normal(r.shape)))
    volume = np.round(rng.lognormal(12, 1, n_stocks) * np.exp(0.3 * rng.standard_normal(r.shape) + 15 * np.abs(r)), -2)
    turnover = volume * (open_ + close) / 2
    turnover[: int(TURNOVER_MISSING_SHARE * n_days)] = np.nan
    no_trade = rng.random(r.shape) < NO_TRADE_RATE
    no_trade[int(OUTAGE_AT * n_days)] = True
    for a in (open_, high, low, close, turnover):
        a[no_trade] = np.nan
    volume[no_trade] = 0.0
    listed = np.zeros(r.shape, bool)
    late = rng.random(n_stocks) < LATE_LISTING_SHARE
    first = np.where(late, rng.integers(int(0.1 * n_days), int(0.6 * n_days), n_stocks), 0)
    listed[np.arange(n_days)[:, None] >= first[None, :]] = True
    rows = np.nonzero(listed)  # day-major: sorted by (Date, Code) like J-Quants exports
    return pl.DataFrame({
        "Date": dates[rows[0]].astype("datetime64[D]"),
        "Code": np.asarray(codes)[rows[1]],
        "AdjustmentOpen": open_[rows], "AdjustmentHigh": high[rows], "AdjustmentLow": low[rows],
        "AdjustmentClose": close[rows], "AdjustmentVolume": volume[rows], "TurnoverValue": turnover[rows],
    })


STATEMENT_TIMES = ("11:30:00", "13:00:00", "14:00:00", "15:00:00", "15:30:00", "16:00:00", "")
"""Disclosure times the demo's filings are drawn from ("" : no time given)."""


def _statements(codes: list[str], dates: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """Quarterly filings in J-Quants `statements` columns, fiscal years ending in March.

    Profit and EPS are cumulative for the fiscal year to date; book value comes with full-year
    filings, the current year's dividend forecast with the others. Each quarter is reported
    20-50 days after it ends, at a time drawn from STATEMENT_TIMES (some during the session,
    most at or after the close); some filings are revised a few days later.
    """
    first, last = dates[0].astype(dt.date), dates[-1].astype(dt.date)
    quarter_ends = [dt.date(y, m, 31 if m in (3, 12) else 30) for y in range(first.year - 1, last.year + 1)
                    for m in (3, 6, 9, 12)]
    rows = []
    for code in codes:
        shares, book = rng.lognormal(17, 1), rng.lognormal(7, 0.5)
        quarterly, ytd = rng.lognormal(-0.5, 0.4) * shares, 0.0
        for end in quarter_ends:
            fiscal_quarter = (end.month - 3) % 12 // 3  # 0: the year's last quarter (March)
            ytd = (0.0 if fiscal_quarter == 1 else ytd) + quarterly * (1 + 0.3 * rng.standard_normal())
            quarterly *= np.exp(0.08 * rng.standard_normal())
            disclosed = end + dt.timedelta(days=int(rng.integers(20, 50)))
            if not first <= disclosed <= last:
                continue
            full_year = fiscal_quarter == 0
            row = {"DisclosedDate": disclosed.isoformat(), "DisclosedTime": str(rng.choice(STATEMENT_TIMES)),
                   "LocalCode": code, "Profit": round(ytd, -6), "EarningsPerShare": round(ytd / shares, 2),
                   "BookValuePerShare": round(book, 2) if full_year else None,
                   "ForecastDividendPerShareAnnual": None if full_year else round(0.3 * quarterly * 4 / shares, 0)}
            rows.append(row)
            if rng.random() < 0.05:
                revised = disclosed + dt.timedelta(days=int(rng.integers(1, 10)))
                rows.append(row | {"DisclosedDate": revised.isoformat(), "EarningsPerShare": round(1.02 * ytd / shares, 2)})
            book *= np.exp(0.02 + 0.02 * rng.standard_normal()) if full_year else 1.0
    return pl.DataFrame(rows, schema={"DisclosedDate": pl.String, "DisclosedTime": pl.String, "LocalCode": pl.String,
                                      "Profit": pl.Float64, "EarningsPerShare": pl.Float64,
                                      "BookValuePerShare": pl.Float64, "ForecastDividendPerShareAnnual": pl.Float64})


def _index(sim: dict, dates: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """TOPIX-like index of the market factor, with INDEX_HISTORY earlier days (as real TOPIX has)."""
    early = MARKET_VOL * _t_noise(rng, (INDEX_HISTORY,))
    dates = np.concatenate([np.busday_offset(dates[0], np.arange(-INDEX_HISTORY, 0), roll="backward"), dates])
    close = 1500.0 * np.cumprod(1 + np.concatenate([early, sim["m"]]))
    prev = np.concatenate([[1500.0], close[:-1]])
    return pl.DataFrame({"Date": dates.astype("datetime64[D]"), "Code": "0000", "Open": prev,
                         "High": np.maximum(prev, close), "Low": np.minimum(prev, close), "Close": close})


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    # pyarrow with fixed options and no custom metadata: the same frame gives the same bytes
    pq.write_table(df.to_arrow().cast(pa.schema([
        pa.field(f.name, pa.string() if f.name == "Code" else f.type) for f in df.to_arrow().schema])),
        path, compression="zstd")


def write_raw(out_dir: Path, n_stocks: int, n_days: int, seed: int) -> dict[str, Path]:
    """Write quotes, listed info, index and truth for a demo market; returns their paths."""
    if n_stocks < MIN_STOCKS or n_days < MIN_DAYS:
        raise DataError(f"demo: need at least {MIN_STOCKS} stocks and {MIN_DAYS} days, got {n_stocks} x {n_days}")
    if n_stocks > 8699:
        raise DataError(f"demo: at most 8699 stocks (4-digit codes), got {n_stocks}")
    rng = np.random.default_rng(seed)
    sim = simulate_returns(n_stocks, n_days, rng)
    dates = _dates(n_days)
    codes = [f"{1301 + i:04d}0" for i in range(n_stocks)]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in (("quotes", "daily_quotes.parquet"), ("listed_info", "listed_info.csv"),
                                          ("index", "topix.parquet"), ("truth", "truth.parquet"),
                                          ("statements", "statements.parquet"))}
    _write_parquet(_quotes(sim, dates, codes, rng), paths["quotes"])
    sectors = [SECTOR33_CODES[k] for k in sim["sector"]]
    pl.DataFrame({"Code": codes, "CompanyName": [f"Demo {c[:4]}" for c in codes],
                  "Sector17Code": [str(1 + k % 17) for k in sim["sector"]], "Sector33Code": sectors,
                  "Sector33CodeName": [f"Sector {s}" for s in sectors]}).write_csv(paths["listed_info"])
    _write_parquet(_index(sim, dates, rng), paths["index"])
    day, stock = np.meshgrid(np.arange(n_days), np.arange(n_stocks), indexing="ij")
    _write_parquet(pl.DataFrame({
        "Date": dates[day.ravel()].astype("datetime64[D]"), "Code": np.asarray(codes)[stock.ravel()],
        "chain": sim["chain"][stock.ravel()], "signal": sim["signal"].ravel(),
    }), paths["truth"])
    # a stream of its own, so the statements leave the market (and the default demo) as it was
    _write_parquet(_statements(codes, dates, np.random.default_rng([seed, 1])), paths["statements"])
    return paths


def make_demo(out: str | Path, n_stocks: int = 300, n_days: int = 750, seed: int = 0,
              log: Callable[[str], None] | None = None):
    """Write a demo market's raw files next to `out` and build `out` from them (DatasetSummary)."""
    out = Path(out)
    if out.suffix != ".parquet":
        raise DataError(f"--out {out}: the dataset must be a .parquet file")
    paths = write_raw(raw_folder(out), n_stocks, n_days, seed)
    if log:
        log(f"demo market: {n_stocks} stocks x {n_days} days, seed {seed}, raw files in {raw_folder(out)}")
    return build_dataset(paths["quotes"], paths["listed_info"], out, index=paths["index"], params=BuildParams(), log=log)
