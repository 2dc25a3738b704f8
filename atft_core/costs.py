"""Turnover and trading costs of the decile long-short book (numpy).

The book (`metrics.long_short_weights`): each day, +1/k on the k highest predictions and -1/k
on the k lowest; long leg 1, short leg 1, gross 2. Its return on an h-day target,
``r_t = mean(top) - mean(bottom)``, is per unit of one leg's capital.

What a "day" means for horizon h. The book formed on day t earns the h-day target, so it is
held h days. The strategy evaluated here holds one such book and replaces it every h days;
every day's prediction is used by averaging over the h possible starting days (the daily
series of h-day books). Per horizon:

- turnover per rebalance ``tau_t = sum_i |w_t,i - w_{t-h},i| / 4``: the share of the book's
  positions replaced when the book formed on t replaces the one formed h days earlier (0 = the
  same stocks, 1 = all new; with equal legs of k stocks it is (names changed in both legs) / 2k).
  Undefined on the first h days of a split (no earlier book): those days are left out of every
  cost figure, gross included, so that gross and net cover the same days;
- turnover per day ``tau / h`` (the same for the "staggered" portfolio that puts 1/h of the
  capital into each day's book); mean holding period ``h / mean(tau)`` days;
- a cost of ``c`` per side (each buy and each sell pays c of the traded amount): replacing
  ``tau`` of the book trades ``4 tau`` (sell and buy, both legs), so the net h-day return is
  ``n_t = r_t - 4 tau_t c``; return per day is ``n_t / h``;
- Sharpe: of the h-day book returns, ``mean(n) / std(n) x sqrt(252 / h)`` (252 / h books a
  year). For h = 1 at c = 0 it is the logged ``ls_sharpe`` (over the days from the second
  on). The logged ``ls_sharpe_<h>d`` annualises every horizon with sqrt(252) and so is sqrt(h)
  larger for h > 1: it compares epochs, this compares strategies;
- break-even cost ``c* = mean(r) / (4 mean(tau))`` per side: the cost at which the mean net
  return, and so the net Sharpe, is 0 (negative when the book loses before costs).

Not modelled: price drift of the weights between rebalances, borrowing fees of the short leg,
market impact growing with size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from atft_core import bootstrap
from atft_core.metrics import TRADING_DAYS_PER_YEAR

DEFAULT_COST_BPS = (0.0, 5.0, 10.0, 20.0)
"""Cost levels shown together (basis points per side) unless the user asks for others."""
MAX_COST_BPS = 1000.0
"""Highest accepted level: 10% per side is beyond any listed market; more is a typo."""
MAX_LEVELS = 8
"""Most cost levels in one table (a wider table stops being readable)."""
BPS = 1e-4
TRADED_PER_TURNOVER = 4.0
"""Replacing a share tau of the book trades 4 tau of one leg's capital: sell + buy, two legs."""


class CostLevelsError(ValueError):
    """A cost level list that cannot be used (the message names 'costs' and the bad value)."""


def parse_cost_bps(levels: str | Iterable[float]) -> tuple[float, ...]:
    """Cost levels in bp per side from '0, 5, 10, 20' or a sequence: finite, 0..1000, at most 8,
    sorted, duplicates dropped. Raises CostLevelsError naming the bad value."""
    items = [x.strip() for x in levels.split(",") if x.strip()] if isinstance(levels, str) else list(levels)
    values = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise CostLevelsError(f"costs: {item!r} is not a number of basis points") from None
        if not math.isfinite(value) or not 0.0 <= value <= MAX_COST_BPS:
            raise CostLevelsError(f"costs: {item!r} must be a number of basis points from 0 to {MAX_COST_BPS:g}")
        values.append(value)
    levels_out = tuple(sorted(set(values)))
    if not levels_out:
        raise CostLevelsError("costs: give at least one cost level in basis points per side, e.g. 0, 5, 10, 20")
    if len(levels_out) > MAX_LEVELS:
        raise CostLevelsError(f"costs: at most {MAX_LEVELS} levels, got {len(levels_out)}")
    return levels_out


def format_bps(level: float) -> str:
    """'10 bp', '2.5 bp'."""
    return f"{level:g} bp"


# ---------------------------------------------------------------------------------------------
# Turnover and net returns


def traded_weights(weights: np.ndarray, horizon: int) -> np.ndarray:
    """|w_t - w_{t-h}| per stock: what replacing the book formed h days earlier trades.
    NaN on the first h days and where either book is empty. Shapes: [D, N] -> [D, N]."""
    if horizon < 1:
        raise ValueError(f"traded_weights: horizon must be >= 1 day, got {horizon}")
    w = np.asarray(weights, dtype=np.float64)
    out = np.full_like(w, np.nan)
    if len(w) > horizon:
        out[horizon:] = np.abs(w[horizon:] - w[:-horizon])
        held = np.abs(w).sum(axis=1) > 0
        out[horizon:][~(held[horizon:] & held[:-horizon])] = np.nan
    return out


def book_turnover(weights: np.ndarray, horizon: int) -> np.ndarray:
    """Share of the book replaced at each rebalance (tau_t, see the module doc). [D, N] -> [D]."""
    return traded_weights(weights, horizon).sum(axis=1) / TRADED_PER_TURNOVER


def net_returns(gross: np.ndarray, turnover: np.ndarray, cost_bps: float) -> np.ndarray:
    """h-day book returns after paying ``cost_bps`` per side: r - 4 tau c. NaN where either is."""
    return np.asarray(gross, dtype=np.float64) - TRADED_PER_TURNOVER * np.asarray(turnover) * cost_bps * BPS


def break_even_bps(gross: np.ndarray, turnover: np.ndarray) -> float | None:
    """Cost per side (bp) at which the mean net return is 0; None without turnover."""
    r, tau = np.asarray(gross, dtype=np.float64), np.asarray(turnover, dtype=np.float64)
    both = np.isfinite(r) & np.isfinite(tau)
    if not both.any() or not tau[both].mean() > 0:
        return None
    return float(r[both].mean() / (TRADED_PER_TURNOVER * tau[both].mean()) / BPS)


# ---------------------------------------------------------------------------------------------
# The cost table


@dataclass(frozen=True)
class CostLevel:
    """The book at one cost level."""

    cost_bps: float
    mean_daily: float | None
    """Mean net return per day (the h-day return / h)."""
    annual: float | None
    """mean_daily x 252 (additive, not compounded)."""
    sharpe: bootstrap.Interval
    """Annualised net Sharpe with its 95% block-bootstrap interval."""


@dataclass(frozen=True)
class BookCosts:
    """Turnover, holding period, break-even cost and the net book at each cost level."""

    horizon: int
    days: int
    """Days with a gross return and a turnover (the first h days of a split have no turnover)."""
    turnover: float | None
    """Mean share of the book replaced per rebalance (every h days)."""
    turnover_per_day: float | None
    holding_days: float | None
    """Mean holding period of a position in days (None: the book never changes)."""
    break_even_bps: float | None
    levels: list[CostLevel] = field(default_factory=list)

    def level(self, cost_bps: float) -> CostLevel | None:
        return next((lv for lv in self.levels if lv.cost_bps == cost_bps), None)


def book_costs(gross: np.ndarray, turnover: np.ndarray, horizon: int,
               cost_bps: Iterable[float] = DEFAULT_COST_BPS, seed: int = bootstrap.SEED) -> BookCosts:
    """The cost table of a daily series of h-day book returns and its turnover [D] each."""
    r, tau = np.asarray(gross, dtype=np.float64), np.asarray(turnover, dtype=np.float64)
    both = np.isfinite(r) & np.isfinite(tau)
    r, tau = r[both], tau[both]
    mean_tau = float(tau.mean()) if len(tau) else None
    levels = []
    for c in parse_cost_bps(cost_bps):
        net = net_returns(r, tau, c)
        mean_daily = float(net.mean()) / horizon if len(net) else None
        levels.append(CostLevel(c, mean_daily, None if mean_daily is None else mean_daily * TRADING_DAYS_PER_YEAR,
                                bootstrap.sharpe_interval(net, horizon, seed)))
    return BookCosts(
        horizon=horizon, days=int(len(r)), turnover=mean_tau,
        turnover_per_day=None if mean_tau is None else mean_tau / horizon,
        holding_days=horizon / mean_tau if mean_tau else None,
        break_even_bps=break_even_bps(r, tau), levels=levels)
