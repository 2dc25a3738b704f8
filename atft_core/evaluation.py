"""Evaluation of a finished run from its ``predictions.parquet`` (no Streamlit here).

The trainer writes one long table (``Date, Code, split, pred_{h}d, target_{h}d``) from the
best checkpoint. This module pivots one split and horizon into ``[dates, stocks]`` arrays and
derives, with `atft_core.metrics`, what the Run page draws: the daily RankIC with its rolling
mean, the cumulative long-short return and the mean return by prediction decile; the mean
daily RankIC and the long-short Sharpe with 95% block-bootstrap intervals
(`atft_core.bootstrap`); the decile book's turnover, holding period, net returns at several
costs per side and its break-even cost (`atft_core.costs`, which also says what a "day" is for
an h-day horizon); RankIC and net return by year, month and Sector33
(`atft_core.breakdowns`). For the Compare and Run pages, each run's daily RankIC and net book
return paired with a reference run's on the days both have (`paired_comparison`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import polars as pl

from atft_core import bootstrap, breakdowns, costs, metrics
from atft_core.run_files import RunFiles, read_json

N_DECILES = 10
"""Deciles are tenths by definition."""

_PRED_COL = re.compile(r"^pred_(\d+)d$")
SPLITS = ("val", "test")
SPLIT_LABELS = {"val": "Validation", "test": "Test"}


@dataclass(frozen=True)
class Evaluation:
    """What one split x horizon looks like.

    daily: Date, rank_ic, rank_ic_rolling, long_short, cum_long_short (one row per date;
        long_short is the h-day book return of the day's book, summed as is).
    deciles: decile (1 = lowest predictions .. 10), mean_return.
    summary: `metrics.summarize` of the split (ic, rank_ic, icir, ls_sharpe, ...).
    rank_ic: mean daily RankIC with its 95% interval.
    ls_sharpe: gross Sharpe of the h-day books (sqrt(252 / h), all days) with its interval.
    costs: turnover, holding period, break-even and the net book per cost level.
    cumulative: Date, cost_bps, cum_return: cumulative net return per day (h-day return / h,
        summed) at each cost level, over the days with a turnover.
    years, months: `breakdowns.by_period` (one row per period and cost level).
    sectors: `breakdowns.by_sector`, or None with ``sector_note`` saying why.
    """

    split: str
    horizon: int
    daily: pl.DataFrame
    deciles: pl.DataFrame
    summary: dict[str, Any]
    rank_ic: bootstrap.Interval
    ls_sharpe: bootstrap.Interval
    costs: costs.BookCosts
    cumulative: pl.DataFrame
    years: pl.DataFrame
    months: pl.DataFrame
    sectors: pl.DataFrame | None = None
    sector_note: str = ""


def load_predictions(path: Path | str) -> pl.DataFrame:
    """Read a predictions parquet; a clear error if it is missing or has no prediction columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions (the run has not finished, or failed before writing them)")
    frame = pl.read_parquet(path)
    missing = {"Date", "Code", "split"} - set(frame.columns)
    if missing or not horizons_in(frame):
        raise ValueError(f"{path}: expected columns Date, Code, split, pred_<h>d, target_<h>d; missing {sorted(missing) or 'pred_<h>d'}")
    return frame


def horizons_in(frame: pl.DataFrame) -> list[int]:
    """Horizons that have both pred_{h}d and target_{h}d columns, ascending."""
    found = [int(m.group(1)) for c in frame.columns if (m := _PRED_COL.match(c))]
    return sorted(h for h in found if f"target_{h}d" in frame.columns)


def run_horizons(run_dir: Path | str) -> list[int]:
    """Horizons of a run's predictions, from the parquet schema alone (no rows read)."""
    path = RunFiles(Path(run_dir)).predictions
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions (the run has not finished, or failed before writing them)")
    return horizons_in(pl.DataFrame(schema=pl.read_parquet_schema(path)))


def fitted_baseline(run_dir: Path | str) -> dict[str, Any] | None:
    """What a baseline run fitted (`Baseline.describe`: factor and sign, or ridge weights), from
    its best checkpoint; None for a run without one or a deep-model run."""
    from atft_core.baselines import Baseline
    from atft_core.checkpoint import load_checkpoint

    path = RunFiles(Path(run_dir)).best_checkpoint
    if not path.is_file():
        return None
    state = load_checkpoint(path).get("baseline")
    return Baseline.from_state(state).describe() if state else None


def to_arrays(frame: pl.DataFrame, split: str, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dates [D], pred [D, N], target [D, N], mask [D, N]) for one split and horizon."""
    return _arrays(frame, split, horizon)[:4]


def _arrays(frame: pl.DataFrame, split: str, horizon: int):
    """`to_arrays` plus the codes [N] of the stock axis."""
    sub = frame.filter(pl.col("split") == split).select("Date", "Code", f"pred_{horizon}d", f"target_{horizon}d")
    dates = np.asarray(sub["Date"].unique().sort().to_list(), dtype="datetime64[D]")
    codes = sub["Code"].unique().sort().to_list()
    pred = np.full((len(dates), len(codes)), np.nan)
    target = np.full_like(pred, np.nan)
    if len(dates):
        # dense ranks are the positions in the sorted unique dates / codes (faster than searching strings)
        idx = sub.select(pl.col("Date").rank("dense") - 1, pl.col("Code").rank("dense") - 1)
        d_idx, c_idx = idx["Date"].to_numpy(), idx["Code"].to_numpy()
        pred[d_idx, c_idx] = sub[f"pred_{horizon}d"].to_numpy()
        target[d_idx, c_idx] = sub[f"target_{horizon}d"].to_numpy()
    mask = np.isfinite(pred) & np.isfinite(target)
    return dates, pred, target, mask, codes


@dataclass(frozen=True)
class Book:
    """One split x horizon of a run as the cost and breakdown code needs it."""

    dates: np.ndarray      # [D] datetime64[D]
    rank_ic: np.ndarray    # [D] daily RankIC
    gross: np.ndarray      # [D] h-day return of the day's decile book
    weights: np.ndarray    # [D, N] the book (metrics.long_short_weights)
    traded: np.ndarray     # [D, N] |w_t - w_{t-h}| (NaN on days without an earlier book)

    @property
    def turnover(self) -> np.ndarray:
        """[D] share of the book replaced per rebalance (costs.book_turnover)."""
        return self.traded.sum(axis=1) / costs.TRADED_PER_TURNOVER

    def net(self, cost_bps: float) -> np.ndarray:
        """[D] net h-day book return at `cost_bps` per side (NaN without a turnover)."""
        return costs.net_returns(self.gross, self.turnover, cost_bps)


def make_book(dates: np.ndarray, pred: np.ndarray, target: np.ndarray, mask: np.ndarray, horizon: int) -> Book:
    """The decile book of one split x horizon and what rebalancing it trades."""
    valid = mask & np.isfinite(pred) & np.isfinite(target)
    weights = metrics.long_short_weights(pred, valid)
    return Book(dates, metrics.daily_rank_ic(pred, target, mask), metrics.long_short_returns(pred, target, mask),
                weights, costs.traded_weights(weights, horizon))


def _cumulative(book: Book, horizon: int, cost_bps: tuple[float, ...]) -> pl.DataFrame:
    frames = []
    for c in cost_bps:
        net = book.net(c)
        keep = np.isfinite(net)
        frames.append(pl.DataFrame({"Date": book.dates[keep].astype("datetime64[D]"), "cost_bps": float(c),
                                    "cum_return": np.cumsum(net[keep] / horizon)}))
    schema = {"Date": pl.Date, "cost_bps": pl.Float64, "cum_return": pl.Float64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def evaluate_split(frame: pl.DataFrame, split: str, horizon: int, window: int,
                   cost_bps: Iterable[float] = costs.DEFAULT_COST_BPS, sectors: dict[str, str | None] | None = None,
                   sector_note: str = "", seed: int = bootstrap.SEED) -> Evaluation:
    """Everything the Run page shows for one split and horizon (see `Evaluation`).

    window: days in the rolling mean of the daily RankIC. cost_bps: levels in bp per side.
    sectors: Code -> Sector33Code (None: no sector breakdown, ``sector_note`` says why).
    """
    if window < 1:
        raise ValueError(f"evaluate_split: window must be >= 1 day, got {window}")
    levels = costs.parse_cost_bps(cost_bps)
    dates, pred, target, mask, codes = _arrays(frame, split, horizon)
    book = make_book(dates, pred, target, mask, horizon)
    daily = pl.DataFrame({
        "Date": dates.astype("datetime64[D]"),
        "rank_ic": book.rank_ic,
        "long_short": book.gross,
        "cum_long_short": np.cumsum(np.nan_to_num(book.gross, nan=0.0)),
    }, nan_to_null=True).with_columns(
        pl.col("rank_ic").rolling_mean(window, min_samples=1).alias("rank_ic_rolling")
    )
    deciles = pl.DataFrame({
        "decile": np.arange(1, N_DECILES + 1),
        "mean_return": metrics.decile_returns(pred, target, mask, N_DECILES),
    }, nan_to_null=True)
    traded = book.traded.sum(axis=1)
    by_sector = None
    if sectors is not None:
        labels = np.array([sectors.get(c) for c in codes], dtype=object)
        by_sector = breakdowns.by_sector(pred, target, mask, labels, book.weights, book.traded, horizon, levels)
    return Evaluation(
        split, horizon, daily, deciles, metrics.summarize(pred, target, mask),
        rank_ic=bootstrap.mean_interval(book.rank_ic, horizon, seed),
        ls_sharpe=bootstrap.sharpe_interval(book.gross, horizon, seed),
        costs=costs.book_costs(book.gross, book.turnover, horizon, levels, seed),
        cumulative=_cumulative(book, horizon, levels),
        years=breakdowns.by_period(dates, book.rank_ic, book.gross, traded, horizon, levels, "year"),
        months=breakdowns.by_period(dates, book.rank_ic, book.gross, traded, horizon, levels, "month"),
        sectors=by_sector, sector_note=sector_note)


def run_dataset(run_dir: Path | str) -> Path | None:
    """The dataset a run trained on (its effective config's data.path), or None if unrecorded."""
    saved = read_json(RunFiles(Path(run_dir)).config) or {}
    path = ((saved.get("config") or {}).get("data") or {}).get("path")
    return Path(path) if path else None


def run_sectors(run_dir: Path | str, codes: list[str]) -> tuple[dict[str, str | None] | None, str]:
    """(Code -> Sector33Code from the run's dataset, '') or (None, why there is no breakdown)."""
    dataset = run_dataset(run_dir)
    if dataset is None:
        return None, "The run's config names no dataset, so there is no Sector33 breakdown."
    try:
        return dict(zip(codes, breakdowns.read_sectors(dataset, codes))), ""
    except (FileNotFoundError, ValueError, OSError) as exc:
        return None, str(exc)


def evaluate_run(run_dir: Path | str, window: int, horizon: int | None = None,
                 cost_bps: Iterable[float] = costs.DEFAULT_COST_BPS, with_sectors: bool = True) -> dict[str, Evaluation]:
    """{split: Evaluation} for every split in the run's predictions (first horizon by default).

    Sectors come from the run's dataset (`run_sectors`); without it the breakdown is left out
    and each Evaluation's ``sector_note`` says why.
    """
    frame = load_predictions(RunFiles(Path(run_dir)).predictions)
    horizon = horizon if horizon is not None else horizons_in(frame)[0]
    if horizon not in horizons_in(frame):
        raise ValueError(f"{run_dir}: no predictions for horizon {horizon}d; have {horizons_in(frame)}")
    levels = costs.parse_cost_bps(cost_bps)
    splits = [s for s in SPLITS if s in set(frame["split"].unique().to_list())]
    sectors, note = (run_sectors(run_dir, frame["Code"].unique().sort().to_list()) if with_sectors
                     else (None, "Sector breakdown not asked for."))
    return {s: evaluate_split(frame, s, horizon, window, levels, sectors, note) for s in splits}


def daily_frame(frame: pl.DataFrame, split: str, horizon: int) -> pl.DataFrame:
    """Date, rank_ic, gross, turnover of one split and horizon (nulls where undefined)."""
    dates, pred, target, mask = to_arrays(frame, split, horizon)
    book = make_book(dates, pred, target, mask, horizon)
    return pl.DataFrame({"Date": dates.astype("datetime64[D]"), "rank_ic": book.rank_ic, "gross": book.gross,
                         "turnover": book.turnover}, nan_to_null=True)


def daily_rank_ic_frame(frame: pl.DataFrame, split: str, horizon: int) -> pl.DataFrame:
    """Date, rank_ic: one split's daily RankIC (dates without a ranking left out)."""
    dates, pred, target, mask = to_arrays(frame, split, horizon)
    return pl.DataFrame({"Date": dates.astype("datetime64[D]"), "rank_ic": metrics.daily_rank_ic(pred, target, mask)},
                        nan_to_null=True).drop_nulls()


def _run_daily(runs_dir: Path | str, run_id: str, split: str, horizon: int) -> pl.DataFrame:
    frame = load_predictions(RunFiles(Path(runs_dir) / run_id).predictions)
    if horizon not in horizons_in(frame):
        raise ValueError(f"{run_id}: no predictions for horizon {horizon}d; have {horizons_in(frame)}")
    return daily_frame(frame, split, horizon)


PAIRED_SCHEMA = {"run": pl.String, "days": pl.Int64, "rank_ic": pl.Float64, "reference_rank_ic": pl.Float64,
                 "difference": pl.Float64, "difference_low": pl.Float64, "difference_high": pl.Float64,
                 "t": pl.Float64}


def paired_comparison(runs_dir: Path | str, run_ids: list[str], reference: str, split: str,
                      horizon: int, seed: int = bootstrap.SEED) -> pl.DataFrame:
    """Each run's daily RankIC against `reference`'s on the dates both have: is a difference real?

    One row per run other than the reference, with columns run, days, rank_ic, reference_rank_ic
    (both means over the common days), difference with its 95% block-bootstrap interval
    (difference_low, difference_high) and t (the paired t-statistic of the daily differences,
    `metrics.paired_t`, which treats days as independent; null with fewer than two days). Runs
    without predictions for the split or horizon raise, naming the run.
    """
    base = _run_daily(runs_dir, reference, split, horizon).select("Date", "rank_ic").drop_nulls()
    rows = []
    for run_id in (r for r in run_ids if r != reference):
        run = _run_daily(runs_dir, run_id, split, horizon).select("Date", "rank_ic").drop_nulls()
        both = run.join(base, on="Date", suffix="_ref")
        t, n = metrics.paired_t(both["rank_ic"].to_list(), both["rank_ic_ref"].to_list())
        mean, ref = (float(both[c].mean()) if n else None for c in ("rank_ic", "rank_ic_ref"))
        diff = bootstrap.mean_interval((both["rank_ic"] - both["rank_ic_ref"]).to_numpy(), horizon, seed)
        rows.append({"run": run_id, "days": n, "rank_ic": mean, "reference_rank_ic": ref,
                     "difference": None if mean is None else mean - ref, "difference_low": diff.low,
                     "difference_high": diff.high, "t": t})
    return pl.DataFrame(rows, schema=PAIRED_SCHEMA)


PAIRED_COSTS_SCHEMA = {"cost_bps": pl.Float64, "days": pl.Int64, "net_sharpe": pl.Float64,
                       "reference_net_sharpe": pl.Float64, "net_bp_per_day": pl.Float64,
                       "reference_net_bp_per_day": pl.Float64, "difference_bp_per_day": pl.Float64,
                       "difference_low": pl.Float64, "difference_high": pl.Float64, "wins": pl.String}


def paired_costs(runs_dir: Path | str, run_id: str, reference: str, split: str, horizon: int,
                 cost_bps: Iterable[float] = costs.DEFAULT_COST_BPS, seed: int = bootstrap.SEED) -> pl.DataFrame:
    """`run_id`'s decile book against `reference`'s after costs, on the days both have a book
    and a turnover: one row per cost level (`PAIRED_COSTS_SCHEMA`).

    Net Sharpe of each (h-day books, `atft_core.costs`), mean net return per day in bp of
    each, and their daily difference with its 95% block-bootstrap interval; ``wins`` names the
    run whose net return is higher when the interval excludes 0, else says it is undecided.
    """
    run = _run_daily(runs_dir, run_id, split, horizon)
    base = _run_daily(runs_dir, reference, split, horizon)
    both = run.join(base, on="Date", suffix="_ref").drop_nulls(["gross", "turnover", "gross_ref", "turnover_ref"])
    rows = []
    for c in costs.parse_cost_bps(cost_bps):
        net = costs.net_returns(both["gross"].to_numpy(), both["turnover"].to_numpy(), c)
        ref = costs.net_returns(both["gross_ref"].to_numpy(), both["turnover_ref"].to_numpy(), c)
        diff = bootstrap.mean_interval((net - ref) / horizon / costs.BPS, horizon, seed)
        wins = run_id if diff.low is not None and diff.low > 0 else (
            reference if diff.high is not None and diff.high < 0 else "undecided (interval includes 0)")
        rows.append({"cost_bps": c, "days": both.height,
                     "net_sharpe": bootstrap.sharpe_value(net, horizon),
                     "reference_net_sharpe": bootstrap.sharpe_value(ref, horizon),
                     "net_bp_per_day": float(net.mean()) / horizon / costs.BPS if both.height else None,
                     "reference_net_bp_per_day": float(ref.mean()) / horizon / costs.BPS if both.height else None,
                     "difference_bp_per_day": diff.value, "difference_low": diff.low, "difference_high": diff.high,
                     "wins": wins})
    return pl.DataFrame(rows, schema=PAIRED_COSTS_SCHEMA)
