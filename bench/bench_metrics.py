"""How fast the per-date metrics are at real scale (one year of the real panel's size).

    python bench/bench_metrics.py [--days 250] [--stocks 943] [--repeat 7] [--runs RUN_DIR ...]

Times `metrics.daily_rank_ic` and `metrics.summarize` (every metric a run logs per split and
horizon) on random predictions with 5% of the cells masked, after one warm-up call; prints
min / median / max of --repeat calls. Every validation pass and every page evaluation calls
these, so they must stay well under a second. With --runs (finished run folders), also times
`ensemble.combine_predictions` of their predictions, the core of `runs ensemble`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import metrics  # noqa: E402
from atft_core.evaluation import horizons_in, load_predictions  # noqa: E402
from atft_core.runs.ensemble import combine_predictions  # noqa: E402
from machine import cpu_model  # noqa: E402

MASKED_SHARE = 0.05
"""Share of cells without a valid stock-day (no trade, not listed yet)."""


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--stocks", type=int, default=943)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--runs", nargs="*", default=[], help="finished run folders to ensemble (two or more)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, args.days, args.stocks))
    mask = rng.random((args.days, args.stocks)) > MASKED_SHARE
    print(f"machine: {cpu_model()}, Python {platform.python_version()}; {args.days} days x {args.stocks} stocks, "
          f"{args.repeat} repeats")
    for name, fn in (("daily_rank_ic", lambda: metrics.daily_rank_ic(pred, target, mask)),
                     ("summarize", lambda: metrics.summarize(pred, target, mask))):
        report(name, timed(fn, args.repeat))
    if len(args.runs) >= 2:
        frames = [load_predictions(Path(run) / "predictions.parquet") for run in args.runs]
        print(f"ensemble of {len(frames)} runs, {frames[0].height} rows x {len(horizons_in(frames[0]))} horizons each")
        report("combine", timed(lambda: combine_predictions(frames, horizons_in(frames[0])), args.repeat))
    return 0


def report(name: str, t: list[float]) -> None:
    print(f"{name:14s} min {min(t) * 1e3:7.1f} ms  median {statistics.median(t) * 1e3:7.1f} ms  max {max(t) * 1e3:7.1f} ms")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
