"""Score finished runs on the years *before* their training window: more unseen days than validation.

    python bench/unseen_years.py runs/quality/default-s0 runs/quality/abl-hidden_large
    python bench/unseen_years.py --dataset runs/quality/dataset.parquet --cache runs/unseen runs/sweep/*

A deep row of the quality report trains on its last 400 training days (2021-04..2022-12), so the
five years before them are labelled data it never saw: about 1,200 days against validation's
221, i.e. a standard error of the mean daily RankIC (1d) about 2.3x smaller. Rows can be compared
there with far less seed noise (time runs backwards, so it complements validation, it does not
replace it). For each run this predicts with its best checkpoint (`atft_core.predict`, cached
under --cache) and prints the mean daily RankIC of the first horizon: before the training window
(dates whose label ends, with the purge and embargo, before the window's first day), per year,
and on validation. The test segment is never read. A run that trained from the first date
has no unseen past and shows n/a there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import metrics  # noqa: E402
from atft_core.evaluation import to_arrays  # noqa: E402
from atft_core.predict import predict_run  # noqa: E402
from atft_core.run_files import RunFiles, read_json  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run folders")
    ap.add_argument("--dataset", default="", help="model-ready parquet (default: each run's data.path)")
    ap.add_argument("--cache", default="runs/unseen", help="folder for the all-dates predictions of each run")
    ap.add_argument("--factors", default="", help="comma-separated feature columns to score too, as minus the "
                    "feature (a reversal), on the first run's rows and days, e.g. feat_close_loc,feat_ret_1d")
    return ap.parse_args(argv)


def segment_starts(run: Path) -> tuple[str, int]:
    """(first training date asked for, purge + embargo days) from the run's effective config."""
    data = (read_json(RunFiles(run).config) or {}).get("config", {}).get("data", {})
    return data.get("start", ""), int(data.get("purge_days", 0)) + int(data.get("embargo_days", 0))


def validation_dates(run: Path) -> pl.Series:
    """The run's validation dates, from the predictions it wrote at the end of training."""
    frame = pl.read_parquet(RunFiles(run).predictions, columns=["Date", "split"])
    return frame.filter(pl.col("split") == "val")["Date"].unique().sort()


def daily_rank_ic(frame: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """Date, year and the day's RankIC of the prediction against the target."""
    dates, pred, target, mask = to_arrays(frame.with_columns(pl.lit("all").alias("split")), "all", horizon)
    return pl.DataFrame({"Date": dates, "rank_ic": metrics.daily_rank_ic(pred, target, mask)},
                        nan_to_null=True).drop_nulls().with_columns(pl.col("Date").dt.year().alias("year"))


def summarize(run: Path, dataset: Path, cache: Path, factors: tuple[str, ...] = ()) -> str:
    """The run's line, then one per factor (minus the feature, on the run's own rows and days)."""
    start, gap = segment_starts(run)
    val_dates = validation_dates(run)
    out = cache / f"{run.resolve().parent.name}-{run.name}.parquet"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        predict_run(run, dataset, out)
    frame = pl.read_parquet(out)
    horizon = int(next(c for c in frame.columns if c.startswith("pred_"))[5:-1])
    frame = frame.filter(pl.col("Date") <= val_dates.max())   # nothing after validation is ever scored
    calendar = frame["Date"].unique().sort()
    past_end = None   # a day's label ends at least purge days later: leave purge + embargo days before the window
    if start and (cutoff := calendar.search_sorted(dt.date.fromisoformat(start)) - gap) > 0:
        past_end = calendar[cutoff]
    lines = [_line(str(run), daily_rank_ic(frame, horizon), past_end, val_dates)]
    if factors:
        target = f"target_{horizon}d"
        inputs = frame.select("Date", "Code").join(pl.read_parquet(dataset, columns=["Date", "Code", target, *factors]),
                                                   on=["Date", "Code"], how="left")
        for name in factors:
            as_pred = inputs.select("Date", "Code", (-pl.col(name)).alias(f"pred_{horizon}d"), target)
            lines.append(_line(f"  -{name} (factor)", daily_rank_ic(as_pred, horizon), past_end, val_dates))
    return "\n".join(lines)


def _line(label: str, daily: pl.DataFrame, past_end, val_dates: pl.Series) -> str:
    past = daily.filter(pl.col("Date") < past_end) if past_end is not None else daily.head(0)
    val = daily.filter(pl.col("Date").is_in(val_dates.implode()))["rank_ic"].to_numpy()
    years = daily.group_by("year").agg(pl.col("rank_ic").mean()).sort("year")
    return (f"{label:40s} unseen past {_mean_se(past['rank_ic'].to_numpy())} ({past.height} d)  "
            f"validation {_mean_se(val)}  | " + " ".join(f"{y}:{v:+.4f}" for y, v in years.iter_rows()))


def _mean_se(x: np.ndarray) -> str:
    if len(x) < 2:
        return "n/a"
    return f"{x.mean():+.4f} ± {x.std(ddof=1) / np.sqrt(len(x)):.4f}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    factors = tuple(f for f in args.factors.split(",") if f)
    for i, name in enumerate(args.runs):
        run = Path(name)
        cfg = (read_json(RunFiles(run).config) or {}).get("config", {})
        dataset = Path(args.dataset or cfg.get("data", {}).get("path", ""))
        print(summarize(run, dataset, Path(args.cache), factors if i == 0 else ()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
