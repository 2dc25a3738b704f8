"""How much do splits in split-adjusted prices move the statement yields? Single factors per year.

    python bench/statement_splits.py raw=runs/stmt/nofix.parquet fixed=runs/stmt/fixed.parquet \
        placebo=runs/stmt/placebo.parquet

Each argument is LABEL=DATASET, a dataset built with `--statements` (e.g. by an older build
without the split basis, by this one, and by this one from statements cut a year early, whose
missing year of splits stands in for the splits after the shared statements end). For every
yield feature (fin_ey, fin_bp, fin_dy) it prints the mean daily RankIC of the feature as a
factor (high yield first, every valid stock, as `model.kind=factor` scores it) against the 1-
and 20-day targets in each year up to --last-year (2023 by default: the quality report's test
year is never read), and the paired t of each dataset's daily RankIC against the first one's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core.metrics import paired_t  # noqa: E402

YIELDS = ("feat_fin_ey", "feat_fin_bp", "feat_fin_dy")
HORIZONS = (1, 20)
FIRST_YEAR = 2021
"""The shared statements start in 2021-01: before it the yields are 0 for every stock."""


def daily_rank_ic(path: str, feature: str, horizon: int, last_year: int) -> pl.DataFrame:
    """Date, year and the day's Spearman correlation of the feature with the h-day target."""
    target = f"target_{horizon}d"
    frame = (pl.scan_parquet(path).select("Date", feature, target)
             .filter(pl.col("Date").dt.year().is_between(FIRST_YEAR, last_year) & pl.col(target).is_not_null())
             .with_columns(pl.col(feature).rank().over("Date").alias("a"), pl.col(target).rank().over("Date").alias("b"))
             .group_by("Date").agg(pl.corr("a", "b").alias("ric")).collect()
             .with_columns(pl.col("ric").fill_nan(None)))  # a day on which no stock has a filing ranks nothing
    return frame.with_columns(pl.col("Date").dt.year().alias("year")).sort("Date")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="+", help="LABEL=PATH of datasets built with --statements")
    ap.add_argument("--last-year", type=int, default=2023, help="last year read (never the report's test year 2024)")
    args = ap.parse_args(argv)
    if args.last_year >= 2024:
        raise SystemExit("--last-year: 2024 is the quality report's test year; read at most 2023")
    named = dict(item.split("=", 1) for item in args.datasets)
    for feature in YIELDS:
        for h in HORIZONS:
            series = {label: daily_rank_ic(path, feature, h, args.last_year) for label, path in named.items()}
            years = sorted(set(next(iter(series.values()))["year"].to_list()))
            print(f"\n{feature.removeprefix('feat_')} vs the {h}-day target: mean daily RankIC by year"
                  + (f" (t vs {next(iter(named))} per year)" if len(named) > 1 else ""))
            first = next(iter(series.values()))
            for label, s in series.items():
                cells = []
                for year in years:
                    a = s.filter(pl.col("year") == year)
                    b = first.filter(pl.col("year") == year)
                    t, _ = paired_t(a["ric"].to_numpy(), b["ric"].to_numpy())
                    cells.append(f"{a['ric'].mean():+.4f}" + ("" if label == next(iter(named)) or t is None
                                                               else f" ({t:+.1f})"))
                print(f"  {label:<10} " + "   ".join(f"{y}: {c}" for y, c in zip(years, cells)))


if __name__ == "__main__":
    main(sys.argv[1:])
