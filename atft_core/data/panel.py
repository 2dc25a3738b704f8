"""The dataset as dense tensors: [days, stocks, features] plus masks, targets and returns."""

from __future__ import annotations

import dataclasses

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
import psutil
import torch

from ..config import DataConfig
from .errors import DataError
from .schema import CODE, DATE, RAW_RET, SECTOR, target_name
from .validate import select_features, validate_dataset

RAM_HEADROOM = 0.8
"""Refuse to allocate a panel needing more than this share of the RAM available now."""


@dataclass
class Panel:
    """One dataset in memory. Shapes: D days, N stocks, F features, H horizons.

    features [D, N, F] float32 (0 where invalid); valid [D, N] bool (stock traded, has a row);
    targets [D, N, H] float32 (NaN where unknown, execution lag applied); returns [D, N] float32
    (raw backward 1-day return, 0 where unknown); sectors [N] int64 (-1 where unknown).
    """

    dates: np.ndarray
    codes: list[str]
    feature_names: tuple[str, ...]
    features: torch.Tensor
    valid: torch.Tensor
    targets: torch.Tensor
    returns: torch.Tensor
    sectors: torch.Tensor
    horizons: tuple[int, ...]
    fingerprint: str
    sector_names: tuple[str, ...] = ()
    """Sector33Code of each sector index used in `sectors`."""

    def to(self, device: torch.device | str) -> "Panel":
        """The same panel with every tensor on `device` (optimized mode keeps it on the GPU)."""
        return dataclasses.replace(
            self, features=self.features.to(device), valid=self.valid.to(device), targets=self.targets.to(device),
            returns=self.returns.to(device), sectors=self.sectors.to(device))


def estimate_panel_bytes(n_days: int, n_stocks: int, n_features: int, n_horizons: int, bytes_per_value: int = 4) -> int:
    """Bytes of the panel tensors: features, targets and returns at `bytes_per_value`, mask at 1."""
    cells = n_days * n_stocks
    return cells * (n_features + n_horizons + 1) * bytes_per_value + cells


def _check_memory(need: int, what: str) -> None:
    available = psutil.virtual_memory().available
    if need > RAM_HEADROOM * available:
        raise DataError(f"{what} needs about {need / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB of RAM "
                        f"is available (limit {RAM_HEADROOM:.0%}); use fewer features, stocks or dates (data.start/end)")


def date_filter(cfg: DataConfig) -> pl.Expr:
    """Rows within data.start / data.end (the plan of a run's days uses the same filter)."""
    expr = pl.lit(True)
    if cfg.start:
        expr &= pl.col(DATE) >= dt.date.fromisoformat(cfg.start)
    if cfg.end:
        expr &= pl.col(DATE) <= dt.date.fromisoformat(cfg.end)
    return expr


def _lag_targets(targets: np.ndarray, valid: np.ndarray, lag: int) -> np.ndarray:
    """Execution lag: the label of day d is the lag-0 label of the stock's next panel day."""
    if lag == 0:
        return targets
    out = np.full_like(targets, np.nan)
    out[:-lag] = targets[lag:]
    out[:-lag][~valid[lag:]] = np.nan
    return out


def load_panel(data_cfg: DataConfig) -> Panel:
    """Validate the dataset at data_cfg.path and load it as dense tensors (see Panel).

    Honours data_cfg.features, expected_feature_count, start/end, horizons and execution_lag;
    DataError when a feature or target is missing or the panel would not fit in RAM.
    """
    summary = validate_dataset(data_cfg.path)
    names = select_features(summary.feature_names, data_cfg.features, data_cfg.expected_feature_count,
                            str(summary.path))
    missing_h = [h for h in data_cfg.horizons if h not in summary.horizons]
    if missing_h:
        raise DataError(f"data.horizons {list(data_cfg.horizons)}: {data_cfg.path} has no "
                        f"{[target_name(h) for h in missing_h]} (it has horizons {list(summary.horizons)})")
    tcols = [target_name(h) for h in data_cfg.horizons]
    sector_col = [SECTOR] if summary.has_sector else []
    lf = pl.scan_parquet(data_cfg.path).filter(date_filter(data_cfg))
    keys = lf.select(CODE, DATE).collect()
    if keys.height == 0:
        raise DataError(f"{data_cfg.path}: no rows between data.start={data_cfg.start!r} and data.end={data_cfg.end!r}")
    dates = keys[DATE].unique().sort()
    codes = keys[CODE].unique().sort()
    need = estimate_panel_bytes(len(dates), len(codes), len(names), len(tcols)) + keys.height * (len(names) + len(tcols) + 1) * 8
    _check_memory(need, f"the panel of {data_cfg.path} ({len(dates)} days x {len(codes)} stocks x {len(names)} features)")
    df = lf.select(CODE, DATE, RAW_RET, *names, *tcols, *sector_col).collect()
    di = _index_of(df[DATE], dates)
    si = _index_of(df[CODE], codes)
    shape = (len(dates), len(codes))
    feats = np.zeros(shape + (len(names),), np.float32)
    feats[di, si] = df.select(names).to_numpy().astype(np.float32, copy=False)
    valid = np.zeros(shape, bool)
    valid[di, si] = True
    targets = np.full(shape + (len(tcols),), np.nan, np.float32)
    targets[di, si] = df.select(tcols).to_numpy()
    returns = np.zeros(shape, np.float32)
    returns[di, si] = df[RAW_RET].fill_null(0).fill_nan(0).to_numpy()
    sectors, sector_names = _sectors(df, codes, summary.has_sector)
    return Panel(
        dates=dates.to_numpy().astype("datetime64[D]"), codes=codes.to_list(), feature_names=names,
        features=torch.from_numpy(feats), valid=torch.from_numpy(valid),
        targets=torch.from_numpy(_lag_targets(targets, valid, data_cfg.execution_lag)),
        returns=torch.from_numpy(returns), sectors=torch.from_numpy(sectors), horizons=tuple(data_cfg.horizons),
        fingerprint=summary.fingerprint, sector_names=sector_names,
    )


def _index_of(values: pl.Series, sorted_unique: pl.Series) -> np.ndarray:
    return sorted_unique.search_sorted(values, side="left").to_numpy().astype(np.int64)


def _sectors(df: pl.DataFrame, codes: pl.Series, has_sector: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each stock's latest known sector as an index into the sorted sector names (-1 unknown)."""
    out = np.full(len(codes), -1, np.int64)
    if not has_sector:
        return out, ()
    latest = df.drop_nulls(SECTOR).group_by(CODE).agg(pl.col(SECTOR).last())
    names = tuple(sorted(latest[SECTOR].unique().to_list()))
    lookup = {s: i for i, s in enumerate(names)}
    idx = _index_of(latest[CODE], codes)
    out[idx] = [lookup[s] for s in latest[SECTOR].to_list()]
    return out, names
