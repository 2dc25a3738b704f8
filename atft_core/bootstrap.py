"""Confidence intervals from a circular block bootstrap over days (numpy, deterministic).

A daily metric series is not a set of independent draws: the RankIC of an h-day target on
day t and on day t+1 share h-1 days of returns, and daily RankIC drifts with market regimes.
Resampling single days would treat them as independent and give intervals that are too
narrow. A block bootstrap resamples runs of consecutive days instead, which keeps the
dependence within each block:

- circular blocks (Politis & Romano 1992): ``ceil(n / b)`` block starts drawn uniformly from
  the n days, each block ``b`` consecutive days wrapping around the end, cut to n days; every
  day is equally likely to be drawn, at the edges too;
- block length ``b = max(MIN_BLOCK_DAYS, BLOCK_HORIZONS x horizon)`` (`block_length`), capped at
  n: an h-day target's daily series overlaps for h-1 days, and a block of twice that keeps
  most of that dependence; at least two weeks for the persistence of daily RankIC itself;
- the interval is the estimate +- t(97.5%, blocks - 1) x the standard deviation of the
  statistic over ``N_RESAMPLES`` resamples, with blocks = n // b. With few blocks (a 20-day
  horizon leaves about 6 in a year) the bootstrap's standard error is itself uncertain and the
  t quantile widens the interval for it. In simulation (tests/test_bootstrap.py, 300 series
  of 250 days each) it covered the true mean of AR(1) series (phi 0.3) in 96% of cases, of
  overlapping 5-day and 20-day sums in 91% and 92%; the plain percentile interval covered the
  20-day case in only 82%;
- the draws come from ``numpy.random.default_rng(seed)``: the same series and seed give the same
  interval on every machine and every page refresh.

Days where the series is NaN (no cross-section) are dropped before resampling.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import t as student_t

from atft_core.metrics import ROUNDING_TOL, TRADING_DAYS_PER_YEAR

CONFIDENCE = 0.95
N_RESAMPLES = 2000
"""Bootstrap resamples per interval: the standard error then moves by about 2% between seeds."""
SEED = 0
MIN_BLOCK_DAYS = 10
"""Shortest block: two trading weeks (daily RankIC is persistent beyond the target overlap)."""
BLOCK_HORIZONS = 2
"""Blocks span this many horizons: an h-day target overlaps its neighbours for h-1 days."""
MIN_DAYS = 2
"""Fewest finite days for an interval."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (None where undefined)."""

    value: float | None
    low: float | None
    high: float | None
    days: int
    """Finite days the estimate uses."""
    block: int
    """Block length of the bootstrap, in days."""

    def text(self, decimals: int = 4) -> str:
        """'0.0312 [0.0104, 0.0519]', or '-' without a value, or the value alone without a CI."""
        if self.value is None:
            return "-"
        if self.low is None or self.high is None:
            return f"{self.value:.{decimals}f}"
        return f"{self.value:.{decimals}f} [{self.low:.{decimals}f}, {self.high:.{decimals}f}]"

    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "days": self.days, "block": self.block}


def block_length(horizon: int) -> int:
    """Block length in days for a daily series of h-day targets: max(10, 2h)."""
    if horizon < 1:
        raise ValueError(f"block_length: horizon must be >= 1 day, got {horizon}")
    return max(MIN_BLOCK_DAYS, BLOCK_HORIZONS * horizon)


@functools.lru_cache(maxsize=32)
def resample_indices(n: int, block: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Circular-block resamples of positions 0..n-1: [n_resamples, n] int64 (read-only; cached,
    since a page computes many intervals over series of the same length)."""
    if n < 1 or block < 1:
        raise ValueError(f"resample_indices: need n >= 1 and block >= 1, got n={n}, block={block}")
    block = min(block, n)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_resamples, math.ceil(n / block)))
    out = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_resamples, -1)[:, :n]
    out.flags.writeable = False
    return out


def bootstrap_interval(
    series, statistic: Callable[[np.ndarray], np.ndarray], horizon: int = 1,
    n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = CONFIDENCE,
) -> Interval:
    """``statistic`` of the finite values of ``series`` [D] with its block-bootstrap interval.

    ``statistic`` maps [..., n] -> [...] (a reduction over the last axis), so all resamples
    are computed in one call.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_interval: level must be in (0, 1), got {level}")
    x = np.asarray([np.nan if v is None else v for v in series], dtype=np.float64)
    x = x[np.isfinite(x)]
    block = min(block_length(horizon), max(len(x), 1))
    value = _finite(statistic(x)) if len(x) >= MIN_DAYS else None
    if value is None:
        return Interval(value, None, None, len(x), block)
    draws = statistic(x[resample_indices(len(x), block, n_resamples, seed)])
    draws = draws[np.isfinite(draws)]
    if len(draws) < n_resamples / 2:  # mostly undefined (e.g. a constant series): no interval
        return Interval(value, None, None, len(x), block)
    half = t_quantile((1 + level) / 2, max(1, len(x) // block - 1)) * float(draws.std(ddof=1))
    return Interval(value, value - half, value + half, len(x), block)


@functools.lru_cache(maxsize=64)
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with df degrees of freedom."""
    return float(student_t.ppf(p, df))


def mean_interval(series, horizon: int = 1, seed: int = SEED) -> Interval:
    """Mean of a daily series (e.g. RankIC) with its 95% block-bootstrap interval."""
    return bootstrap_interval(series, lambda x: x.mean(axis=-1), horizon, seed=seed)


def sharpe(x: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Annualised Sharpe of h-day returns over the last axis: mean / std (ddof=1) x sqrt(252 / h).

    NaN where the std is 0 up to rounding. One book held h days at a time makes 252 / h bets
    a year.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = x.std(axis=-1, ddof=1)
        risky = sd > ROUNDING_TOL * np.abs(x).max(axis=-1, initial=0.0)
        return np.where(risky, x.mean(axis=-1) / np.where(risky, sd, 1.0), np.nan) * math.sqrt(
            TRADING_DAYS_PER_YEAR / horizon)


def sharpe_value(returns, horizon: int = 1) -> float | None:
    """Annualised Sharpe (`sharpe`) of the finite values of a daily series; None if undefined."""
    x = np.asarray(returns, dtype=np.float64)
    x = x[np.isfinite(x)]
    return _finite(sharpe(x, horizon)) if len(x) >= MIN_DAYS else None


def sharpe_interval(returns, horizon: int = 1, seed: int = SEED) -> Interval:
    """Annualised Sharpe (`sharpe`) of a daily series of h-day returns, with its 95% interval."""
    return bootstrap_interval(returns, lambda x: sharpe(x, horizon), horizon, seed=seed)


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
