"""Walk-forward train / validation / test segments of the panel's dates, with purge + embargo."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from .errors import DataError


@dataclass(frozen=True)
class Splits:
    """Day indices of each segment; `gap` days (purge + embargo) separate the segments."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dates: np.ndarray
    purge: int
    embargo: int

    def describe(self) -> str:
        """One log line: each segment's date range and day count, and the gap."""
        def seg(name: str, idx: np.ndarray) -> str:
            return f"{name} {self.dates[idx[0]]}..{self.dates[idx[-1]]} ({len(idx)} d)"
        return (f"{seg('train', self.train)} | {seg('val', self.val)} | {seg('test', self.test)} | "
                f"purge {self.purge} + embargo {self.embargo} d between segments")


def purge_days(data_cfg: DataConfig) -> int:
    """At least the longest horizon + execution lag (0 in the config means exactly that)."""
    need = max(data_cfg.horizons) + data_cfg.execution_lag
    if data_cfg.purge_days and data_cfg.purge_days < need:
        raise DataError(f"data.purge_days={data_cfg.purge_days} < longest horizon + execution lag = {need}")
    return data_cfg.purge_days or need


def make_splits(dates: np.ndarray, data_cfg: DataConfig) -> Splits:
    """Split sorted panel dates by data_cfg.train_end/val_end (if given) or by fractions.

    A training day t's label ends at day t + max(horizons) + execution_lag; the purge keeps that
    before the first validation day (and likewise validation before test).
    """
    dates = np.asarray(dates).astype("datetime64[D]")
    n = len(dates)
    purge, embargo = purge_days(data_cfg), data_cfg.embargo_days
    gap = purge + embargo
    if data_cfg.train_end and data_cfg.val_end:
        train_last = int(np.searchsorted(dates, np.datetime64(dt.date.fromisoformat(data_cfg.train_end)), "right")) - 1
        val_last = int(np.searchsorted(dates, np.datetime64(dt.date.fromisoformat(data_cfg.val_end)), "right")) - 1
    else:
        train_last = math.floor(n * data_cfg.train_fraction) - 1
        val_last = math.floor(n * (data_cfg.train_fraction + data_cfg.val_fraction)) - 1
    train = np.arange(0, train_last + 1)
    val = np.arange(train_last + 1 + gap, val_last + 1)
    test = np.arange(max(val_last, train_last + gap) + 1 + gap, n)
    for name, idx in (("train", train), ("validation", val), ("test", test)):
        if len(idx) == 0:
            raise DataError(f"the {name} segment is empty: {n} dates "
                            f"({dates[0] if n else '-'}..{dates[-1] if n else '-'}), train_end={data_cfg.train_end!r}, "
                            f"val_end={data_cfg.val_end!r}, fractions {data_cfg.train_fraction}/{data_cfg.val_fraction}, "
                            f"gap {gap} days (purge {purge} + embargo {embargo})")
    return Splits(train=train, val=val, test=test, dates=dates, purge=purge, embargo=embargo)
