"""Cross-sectional evaluation metrics: per date first, then over dates (numpy, float64).

Every function takes ``pred``, ``target`` and ``mask``, each ``[D, N]`` (dates x stocks). A cell
counts only where ``mask`` is true and both ``pred`` and ``target`` are finite. Daily series are
``[D]`` arrays with NaN on dates that have fewer than two valid stocks (a cross-section of one
has no correlation, spread or dispersion); summaries drop those dates.

Definitions (see DESIGN.md, "Metric definitions"):

- IC: Pearson correlation of prediction and realised return across the date's stocks.
- RankIC: Spearman correlation, i.e. Pearson of ranks with ties averaged.
- ICIR / RankICIR: mean / std (ddof=1) of the daily series.
- Long-short: mean return of the top decile minus the bottom decile by prediction
  (``k = max(1, floor(n * quantile))`` stocks per leg); Sharpe = mean / std * sqrt(252).
- JPX spread (Kaggle JPX 2022): rank by prediction; the top and bottom ``k`` stocks
  (``k = 200``, or ``floor(0.2 n)`` when fewer than 1,000 stocks) weighted linearly 2 -> 1
  from the extreme inwards; ``spread = sum(w r_top)/mean(w) - sum(w r_bottom)/mean(w)``;
  score = mean / std (ddof=1) of the daily spreads, not annualised.
- Hit rate: share of stocks whose demeaned prediction has the same sign as the demeaned target.
- Prediction std: cross-sectional std (ddof=0) of the predictions; near 0 = degenerate model.
- Paired t (`paired_t`): of two aligned daily series, mean / standard error of their difference.

A correlation on a date where the predictions (or targets) are all equal is undefined and is
NaN for that date; the prediction std shows such a degenerate model directly.

Orders among equal predictions (long-short legs, JPX ranks, deciles) follow the stock order
(stable sort), so results are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

TRADING_DAYS_PER_YEAR = 252
"""Annualisation factor for the daily long-short Sharpe."""
JPX_PORTFOLIO_SIZE = 200
"""Stocks per leg in the JPX 2022 competition metric."""
JPX_SMALL_UNIVERSE = 1000
"""Below this many stocks on a date, a JPX leg is JPX_SMALL_FRACTION of them instead of 200."""
JPX_SMALL_FRACTION = 0.2
JPX_TOP_WEIGHT = 2.0
"""Weight of the best-ranked stock in each JPX leg; weights fall linearly to 1."""
DEFAULT_LS_QUANTILE = 0.1
ROUNDING_TOL = 1e-12
"""Relative size below which a demeaned value counts as 0 (it is the rounding of the mean)."""
MIN_STOCKS = 2
"""Fewest valid stocks for a date to count."""

SUMMARY_KEYS = ("ic", "rank_ic", "icir", "rank_icir", "ls_sharpe", "jpx_sharpe", "hit_rate", "pred_std", "n_days")


# ---------------------------------------------------------------------------------------------
# Input handling


def _prepare(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies with invalid cells set to NaN, and the combined validity mask [D, N]."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if p.ndim != 2 or p.shape != t.shape or p.shape != m.shape:
        raise ValueError(
            f"metrics: pred, target and mask must all be [dates, stocks]; got shapes "
            f"{p.shape}, {t.shape}, {m.shape}"
        )
    valid = m & np.isfinite(p) & np.isfinite(t)
    return np.where(valid, p, np.nan), np.where(valid, t, np.nan), valid


def _demeaned(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """x minus its row mean over the valid cells; 0 where invalid. x: [D, N]."""
    xv = np.where(valid, x, 0.0)
    mean = xv.sum(axis=1, keepdims=True) / np.maximum(valid.sum(axis=1, keepdims=True), 1)
    return np.where(valid, xv - mean, 0.0)


def _sign(centered: np.ndarray, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Sign of demeaned values, 0 within rounding of the mean (equal values are not + or -)."""
    scale = np.abs(np.where(valid, x, 0.0)).max(axis=1, keepdims=True) if x.size else 0.0
    return np.where(np.abs(centered) <= ROUNDING_TOL * scale, 0.0, np.sign(centered))


def _rowwise_pearson(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pearson correlation per row over the valid cells; NaN where undefined. x, y: [D, N]."""
    n = valid.sum(axis=1)
    xc, yc = _demeaned(x, valid), _demeaned(y, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (xc * yc).sum(axis=1)
        denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
        r = cov / denom
    r[(n < MIN_STOCKS) | ~(denom > 0)] = np.nan
    return r


def _rows_with_enough(valid: np.ndarray) -> np.ndarray:
    return valid.sum(axis=1) >= MIN_STOCKS


# ---------------------------------------------------------------------------------------------
# Daily series


def daily_ic(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson IC per date. Shapes: [D, N] x3 -> [D]."""
    p, t, valid = _prepare(pred, target, mask)
    return _rowwise_pearson(p, t, valid)


def daily_rank_ic(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Spearman RankIC per date (Pearson of average ranks). Shapes: [D, N] x3 -> [D]."""
    p, t, valid = _prepare(pred, target, mask)
    # Invalid cells are NaN, so 'omit' ranks each date over its valid stocks only.
    rp = rankdata(p, axis=1, nan_policy="omit")
    rt = rankdata(t, axis=1, nan_policy="omit")
    return _rowwise_pearson(rp, rt, valid)


def daily_rank_ic_by_group(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Spearman RankIC per date within each group of stocks (e.g. sectors): stocks are ranked
    against the other stocks of their group only. groups: [N] ints 0..G-1.
    Shapes: [D, N] x3, [N] -> [G, D] (NaN where a group has fewer than two valid stocks).
    """
    p, t, valid = _prepare(pred, target, mask)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (p.shape[1],) or (len(groups) and groups.min() < 0):
        raise ValueError(f"daily_rank_ic_by_group: groups must be [N={p.shape[1]}] ints >= 0, got shape {groups.shape}")
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    # Rank once over all stocks with each group's values moved into a range of its own: a stock's
    # rank within its group is then its overall rank minus the valid stocks of lower groups.
    below = np.cumsum(np.stack([(valid & (groups == g)).sum(axis=1) for g in range(n_groups)], axis=1), axis=1)
    below = np.concatenate([np.zeros((p.shape[0], 1)), below[:, :-1]], axis=1) if n_groups else below
    offset = np.asarray(groups, dtype=np.float64) * (p.shape[1] + 1)
    ranks = []
    for x in (p, t):
        within = rankdata(x, axis=1, nan_policy="omit") + offset  # NaN stays NaN
        ranks.append(rankdata(within, axis=1, nan_policy="omit") - below[:, groups])
    out = np.full((n_groups, p.shape[0]), np.nan)
    for g in range(n_groups):
        cols = groups == g
        out[g] = _rowwise_pearson(ranks[0][:, cols], ranks[1][:, cols], valid[:, cols])
    return out


def _ordered_targets(p_row: np.ndarray, t_row: np.ndarray, valid_row: np.ndarray) -> np.ndarray:
    """Targets of one date's valid stocks ordered from the highest prediction to the lowest."""
    p, t = p_row[valid_row], t_row[valid_row]
    order = np.argsort(-p, kind="stable")
    return t[order]


def long_short_weights(pred: np.ndarray, mask: np.ndarray, quantile: float = DEFAULT_LS_QUANTILE) -> np.ndarray:
    """The decile long-short book of each date: +1/k on the k highest predictions, -1/k on the
    k lowest (``k = max(1, floor(n * quantile))`` of the date's n valid stocks), 0 elsewhere.

    A date with fewer than two valid stocks holds no book (all 0). Each leg sums to 1 in
    absolute value, so the book is dollar-neutral with gross exposure 2. A cell counts where
    ``mask`` is true and ``pred`` is finite. Shapes: [D, N] x2 -> [D, N].
    """
    if not 0.0 < quantile <= 0.5:
        raise ValueError(f"long_short_weights: quantile must be in (0, 0.5], got {quantile}")
    p = np.asarray(pred, dtype=np.float64)
    valid = np.asarray(mask, dtype=bool) & np.isfinite(p)
    n = valid.sum(axis=1)
    k = np.maximum(1, np.floor(n * quantile + 1e-9).astype(np.int64))
    # Position of each stock in its date's order from the highest prediction down; invalid
    # cells sort last, equal predictions keep the stock order (stable sort).
    order = np.argsort(np.where(valid, -p, np.inf), axis=1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(p.shape[1])[None, :], axis=1)
    held = valid & (n >= MIN_STOCKS)[:, None]
    long = held & (position < k[:, None])
    short = held & (position >= (n - k)[:, None])
    return (long.astype(np.float64) - short.astype(np.float64)) / k[:, None]


def long_short_returns(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, quantile: float = DEFAULT_LS_QUANTILE
) -> np.ndarray:
    """Top-minus-bottom mean target per date, legs of max(1, floor(n*quantile)). [D, N] x3 -> [D].

    The return of `long_short_weights`' book on the date's targets.
    """
    p, t, valid = _prepare(pred, target, mask)
    weights = long_short_weights(p, valid, quantile)
    out = np.where(valid, weights * np.where(valid, t, 0.0), 0.0).sum(axis=1)
    out[~_rows_with_enough(valid)] = np.nan
    return out


def jpx_portfolio_size(n: int) -> int:
    """Stocks per JPX leg for a date with n valid stocks: 200, or 20% of n below 1,000."""
    if n >= JPX_SMALL_UNIVERSE:
        return JPX_PORTFOLIO_SIZE
    return max(1, int(math.floor(n * JPX_SMALL_FRACTION + 1e-9)))


def jpx_spread_returns(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Kaggle JPX 2022 daily spread return (official formula). Shapes: [D, N] x3 -> [D]."""
    p, t, valid = _prepare(pred, target, mask)
    out = np.full(p.shape[0], np.nan)
    for d in np.flatnonzero(_rows_with_enough(valid)):
        r = _ordered_targets(p[d], t[d], valid[d])
        k = jpx_portfolio_size(len(r))
        w = np.linspace(JPX_TOP_WEIGHT, 1.0, k)
        purchase = (r[:k] * w).sum() / w.mean()
        short = (r[::-1][:k] * w).sum() / w.mean()
        out[d] = purchase - short
    return out


def daily_hit_rate(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of stocks with sign(pred - mean pred) == sign(target - mean target). [D, N] x3 -> [D]."""
    p, t, valid = _prepare(pred, target, mask)
    sp, st = _sign(_demeaned(p, valid), p, valid), _sign(_demeaned(t, valid), t, valid)
    hits = ((sp == st) & valid).sum(axis=1)
    n = valid.sum(axis=1)
    out = np.full(p.shape[0], np.nan)
    ok = n >= MIN_STOCKS
    out[ok] = hits[ok] / n[ok]
    return out


def daily_pred_std(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cross-sectional std (ddof=0) of the predictions per date. [D, N] x3 -> [D]."""
    p, _, valid = _prepare(pred, target, mask)
    out = np.full(p.shape[0], np.nan)
    ok = _rows_with_enough(valid)
    out[ok] = np.nanstd(p[ok], axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# Summaries


def _mean(series: np.ndarray) -> float | None:
    s = series[np.isfinite(series)]
    return float(s.mean()) if len(s) else None


def _ratio(series: np.ndarray, scale: float = 1.0) -> float | None:
    """mean / std (ddof=1) * scale of the finite values; None if fewer than 2 or std == 0."""
    s = series[np.isfinite(series)]
    if len(s) < 2:
        return None
    sd = s.std(ddof=1)
    if not sd > 0:
        return None
    value = float(s.mean() / sd * scale)
    return value if math.isfinite(value) else None


def summarize(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, periods_per_year: int = TRADING_DAYS_PER_YEAR
) -> dict[str, float | int | None]:
    """All headline metrics for one horizon; values are finite floats, or None when undefined.

    Shapes: pred, target, mask [D, N]. ``n_days`` counts dates with at least two valid stocks.
    """
    ic = daily_ic(pred, target, mask)
    ric = daily_rank_ic(pred, target, mask)
    _, _, valid = _prepare(pred, target, mask)
    return {
        "ic": _mean(ic),
        "rank_ic": _mean(ric),
        "icir": _ratio(ic),
        "rank_icir": _ratio(ric),
        "ls_sharpe": _ratio(long_short_returns(pred, target, mask), math.sqrt(periods_per_year)),
        "jpx_sharpe": _ratio(jpx_spread_returns(pred, target, mask)),
        "hit_rate": _mean(daily_hit_rate(pred, target, mask)),
        "pred_std": _mean(daily_pred_std(pred, target, mask)),
        "n_days": int(_rows_with_enough(valid).sum()),
    }


def summarize_horizons(
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    horizons: tuple[int, ...],
    prefix: str = "",
    periods_per_year: int = TRADING_DAYS_PER_YEAR,
) -> dict[str, float | int | None]:
    """Flat metric names for logging: ``<prefix><key>`` for the first horizon and
    ``<prefix><key>_<h>d`` for every horizon.

    Shapes: pred, target [D, N, H]; mask [D, N] (or [D, N, H]).
    """
    pred, target, mask = np.asarray(pred), np.asarray(target), np.asarray(mask)
    if pred.ndim != 3 or pred.shape != target.shape or pred.shape[2] != len(horizons):
        raise ValueError(
            f"summarize_horizons: pred and target must be [D, N, H={len(horizons)}]; got "
            f"{pred.shape} and {target.shape}"
        )
    out: dict[str, float | int | None] = {}
    for i, h in enumerate(horizons):
        m = mask[..., i] if mask.ndim == 3 else mask
        summary = summarize(pred[..., i], target[..., i], m, periods_per_year)
        for key, value in summary.items():
            out[f"{prefix}{key}_{h}d"] = value
            if i == 0:
                out[f"{prefix}{key}"] = value
    return out


def decile_returns(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Mean target per prediction bin (bin 0 = lowest predictions), per date then over dates.

    Each date's valid stocks are ordered by prediction and cut into ``n_bins`` equal-count bins
    (stock at position i of n goes to bin floor(i * n_bins / n)); a bin empty on a date (fewer
    stocks than bins) does not count for that date. Shapes: [D, N] x3 -> [n_bins], NaN for a bin
    that is never filled.
    """
    if n_bins < 1:
        raise ValueError(f"decile_returns: n_bins must be >= 1, got {n_bins}")
    p, t, valid = _prepare(pred, target, mask)
    sums = np.zeros(n_bins)
    counts = np.zeros(n_bins)
    for d in np.flatnonzero(_rows_with_enough(valid)):
        r = _ordered_targets(p[d], t[d], valid[d])[::-1]  # lowest prediction first
        bins = np.arange(len(r)) * n_bins // len(r)
        filled = np.bincount(bins, minlength=n_bins) > 0
        means = np.bincount(bins, weights=r, minlength=n_bins)[filled] / np.bincount(bins, minlength=n_bins)[filled]
        sums[filled] += means
        counts[filled] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def cumulative_long_short(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, quantile: float = DEFAULT_LS_QUANTILE
) -> np.ndarray:
    """Running sum of the daily decile long-short returns (dates without a cross-section add 0).

    Additive, not compounded: multi-day targets overlap, so compounding them would be wrong.
    Shapes: [D, N] x3 -> [D].
    """
    return np.cumsum(np.nan_to_num(long_short_returns(pred, target, mask, quantile), nan=0.0))


PAIRED_T_ROUNDING_TOL = 1e-9
"""Differences whose spread is below this share of their size are equal up to float rounding."""


def paired_t(a, b) -> tuple[float | None, int]:
    """Paired t-statistic of ``a - b`` over the positions where both are finite (e.g. two runs'
    daily RankIC on the same dates: the standard error of a one-year mean is about 0.006 on
    real data, so a higher mean alone proves little).

    t = mean(d) / (std(d, ddof=1) / sqrt(n)); returns (t, n), with t None when n < 2 or the
    differences are all equal (up to rounding). None entries in the inputs count as missing.
    """
    a = np.array([np.nan if v is None else v for v in a], dtype=float)
    b = np.array([np.nan if v is None else v for v in b], dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_t: series must be aligned, got lengths {len(a)} and {len(b)}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = len(d)
    if n < 2:
        return None, n
    sd = d.std(ddof=1)
    if not sd > PAIRED_T_ROUNDING_TOL * np.abs(d).max():  # equal differences up to float rounding
        return None, n
    return float(d.mean() / (sd / math.sqrt(n))), n
