"""Evaluation of a finished run from its ``predictions.parquet`` (no Streamlit here).

The trainer writes one long table (``Date, Code, split, pred_{h}d, target_{h}d``) from the
best checkpoint. This module pivots one split and horizon into ``[dates, stocks]`` arrays and
derives, with `atft_core.metrics`, what the Run page draws: the daily RankIC with its rolling
mean, the cumulative long-short return and the mean return by prediction decile; and, for the
Compare page, each run's daily RankIC paired with a reference run's (`paired_comparison`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from atft_core import metrics
from atft_core.run_files import RunFiles

N_DECILES = 10
"""Deciles are tenths by definition."""

_PRED_COL = re.compile(r"^pred_(\d+)d$")


@dataclass(frozen=True)
class Evaluation:
    """What one split x horizon looks like.

    daily: Date, rank_ic, rank_ic_rolling, long_short, cum_long_short (one row per date).
    deciles: decile (1 = lowest predictions .. 10), mean_return.
    summary: `metrics.summarize` of the split (ic, rank_ic, icir, ls_sharpe, ...).
    """

    split: str
    horizon: int
    daily: pl.DataFrame
    deciles: pl.DataFrame
    summary: dict[str, Any]


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


def to_arrays(frame: pl.DataFrame, split: str, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dates [D], pred [D, N], target [D, N], mask [D, N]) for one split and horizon."""
    sub = frame.filter(pl.col("split") == split).select("Date", "Code", f"pred_{horizon}d", f"target_{horizon}d")
    dates = np.asarray(sub["Date"].unique().sort().to_list(), dtype="datetime64[D]")
    codes = sub["Code"].unique().sort().to_list()
    pred = np.full((len(dates), len(codes)), np.nan)
    target = np.full_like(pred, np.nan)
    if len(dates):
        d_idx = np.searchsorted(dates, sub["Date"].to_numpy().astype("datetime64[D]"))
        c_idx = np.searchsorted(np.asarray(codes, dtype=object), sub["Code"].to_numpy())
        pred[d_idx, c_idx] = sub[f"pred_{horizon}d"].to_numpy()
        target[d_idx, c_idx] = sub[f"target_{horizon}d"].to_numpy()
    mask = np.isfinite(pred) & np.isfinite(target)
    return dates, pred, target, mask


def evaluate_split(frame: pl.DataFrame, split: str, horizon: int, window: int) -> Evaluation:
    """Daily RankIC (+ rolling mean over `window` dates), cumulative long-short, deciles."""
    if window < 1:
        raise ValueError(f"evaluate_split: window must be >= 1 day, got {window}")
    dates, pred, target, mask = to_arrays(frame, split, horizon)
    rank_ic = metrics.daily_rank_ic(pred, target, mask)
    daily = pl.DataFrame({
        "Date": dates.astype("datetime64[D]"),
        "rank_ic": rank_ic,
        "long_short": metrics.long_short_returns(pred, target, mask),
        "cum_long_short": metrics.cumulative_long_short(pred, target, mask),
    }, nan_to_null=True).with_columns(
        pl.col("rank_ic").rolling_mean(window, min_samples=1).alias("rank_ic_rolling")
    )
    deciles = pl.DataFrame({
        "decile": np.arange(1, N_DECILES + 1),
        "mean_return": metrics.decile_returns(pred, target, mask, N_DECILES),
    }, nan_to_null=True)
    return Evaluation(split, horizon, daily, deciles, metrics.summarize(pred, target, mask))


def evaluate_run(run_dir: Path | str, window: int, horizon: int | None = None) -> dict[str, Evaluation]:
    """{split: Evaluation} for every split in the run's predictions (first horizon by default)."""
    frame = load_predictions(RunFiles(Path(run_dir)).predictions)
    horizon = horizon if horizon is not None else horizons_in(frame)[0]
    if horizon not in horizons_in(frame):
        raise ValueError(f"{run_dir}: no predictions for horizon {horizon}d; have {horizons_in(frame)}")
    splits = [s for s in ("val", "test") if s in set(frame["split"].unique().to_list())]
    return {s: evaluate_split(frame, s, horizon, window) for s in splits}


def daily_rank_ic_frame(frame: pl.DataFrame, split: str, horizon: int) -> pl.DataFrame:
    """Date, rank_ic: one split's daily RankIC (dates without a ranking left out)."""
    dates, pred, target, mask = to_arrays(frame, split, horizon)
    return pl.DataFrame({"Date": dates.astype("datetime64[D]"), "rank_ic": metrics.daily_rank_ic(pred, target, mask)},
                        nan_to_null=True).drop_nulls()


def paired_comparison(runs_dir: Path | str, run_ids: list[str], reference: str, split: str,
                      horizon: int) -> pl.DataFrame:
    """Each run's daily RankIC against `reference`'s on the dates both have: is a difference real?

    One row per run other than the reference, with columns run, days, rank_ic, reference_rank_ic
    (both means over the common days), difference and t (the paired t-statistic of the daily
    differences, `metrics.paired_t`; null with fewer than two days). Runs without predictions
    for the split or horizon raise, naming the run.
    """
    def daily(run_id: str) -> pl.DataFrame:
        frame = load_predictions(RunFiles(Path(runs_dir) / run_id).predictions)
        if horizon not in horizons_in(frame):
            raise ValueError(f"{run_id}: no predictions for horizon {horizon}d; have {horizons_in(frame)}")
        return daily_rank_ic_frame(frame, split, horizon)

    base = daily(reference)
    rows = []
    for run_id in (r for r in run_ids if r != reference):
        both = daily(run_id).join(base, on="Date", suffix="_ref")
        t, n = metrics.paired_t(both["rank_ic"].to_list(), both["rank_ic_ref"].to_list())
        mean, ref = (float(both[c].mean()) if n else None for c in ("rank_ic", "rank_ic_ref"))
        rows.append({"run": run_id, "days": n, "rank_ic": mean, "reference_rank_ic": ref,
                     "difference": None if mean is None else mean - ref, "t": t})
    schema = {"run": pl.String, "days": pl.Int64, "rank_ic": pl.Float64, "reference_rank_ic": pl.Float64,
              "difference": pl.Float64, "t": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
