"""Score finished runs on the years *before* their training window: more unseen days than validation.

    python bench/unseen_years.py runs/quality/default-s0 runs/quality/abl-hidden_large
    python bench/unseen_years.py --factors feat_close_loc,feat_ret_1d runs/quality/default-s0
    python bench/unseen_years.py --ensemble runs/quality/default-s0 runs/quality/default-s1 runs/quality/default-s2

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
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_report import paired_t  # noqa: E402  (bench/, on the path when run as a script)
from atft_core import metrics  # noqa: E402
from atft_core.evaluation import to_arrays  # noqa: E402
from atft_core.predict import predict_run  # noqa: E402
from atft_core.run_files import RunFiles, read_json  # noqa: E402
from atft_core.runs.ensemble import combine_predictions  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run folders")
    ap.add_argument("--dataset", default="", help="model-ready parquet (default: each run's data.path)")
    ap.add_argument("--cache", default="runs/unseen", help="folder for the all-dates predictions of each run")
    ap.add_argument("--ensemble", action="store_true", help="also score the per-date mean of the runs' "
                    "z-scored predictions (a seed ensemble)")
    ap.add_argument("--factors", default="", help="comma-separated feature columns to score too, as minus the "
                    "feature (a reversal), on the first run's (and the ensemble's) rows and days, with the paired t "
                    "of the run minus the factor, e.g. feat_close_loc,feat_ret_1d")
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


def scored_frame(run: Path, dataset: Path, cache: Path) -> tuple[pl.DataFrame, int, Any, pl.Series]:
    """(the run's predictions up to the end of validation, horizon, end of the unseen past or None,
    validation dates); the all-dates predictions are cached under `cache`."""
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
    return frame, horizon, past_end, val_dates


def summarize(run: Path, dataset: Path, cache: Path, factors: tuple[str, ...] = ()) -> str:
    """The run's line, then one per factor (minus the feature, on the run's own rows and days)."""
    frame, horizon, past_end, val_dates = scored_frame(run, dataset, cache)
    daily = daily_rank_ic(frame, horizon)
    return "\n".join([_line(str(run), daily, past_end, val_dates),
                      *factor_lines(daily, frame, dataset, horizon, factors, past_end, val_dates)])


def factor_lines(daily: pl.DataFrame, frame: pl.DataFrame, dataset: Path, horizon: int, factors: tuple[str, ...],
                 past_end, val_dates: pl.Series) -> list[str]:
    """One line per factor (minus the feature) on `frame`'s rows, with the paired t of `daily` against it."""
    if not factors:
        return []
    target = f"target_{horizon}d"
    inputs = frame.select("Date", "Code").join(pl.read_parquet(dataset, columns=["Date", "Code", target, *factors]),
                                               on=["Date", "Code"], how="left")
    lines = []
    for name in factors:
        factor_daily = daily_rank_ic(inputs.select("Date", "Code", (-pl.col(name)).alias(f"pred_{horizon}d"), target), horizon)
        lines.append(_line(f"  -{name} (factor)", factor_daily, past_end, val_dates)
                     + f"  | run minus factor on the unseen past: paired t {_paired_t(daily, factor_daily, past_end)}")
    return lines


def _paired_t(a: pl.DataFrame, b: pl.DataFrame, past_end) -> str:
    """Paired t of a's daily RankIC minus b's over the unseen-past dates both have."""
    if past_end is None:
        return "n/a"
    both = a.join(b, on="Date", suffix="_b").filter(pl.col("Date") < past_end)
    t, _ = paired_t(both["rank_ic"].to_list(), both["rank_ic_b"].to_list())
    return "n/a" if t is None else f"{t:.2f}"


def ensemble(runs: list[Path], datasets: list[Path], cache: Path, factors: tuple[str, ...] = ()) -> str:
    """The per-date mean of the runs' z-scored predictions (runs with the same windows), then factors."""
    frames = [scored_frame(run, dataset, cache) for run, dataset in zip(runs, datasets)]
    _, horizon, past_end, val_dates = frames[0]
    if any((h, p) != (horizon, past_end) or not v.equals(val_dates) for _, h, p, v in frames[1:]):
        raise SystemExit("--ensemble: the runs differ in horizon, training window or validation days")
    mean = combine_predictions([frame for frame, *_ in frames], [horizon])
    daily = daily_rank_ic(mean, horizon)
    return "\n".join([_line(f"ensemble of {len(frames)} runs", daily, past_end, val_dates),
                      *factor_lines(daily, mean, datasets[0], horizon, factors, past_end, val_dates)])


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
    runs = [Path(name) for name in args.runs]
    datasets = [Path(args.dataset or (read_json(RunFiles(run).config) or {}).get("config", {}).get("data", {}).get("path", ""))
                for run in runs]
    for i, (run, dataset) in enumerate(zip(runs, datasets)):
        print(summarize(run, dataset, Path(args.cache), factors if i == 0 else ()), flush=True)
    if args.ensemble:
        print(ensemble(runs, datasets, Path(args.cache), factors), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
