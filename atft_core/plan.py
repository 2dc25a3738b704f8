"""What a config trains on, known from the dataset's dates alone: the splits, the usable days of
each, and the steps of an epoch. The pre-flight checklist and the trainer's command line use it
to refuse settings that cannot work with the dataset before anything is written.

    plan_days(cfg, summary=None) -> DayPlan      # ConfigError naming the setting(s)
    check_settings(cfg) -> DayPlan               # + the dataset and the feature settings
    usable_days(days, stocks_per_day, lookback, min_stocks) -> days  # shared with the trainer
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from atft_core.config import ConfigError, RunConfig, feature_index
from atft_core.data.errors import DataError
from atft_core.data.panel import date_filter
from atft_core.data.schema import DATE, target_name
from atft_core.data.splits import Splits, make_splits
from atft_core.data.validate import DatasetSummary, select_features, validate_dataset

SPLIT_SETTINGS = "data.train_end / data.val_end / data.train_fraction / data.val_fraction / data.purge_days / data.embargo_days"


def usable_days(days: np.ndarray, stocks_per_day: np.ndarray, lookback: int, min_stocks: int) -> np.ndarray:
    """The `days` (panel day indices) with a full `lookback`-day window before them and at least
    `min_stocks` valid stocks (`stocks_per_day` is indexed by panel day)."""
    days = np.asarray(days, dtype=np.int64)
    keep = (days >= lookback - 1) & (np.asarray(stocks_per_day)[days] >= min_stocks)
    return days[keep]


@dataclass(frozen=True)
class DayPlan:
    """The panel's dates after data.start/end, stocks per date, the splits and their usable days."""

    dates: np.ndarray
    stocks_per_day: np.ndarray
    splits: Splits
    train_days: np.ndarray
    val_days: np.ndarray
    test_days: np.ndarray

    def stock_days(self, days: np.ndarray) -> int:
        """Stock-days (rows the model sees) over `days`."""
        return int(self.stocks_per_day[days].sum())

    def steps_per_epoch(self, days_per_step: int) -> int:
        """Optimiser steps of one epoch: the usable training days in runs of `days_per_step`."""
        return math.ceil(len(self.train_days) / max(1, days_per_step))

    def describe(self) -> str:
        """One line: usable days per split out of the split's days."""
        parts = [f"{name} {len(used):,} of {len(all_):,} days"
                 for name, used, all_ in (("train", self.train_days, self.splits.train),
                                          ("validation", self.val_days, self.splits.val),
                                          ("test", self.test_days, self.splits.test))]
        return "usable days: " + ", ".join(parts)


def _dates_and_counts(cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """Dates within data.start/end and the number of stocks (rows) on each."""
    per_day = (pl.scan_parquet(cfg.data.path).filter(date_filter(cfg.data)).group_by(DATE).len()
               .sort(DATE).collect())
    return per_day[DATE].to_numpy().astype("datetime64[D]"), per_day["len"].to_numpy()


def _check_horizons(cfg: RunConfig, summary: DatasetSummary) -> None:
    missing = [h for h in cfg.data.horizons if h not in summary.horizons]
    if missing:
        raise ConfigError(f"data.horizons={list(cfg.data.horizons)}: {cfg.data.path} has no "
                          f"{', '.join(target_name(h) for h in missing)} (its horizons are {list(summary.horizons)})")


def _empty_date_range(cfg: RunConfig, summary: DatasetSummary) -> ConfigError:
    d = cfg.data
    if d.start and d.start > summary.end:
        return ConfigError(f"data.start={d.start} is after the last date of {d.path} ({summary.end})")
    if d.end and d.end < summary.start:
        return ConfigError(f"data.end={d.end} is before the first date of {d.path} ({summary.start})")
    return ConfigError(f"data.start={d.start or '-'} / data.end={d.end or '-'}: no dates of {d.path} "
                       f"({summary.start}..{summary.end}) in between")


def _no_usable_days(cfg: RunConfig, name: str, days: np.ndarray, counts: np.ndarray) -> ConfigError:
    d = cfg.data
    windows = int((days >= d.lookback - 1).sum())
    crowded = int((counts[days] >= d.min_stocks_per_day).sum())
    return ConfigError(
        f"no usable {name} days: of its {len(days):,} days, {windows:,} have a full data.lookback={d.lookback}-day "
        f"window and {crowded:,} have >= data.min_stocks_per_day={d.min_stocks_per_day} stocks "
        f"(the dataset has at most {int(counts.max()) if len(counts) else 0} stocks on a day); "
        "lower them, or move the split dates")


def plan_days(cfg: RunConfig, summary: DatasetSummary | None = None) -> DayPlan:
    """The day plan of `cfg` on its dataset; ConfigError (naming the setting) where a horizon is
    missing, data.start/end leave no date, a split is empty, or no training or validation day
    is usable. `summary`: the dataset's validation, when the caller already has it."""
    summary = summary or validate_dataset(cfg.data.path)
    _check_horizons(cfg, summary)
    dates, counts = _dates_and_counts(cfg)
    if len(dates) == 0:
        raise _empty_date_range(cfg, summary)
    try:
        splits = make_splits(dates, cfg.data)
    except DataError as exc:
        raise ConfigError(f"{SPLIT_SETTINGS}: {exc}") from exc
    usable = {name: usable_days(getattr(splits, name), counts, cfg.data.lookback, cfg.data.min_stocks_per_day)
              for name in ("train", "val", "test")}
    for name, label in (("train", "training"), ("val", "validation")):
        if len(usable[name]) == 0:
            raise _no_usable_days(cfg, label, getattr(splits, name), counts)
    return DayPlan(dates, counts, splits, usable["train"], usable["val"], usable["test"])


def check_settings(cfg: RunConfig) -> DayPlan:
    """Every setting checked against the dataset, as the trainer would find it: the dataset
    itself (DataError), the feature settings and the day plan (ConfigError)."""
    summary = validate_dataset(cfg.data.path)
    try:
        loaded = select_features(summary.feature_names, cfg.data.features, cfg.data.expected_feature_count,
                                 cfg.data.path)
    except DataError as exc:
        raise ConfigError(str(exc)) from exc
    feature_index(cfg.loss.neutralize, loaded, "loss.neutralize")
    feature_index((cfg.model.factor,) if cfg.model.factor else (), loaded, "model.factor")
    return plan_days(cfg, summary)
