"""How fast a finished run's evaluation is at real size (what the Run page computes, uncached).

    python bench/bench_evaluation.py [--days 250] [--stocks 943] [--repeat 3] [--run RUN_DIR]

Writes a synthetic run folder (predictions.parquet with validation and test, --days each, four
horizons; a dataset with 33 sectors) in a temporary folder, or uses --run (a finished run, e.g.
runs/quality/default-s0, whose config names its dataset). Times, after one warm-up call:
`evaluation.evaluate_run` for one horizon (what the Run page computes on a cache miss: both
splits, intervals, costs at 0/5/10/20 bp, year / month / Sector33 breakdowns), the same for
every horizon, and `evaluation.paired_costs` of the run against itself. Prints min / median /
max of --repeat calls and the CPU seconds per call.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import evaluation  # noqa: E402
from atft_core.breakdowns import SECTOR33_NAMES  # noqa: E402
from atft_core.config import RunConfig  # noqa: E402
from atft_core.run_files import RunFiles, write_json_atomic  # noqa: E402
from bench_metrics import timed  # noqa: E402
from machine import cpu_model  # noqa: E402

HORIZONS = (1, 5, 10, 20)
WINDOW = 20
SIGNAL = 0.1
"""Prediction = SIGNAL x standardised target + noise: a RankIC of about 0.1."""


def synthetic_run(root: Path, days: int, stocks: int, seed: int = 0) -> Path:
    """A run folder whose predictions have the real panel's size, and its dataset."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset("2023-01-04", np.arange(2 * days), roll="forward").astype("datetime64[D]")
    codes = [f"{1300 + i}0" for i in range(stocks)]
    sectors = list(SECTOR33_NAMES)
    dataset = root / "dataset.parquet"
    pl.DataFrame({"Date": dates[:1].repeat(stocks), "Code": codes,
                  "Sector33Code": [sectors[i % len(sectors)] for i in range(stocks)]}).write_parquet(dataset)
    cols: dict = {"Date": np.repeat(dates, stocks), "Code": np.tile(codes, 2 * days),
                  "split": np.repeat(np.where(np.arange(2 * days) < days, "val", "test"), stocks)}
    for h in HORIZONS:
        target = rng.normal(0, 0.02 * np.sqrt(h), 2 * days * stocks)
        cols[f"pred_{h}d"] = SIGNAL * target / target.std() + rng.normal(size=target.size)
        cols[f"target_{h}d"] = target
    files = RunFiles(root / "run")
    files.root.mkdir(parents=True)
    pl.DataFrame(cols).with_columns(pl.col("Date").cast(pl.Date)).write_parquet(files.predictions)
    cfg = RunConfig().replace(**{"data.path": str(dataset), "data.horizons": HORIZONS}).to_dict()
    write_json_atomic(files.config, {"config": cfg})
    return files.root


def measured(name: str, fn, repeat: int) -> None:
    """Print wall time (min / median / max of `repeat` calls after a warm-up) and CPU seconds per
    call of this process (all its threads): on a shared machine the wall time follows the load,
    the CPU time much less."""
    cpu = time.process_time()
    t = timed(fn, repeat)
    per_call = (time.process_time() - cpu) / (repeat + 1)
    print(f"{name:34s} wall min {min(t):6.2f} s  median {statistics.median(t):6.2f} s  max {max(t):6.2f} s"
          f"   CPU {per_call:6.2f} s per call")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=250, help="days per split (validation and test)")
    ap.add_argument("--stocks", type=int, default=943)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--run", default="", help="a finished run folder instead of the synthetic one")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else synthetic_run(Path(tmp), args.days, args.stocks)
        horizons = evaluation.run_horizons(run)
        rows = pl.scan_parquet(RunFiles(run).predictions).select(pl.len()).collect().item()
        print(f"machine: {cpu_model()}, Python {platform.python_version()}; {run}: {rows:,} prediction rows, "
              f"horizons {horizons}; {args.repeat} repeats")
        measured(f"evaluate_run, {horizons[0]}d (both splits)",
                 lambda: evaluation.evaluate_run(run, WINDOW, horizons[0]), args.repeat)
        measured(f"evaluate_run, all {len(horizons)} horizons",
                 lambda: [evaluation.evaluate_run(run, WINDOW, h) for h in horizons], args.repeat)
        measured(f"paired_costs, {horizons[0]}d test",
                 lambda: evaluation.paired_costs(run.parent, run.name, run.name, "test", horizons[0]), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
