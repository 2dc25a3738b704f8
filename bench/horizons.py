"""The longer horizons: defect or regime? Figures behind docs/horizons.md.

    python bench/horizons.py align --dataset runs/quality/dataset.parquet \
        --quotes ../shared/data/jquants_daily_quotes_2016_2024.parquet
    python bench/horizons.py runs runs/quality/default-s0 runs/quality/default-s1 runs/quality/default-s2
    python bench/horizons.py months docs/quality-gpu/quality/results.json --horizon 5 \
        default-s0 default-s1 default-s2 base-ridge base-low_vol base-reversal_5d
    python bench/horizons.py exposure --dataset runs/quality/dataset.parquet --horizon 5 \
        --features feat_vol_20,feat_beta_60,feat_ret_5d runs/quality/default-s0
    python bench/horizons.py years --dataset runs/quality/dataset.parquet --horizon 5 \
        --features feat_ret_60d,feat_ma_dist_60,feat_dist_high_60,feat_vol_20

- `align`: every h-day label of a built dataset against Close(t+h) / Close(t) - 1 computed
  straight from the quotes (t+h = the h-th market day after t in the quotes file).
- `runs`: mean daily RankIC per horizon on validation and test of finished runs, and the
  training-split (a fixed sample of training days) and validation RankIC per horizon at every
  epoch, from each run's metrics.jsonl.
- `months`: a quality report's daily test RankIC (results.json) averaged per calendar month,
  and the correlation over days of each row's series with the first row's.
- `exposure`: per split, the mean over dates of the rank correlation of a run's h-day
  predictions with some inputs: what the head bets on.
- `years`: per calendar year, the mean daily RankIC of minus each input (as a reversal) against
  the h-day label: does a single input's sign hold from year to year?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import metrics  # noqa: E402
from atft_core.evaluation import load_predictions, to_arrays  # noqa: E402
from atft_core.run_files import RunFiles  # noqa: E402

HORIZONS = (1, 5, 10, 20)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    align = sub.add_parser("align", help="dataset labels vs close-to-close returns from the quotes")
    align.add_argument("--dataset", required=True)
    align.add_argument("--quotes", required=True, help="the J-Quants daily quotes the dataset was built from")
    runs = sub.add_parser("runs", help="RankIC per horizon: validation / test, and per epoch train / validation")
    runs.add_argument("runs", nargs="+", type=Path)
    months = sub.add_parser("months", help="monthly mean of a report's daily test RankIC per row")
    months.add_argument("results", type=Path, help="a quality report's results.json")
    months.add_argument("rows", nargs="+", help="row names; the first is the reference of the correlations")
    months.add_argument("--horizon", default="5")
    exposure = sub.add_parser("exposure", help="rank correlation of a run's predictions with inputs")
    exposure.add_argument("runs", nargs="+", type=Path)
    exposure.add_argument("--dataset", required=True)
    exposure.add_argument("--features", required=True, help="comma-separated dataset columns")
    exposure.add_argument("--horizon", type=int, default=5)
    years = sub.add_parser("years", help="per-year RankIC of minus each input against the h-day label")
    years.add_argument("--dataset", required=True)
    years.add_argument("--features", required=True, help="comma-separated dataset columns")
    years.add_argument("--horizon", type=int, default=5)
    return ap.parse_args(argv)


def align(dataset: str, quotes: str) -> list[str]:
    """Per horizon: stock-days compared, the largest difference, and days known on one side only."""
    q = pl.read_parquet(quotes, columns=["Date", "Code", "AdjustmentClose", "AdjustmentVolume"])
    calendar = q.select("Date").unique().sort("Date").with_row_index("di")
    traded = q.join(calendar, on="Date").filter((pl.col("AdjustmentClose") > 0) & (pl.col("AdjustmentVolume") > 0))
    close = traded.select("Code", "di", pl.col("AdjustmentClose").alias("entry"))
    names = [f"target_{h}d" for h in HORIZONS]
    d = pl.read_parquet(dataset, columns=["Date", "Code", *names]).join(
        traded.select("Date", "Code", "di"), on=["Date", "Code"], how="left").join(close, on=["Code", "di"], how="left")
    lines = [f"{dataset}: {d.height} stock-days, {d['di'].null_count()} without a traded quote"]
    for h, name in zip(HORIZONS, names):
        later = close.select("Code", pl.col("di") - h, pl.col("entry").alias("exit"))
        k = d.join(later, on=["Code", "di"], how="left").with_columns((pl.col("exit") / pl.col("entry") - 1).alias("direct"))
        known, direct = pl.col(name).is_not_nan() & pl.col(name).is_not_null(), pl.col("direct").is_not_null()
        both = k.filter(known & direct)
        worst = (both[name] - both["direct"]).abs().max()
        lines.append(f"{h:>2}-day: {both.height} stock-days, max |label - Close(t+{h})/Close(t) + 1| = {worst:.1e}; "
                     f"label only {k.filter(known & ~direct).height}, prices only {k.filter(~known & direct).height}")
    return lines


def run_lines(run: Path) -> list[str]:
    """Validation and test RankIC per horizon, then train / validation RankIC per horizon per epoch."""
    frame = load_predictions(RunFiles(run).predictions)
    lines = [str(run)]
    for split in ("val", "test"):
        values = [metrics.summarize(*to_arrays(frame, split, h)[1:])["rank_ic"] for h in HORIZONS]
        lines.append(f"  {split:5s} RankIC " + "  ".join(f"{h}d {v:+.4f}" for h, v in zip(HORIZONS, values)))
    by_epoch: dict[int, dict[str, float]] = {}
    for text in RunFiles(run).metrics.read_text().splitlines():
        m = json.loads(text)
        if m.get("epoch") is not None and m.get("name", "").split("/")[0] in ("train", "val"):
            by_epoch.setdefault(m["epoch"], {})[m["name"]] = m["value"]
    for epoch, values in sorted(by_epoch.items()):
        cells = [f"{p} " + " ".join(f"{values.get(f'{p}/rank_ic_{h}d', float('nan')):+.4f}" for h in HORIZONS)
                 for p in ("train", "val")]
        lines.append(f"  epoch {epoch}: " + "   ".join(cells) + "   (1d 5d 10d 20d)")
    return lines


def month_lines(results: Path, rows: list[str], horizon: str) -> list[str]:
    """Monthly mean daily test RankIC of each row, and each row's daily correlation with the first."""
    data = json.loads(results.read_text())
    found = {r["name"]: r for r in data["rows"]}
    missing = [r for r in rows if r not in found]
    if missing:
        raise SystemExit(f"error: {results} has no row(s) {', '.join(missing)}")
    dates = pl.Series("Date", data["test_dates"]).str.to_date()
    frame = pl.DataFrame([dates] + [pl.Series(r, found[r]["daily"][horizon]["rank_ic"], dtype=pl.Float64) for r in rows])
    table = frame.group_by(pl.col("Date").dt.strftime("%Y-%m").alias("month")).agg(pl.col(rows).mean()).sort("month")
    lines = [f"{horizon}-day daily test RankIC, monthly mean ({results})", "month    " + " ".join(f"{r[:16]:>16s}" for r in rows)]
    lines += [f"{m[0]}  " + " ".join(f"{v:+16.4f}" for v in m[1:]) for m in table.iter_rows()]
    lines.append("year     " + " ".join(f"{v:+16.4f}" for v in frame.select(pl.col(rows).mean()).row(0)))
    lines.append(f"corr with {rows[0]} over days: " + " ".join(
        f"{r} {frame.select(pl.corr(rows[0], r)).item():+.2f}" for r in rows[1:]))
    return lines


def exposure_lines(run: Path, dataset: str, features: list[str], horizon: int) -> list[str]:
    """Mean daily rank correlation of the run's h-day predictions with each feature, per split."""
    pred = pl.read_parquet(RunFiles(run).predictions, columns=["Date", "Code", "split", f"pred_{horizon}d"])
    frame = pred.join(pl.read_parquet(dataset, columns=["Date", "Code", *features]), on=["Date", "Code"])
    lines = []
    for split in ("val", "test"):
        part = frame.filter(pl.col("split") == split).group_by("Date").agg(
            pl.corr(pl.col(f"pred_{horizon}d").rank(), pl.col(f).rank()).alias(f) for f in features)
        lines.append(f"{run} {split}: " + "  ".join(f"{f.removeprefix('feat_')} {part[f].mean():+.3f}" for f in features))
    return lines


def year_lines(dataset: str, features: list[str], horizon: int) -> list[str]:
    """Mean daily RankIC of minus each feature against the h-day label, per calendar year."""
    label = f"target_{horizon}d"
    frame = pl.read_parquet(dataset, columns=["Date", label, *features]).filter(pl.col(label).is_not_nan())
    daily = frame.group_by("Date").agg(pl.corr((-pl.col(f)).rank(), pl.col(label).rank()).alias(f) for f in features)
    table = daily.group_by(pl.col("Date").dt.year().alias("year")).agg(   # days without a ranking (NaN) skipped
        pl.col(f).filter(pl.col(f).is_not_nan()).mean() for f in features).sort("year")
    lines = [f"{horizon}-day label, mean daily RankIC of minus each input, per year",
             "year  " + " ".join(f"{f.removeprefix('feat_'):>14s}" for f in features)]
    return lines + [f"{y[0]}  " + " ".join(f"{v:+14.4f}" for v in y[1:]) for y in table.iter_rows()]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.command == "align":
        lines = align(args.dataset, args.quotes)
    elif args.command == "runs":
        lines = [line for run in args.runs for line in run_lines(run)]
    elif args.command == "months":
        lines = month_lines(args.results, args.rows, args.horizon)
    elif args.command == "years":
        lines = year_lines(args.dataset, [f.strip() for f in args.features.split(",") if f.strip()], args.horizon)
    else:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        lines = [line for run in args.runs for line in exposure_lines(run, args.dataset, features, args.horizon)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
