"""Where a run's ranking works: RankIC and the net long-short book by year, month and sector.

Inputs are one split and horizon as `[dates, stocks]` arrays (`evaluation.to_arrays`), the
book's weights (`metrics.long_short_weights`) and what replacing it trades
(`costs.traded_weights`). Returns and costs follow `atft_core.costs`: an h-day book's net
return is ``r_t - c x traded_t``, shown per day (``/ h``) in basis points.

- By period (calendar year, month): mean daily RankIC of the period's days (years with a 95%
  block-bootstrap interval) and the book's mean net return per day at each cost level.
- By Sector33 (the dataset's ``Sector33Code``, one per stock: its latest label): the mean of the
  daily RankIC *within* the sector's stocks (does the model rank banks against banks?), with
  its interval; the sector's mean share of the long and short legs; and its contribution to the
  book's net return per day at each cost: ``sum over the sector's stocks of w r - c |dw|``.
  Contributions add up over sectors to the whole book's net return on the same days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from atft_core import bootstrap, metrics
from atft_core.costs import BPS

UNKNOWN_SECTOR = "unknown"
"""Label of stocks without a Sector33Code."""
SECTOR33_NAMES = {
    "0050": "Fishery, Agriculture & Forestry", "1050": "Mining", "2050": "Construction", "3050": "Foods",
    "3100": "Textiles & Apparels", "3150": "Pulp & Paper", "3200": "Chemicals", "3250": "Pharmaceutical",
    "3300": "Oil & Coal Products", "3350": "Rubber Products", "3400": "Glass & Ceramics Products",
    "3450": "Iron & Steel", "3500": "Nonferrous Metals", "3550": "Metal Products", "3600": "Machinery",
    "3650": "Electric Appliances", "3700": "Transportation Equipment", "3750": "Precision Instruments",
    "3800": "Other Products", "4050": "Electric Power & Gas", "5050": "Land Transportation",
    "5100": "Marine Transportation", "5150": "Air Transportation", "5200": "Warehousing & Harbor Transportation",
    "5250": "Information & Communication", "6050": "Wholesale Trade", "6100": "Retail Trade", "7050": "Banks",
    "7100": "Securities & Commodity Futures", "7150": "Insurance", "7200": "Other Financing Business",
    "8050": "Real Estate", "9050": "Services",
}
"""The TSE's 33-sector classification (codes as J-Quants gives them, zero-padded to 4 digits)."""
SECTOR_CODE_WIDTH = 4

PERIOD_SCHEMA = {"period": pl.String, "year": pl.Int32, "month": pl.Int32, "days": pl.Int64,
                 "rank_ic": pl.Float64, "rank_ic_low": pl.Float64, "rank_ic_high": pl.Float64,
                 "cost_bps": pl.Float64, "net_bp_per_day": pl.Float64}
SECTOR_SCHEMA = {"sector": pl.String, "name": pl.String, "stocks": pl.Float64, "days": pl.Int64,
                 "rank_ic": pl.Float64, "rank_ic_low": pl.Float64, "rank_ic_high": pl.Float64,
                 "long_share": pl.Float64, "short_share": pl.Float64, "cost_bps": pl.Float64,
                 "net_bp_per_day": pl.Float64}


def sector_name(code: str | None) -> str:
    """'Banks' for '7050'; the code itself when it is not a TSE 33-sector code."""
    if code is None:
        return UNKNOWN_SECTOR
    return SECTOR33_NAMES.get(code, code)


def _normalise_code(code) -> str | None:
    if code is None:
        return None
    text = str(code).strip()
    return text.zfill(SECTOR_CODE_WIDTH) if text.isdigit() else (text or None)


def read_sectors(dataset: Path | str, codes: list[str]) -> np.ndarray:
    """Each code's latest Sector33Code in a model-ready dataset: [N] object array, None where
    the stock has none. Raises FileNotFoundError / ValueError naming the file or column."""
    path = Path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run's dataset is not there (needed for the Sector33 breakdown)")
    if "Sector33Code" not in pl.read_parquet_schema(path):
        raise ValueError(f"{path}: no Sector33Code column (needed for the Sector33 breakdown)")
    latest = (pl.scan_parquet(path).select("Date", pl.col("Code").cast(pl.String), pl.col("Sector33Code").cast(pl.String))
              .filter(pl.col("Code").is_in(codes) & pl.col("Sector33Code").is_not_null())
              .sort("Date").group_by("Code").agg(pl.col("Sector33Code").last()).collect())
    found = dict(zip(latest["Code"].to_list(), latest["Sector33Code"].to_list()))
    return np.array([_normalise_code(found.get(c)) for c in codes], dtype=object)


# ---------------------------------------------------------------------------------------------
# By period


def _net_per_day(gross: np.ndarray, traded: np.ndarray, horizon: int, cost_bps: float) -> np.ndarray:
    """Net return per day (h-day return / h) of a book or a slice of it; NaN where not costed."""
    return (gross - cost_bps * BPS * traded) / horizon


def by_period(dates: np.ndarray, rank_ic: np.ndarray, gross: np.ndarray, traded: np.ndarray, horizon: int,
              cost_bps: tuple[float, ...], period: str) -> pl.DataFrame:
    """One row per period and cost level (`PERIOD_SCHEMA`); ``period`` is 'year' or 'month'.

    rank_ic, gross [D]: daily RankIC and h-day book return; traded [D]: what the day's
    rebalance trades (NaN on days without an earlier book). Years get a RankIC interval.
    """
    if period not in ("year", "month"):
        raise ValueError(f"by_period: period must be 'year' or 'month', got {period!r}")
    days = np.asarray(dates, dtype="datetime64[D]")
    years = days.astype("datetime64[Y]").astype(int) + 1970
    months = days.astype("datetime64[M]").astype(int) % 12 + 1
    keys = years if period == "year" else years * 100 + months
    rows = []
    for key in np.unique(keys):
        sel = keys == key
        year, month = (int(key), None) if period == "year" else (int(key) // 100, int(key) % 100)
        label = str(year) if month is None else f"{year}-{month:02d}"
        ric = bootstrap.mean_interval(rank_ic[sel], horizon) if period == "year" else None
        finite = rank_ic[sel][np.isfinite(rank_ic[sel])]
        for c in cost_bps:
            net = _net_per_day(gross[sel], traded[sel], horizon, c)
            net = net[np.isfinite(net)]
            rows.append({"period": label, "year": year, "month": month, "days": int(sel.sum()),
                         "rank_ic": float(finite.mean()) if len(finite) else None,
                         "rank_ic_low": ric.low if ric else None, "rank_ic_high": ric.high if ric else None,
                         "cost_bps": float(c), "net_bp_per_day": float(net.mean()) / BPS if len(net) else None})
    return pl.DataFrame(rows, schema=PERIOD_SCHEMA)


# ---------------------------------------------------------------------------------------------
# By sector


def by_sector(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, sectors: np.ndarray, weights: np.ndarray,
              traded: np.ndarray, horizon: int, cost_bps: tuple[float, ...]) -> pl.DataFrame:
    """One row per sector and cost level (`SECTOR_SCHEMA`), sectors by mean RankIC, best first.

    Shapes: pred, target, mask, weights, traded [D, N]; sectors [N] (None = unknown).
    Contributions use the days with a turnover (traded finite), like the cost table.
    """
    labels = np.array([UNKNOWN_SECTOR if s is None else s for s in sectors], dtype=object)
    valid = np.asarray(mask, dtype=bool) & np.isfinite(pred) & np.isfinite(target)
    costed = np.isfinite(traded).all(axis=1) & valid.any(axis=1)
    earned = np.where(valid, weights * np.where(valid, target, 0.0), 0.0)
    names = sorted(set(labels))
    group = np.searchsorted(np.asarray(names, dtype=object), labels)
    by_group = metrics.daily_rank_ic_by_group(pred, target, mask, group)
    rows = []
    for g, label in enumerate(names):
        cols = group == g
        ric = bootstrap.mean_interval(by_group[g], horizon)
        w = weights[:, cols]
        base = {"sector": label, "name": sector_name(None if label == UNKNOWN_SECTOR else label),
                "stocks": float(valid[:, cols].sum(axis=1).mean()) if len(valid) else 0.0,
                "days": ric.days, "rank_ic": ric.value, "rank_ic_low": ric.low, "rank_ic_high": ric.high,
                "long_share": float(np.clip(w, 0, None).sum(axis=1)[costed].mean()) if costed.any() else None,
                "short_share": float(np.clip(-w, 0, None).sum(axis=1)[costed].mean()) if costed.any() else None}
        gross = earned[:, cols].sum(axis=1)[costed]
        moved = np.nan_to_num(traded[:, cols]).sum(axis=1)[costed]
        for c in cost_bps:
            net = _net_per_day(gross, moved, horizon, c)
            rows.append({**base, "cost_bps": float(c), "net_bp_per_day": float(net.mean()) / BPS if len(net) else None})
    frame = pl.DataFrame(rows, schema=SECTOR_SCHEMA)
    return frame.sort(["rank_ic", "sector", "cost_bps"], descending=[True, False, False], nulls_last=True)
