"""Backward-looking feature definitions (polars expressions) of the model-ready dataset.

Three stages, each only ever looking backward in time:
1. `stock_features`: per stock over its market-day rows (rolling windows, backward shifts,
   exponential averages), one stock at a time via `.over("Code")`.
2. `market_features`: on the market calendar (index or equal-weighted market), then z-scored
   against their own trailing 252 days (they are equal for every stock on a date, so a
   cross-sectional normalisation would make them zero).
3. `sector_features`: within one date only (sector means, breadth, stock minus sector).
The window lengths are the definitions of the features, hence module constants.
"""

from __future__ import annotations

import math

import polars as pl

RET_WINDOWS = (1, 5, 10, 20, 60)
VOL_WINDOWS = (5, 20, 60)
MA_WINDOWS = (5, 20, 60)
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BETA_WINDOW = 60
SHORT_HISTORY = 60
YEAR = 252
"""Trading days in a year: trailing window of the market z-score and of 52-week highs."""
MIN_WINDOW_SHARE = 0.8
"""A rolling statistic needs at least this share of its window observed (no-trade days skip)."""

STOCK_FEATURES = (
    "ret_1d", "ret_5d", "ret_10d", "ret_20d", "ret_60d",
    "vol_5", "vol_20", "vol_60",
    "volume_z20", "volume_z60", "volume_ratio_5_20", "turnover_z20", "log_turnover_20",
    "hl_range", "hl_range_20", "close_loc", "gap", "intraday",
    "ma_dist_5", "ma_dist_20", "ma_dist_60", "rsi_14", "macd", "macd_signal", "macd_hist",
    "beta_60", "corr_60", "idio_ret_1d", "idio_vol_20",
    "max_dd_20", "dist_high_60", "dist_high_252", "dist_low_252",
)
SECTOR_FEATURES = (
    "sec_ret_1d", "sec_ret_5d", "sec_ret_20d", "sec_breadth", "sec_vol_20",
    "sec_rel_ret_1d", "sec_rel_ret_5d", "sec_rel_ret_20d",
)
MARKET_FEATURES = ("mkt_ret_1d", "mkt_ret_5d", "mkt_ret_20d", "mkt_vol_20")
ASIS_FEATURES = ("days_listed", "flag_turnover_missing", "flag_prev_notrade", "flag_short_history")
"""Bounded in [0, 1] by construction; kept as they are (a 0/1 flag has no useful z-score)."""
ALL_FEATURES = tuple(f"feat_{n}" for n in STOCK_FEATURES + SECTOR_FEATURES + MARKET_FEATURES + ASIS_FEATURES)


def _min(window: int) -> int:
    return max(1, math.ceil(window * MIN_WINDOW_SHARE))


def _mean(x: pl.Expr, w: int) -> pl.Expr:
    return x.rolling_mean(w, min_samples=_min(w))


def _std(x: pl.Expr, w: int) -> pl.Expr:
    return x.rolling_std(w, min_samples=max(2, _min(w)))


def _zscore(x: pl.Expr, w: int) -> pl.Expr:
    sd = _std(x, w)
    return pl.when(sd > 0).then((x - _mean(x, w)) / sd)


def _ratio(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(b != 0).then(a / b)


def base_columns(days_listed_cap: int) -> list[pl.Expr]:
    """Per stock (rows sorted by Code, Date, one row per market day from listing):
    traded flag, forward-filled close and the 1-day return since the last traded close."""
    c = pl.col
    ff = c("close").forward_fill().over("Code")
    return [
        ff.alias("close_ff"),
        pl.when(c("traded")).then(c("close") / ff.shift(1).over("Code") - 1).alias("ret_1d"),
        (pl.int_range(pl.len()).over("Code").clip(upper_bound=days_listed_cap) / days_listed_cap).alias("days_listed"),
    ]


def stock_features() -> list[pl.Expr]:
    """Expressions over one stock's rows; need close_ff, ret_1d, traded and the market columns."""
    c, on = pl.col, (lambda e: pl.when(pl.col("traded")).then(e))
    ff, r = c("close_ff"), c("ret_1d")
    lv, lt = pl.when(c("traded")).then(c("volume").log1p()), c("turnover").log1p()
    ema = lambda x, span: x.ewm_mean(span=span, adjust=False, min_samples=span)  # noqa: E731
    exprs = {f"ret_{w}d": on(ff / ff.shift(w) - 1) for w in RET_WINDOWS[1:]}
    exprs["ret_1d"] = r
    exprs |= {f"vol_{w}": on(_std(r, w)) for w in VOL_WINDOWS}
    exprs |= {
        "volume_z20": _zscore(lv, 20), "volume_z60": _zscore(lv, 60),
        "volume_ratio_5_20": _mean(lv, 5) - _mean(lv, 20),
        "turnover_z20": _zscore(lt, 20), "log_turnover_20": on(_mean(lt, 20)),
        "hl_range": _ratio(c("high") - c("low"), c("close")),
        "hl_range_20": on(_mean(_ratio(c("high") - c("low"), c("close")), 20)),
        # a limit-up/down day has high == low: the close sits in the middle by definition
        "close_loc": on(pl.when(c("high") > c("low")).then((c("close") - c("low")) / (c("high") - c("low"))).otherwise(0.5)),
        "gap": on(c("open") / ff.shift(1) - 1),
        "intraday": _ratio(c("close"), c("open")) - 1,
    }
    exprs |= {f"ma_dist_{w}": on(ff / _mean(ff, w) - 1) for w in MA_WINDOWS}
    gain, loss = _mean(r.clip(lower_bound=0), RSI_WINDOW), _mean((-r).clip(lower_bound=0), RSI_WINDOW)
    exprs["rsi_14"] = on(_ratio(gain, gain + loss) - 0.5)
    macd = (ema(ff, MACD_FAST) - ema(ff, MACD_SLOW)) / ff
    exprs |= {"macd": on(macd), "macd_signal": on(ema(macd, MACD_SIGNAL)),
              "macd_hist": on(macd - ema(macd, MACD_SIGNAL))}
    exprs |= {
        "max_dd_20": on(ff / ff.rolling_max(20, min_samples=1) - 1),
        "dist_high_60": on(ff / ff.rolling_max(60, min_samples=_min(60)) - 1),
        "dist_high_252": on(ff / ff.rolling_max(YEAR, min_samples=_min(YEAR)) - 1),
        "dist_low_252": on(ff / ff.rolling_min(YEAR, min_samples=_min(YEAR)) - 1),
        "flag_prev_notrade": (~c("traded").shift(1).fill_null(True)).cast(pl.Float64),
        "flag_short_history": (pl.int_range(pl.len()) < SHORT_HISTORY).cast(pl.Float64),
        "flag_turnover_missing": c("turnover").is_null().cast(pl.Float64),
    }
    return [e.over("Code").alias(n) for n, e in exprs.items()]


def beta_features() -> list[pl.Expr]:
    """Rolling beta / correlation of the stock's 1-day return with the market's (same rows)."""
    c = pl.col
    both = c("ret_1d").is_not_null() & c("mkt_r").is_not_null()
    x, m = pl.when(both).then(c("ret_1d")), pl.when(both).then(c("mkt_r"))
    w = BETA_WINDOW
    cov = _mean(x * m, w) - _mean(x, w) * _mean(m, w)
    var_m = _mean(m * m, w) - _mean(m, w) ** 2
    var_x = _mean(x * x, w) - _mean(x, w) ** 2
    beta = _ratio(cov, var_m)
    corr = pl.when((var_m > 0) & (var_x > 0)).then(cov / (var_m * var_x).sqrt())
    return [beta.over("Code").alias("beta_60"), corr.over("Code").alias("corr_60")]


def idio_features() -> list[pl.Expr]:
    """Residual of the 1-day return after the stock's beta times the market return."""
    idio = pl.col("ret_1d") - pl.col("beta_60") * pl.col("mkt_r")
    return [idio.alias("idio_ret_1d"), _std(idio, 20).over("Code").alias("idio_vol_20")]


def market_features(calendar: pl.DataFrame) -> pl.DataFrame:
    """Date, mkt_r (raw 1-day market return) and the trailing-z-scored market features.

    `calendar` has Date and mkt_close (index close, or a chained equal-weighted market).
    """
    c = pl.col
    ff = c("mkt_close").forward_fill()
    raw = calendar.sort("Date").with_columns((ff / ff.shift(1) - 1).alias("mkt_r"))
    raw = raw.with_columns(
        c("mkt_r").alias("mkt_ret_1d"),
        (ff / ff.shift(5) - 1).alias("mkt_ret_5d"),
        (ff / ff.shift(20) - 1).alias("mkt_ret_20d"),
        _std(c("mkt_r"), 20).alias("mkt_vol_20"),
    )
    return raw.select("Date", "mkt_r", *[_zscore(c(n), YEAR).alias(n) for n in MARKET_FEATURES])


def sector_features() -> list[list[pl.Expr]]:
    """Two stages of within-date sector expressions (null where the sector is unknown)."""
    c, by = pl.col, ["Date", "Sector33Code"]
    has = c("Sector33Code").is_not_null()
    first = [
        pl.when(has).then(c(f"ret_{w}").mean().over(by)).alias(f"sec_ret_{w}") for w in ("1d", "5d", "20d")
    ] + [
        pl.when(has).then((c("ret_1d") > 0).cast(pl.Float64).mean().over(by)).alias("sec_breadth"),
        pl.when(has).then(c("vol_20").mean().over(by)).alias("sec_vol_20"),
    ]
    second = [(c(f"ret_{w}") - c(f"sec_ret_{w}")).alias(f"sec_rel_ret_{w}") for w in ("1d", "5d", "20d")]
    return [first, second]
