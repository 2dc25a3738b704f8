"""Benchmark of `build`: the real shared data, then synthetic scaling up to 4,000 x 2,500.

Targets: real data (943 stocks x 2,191 days) under 30 s wall and 4 GiB peak RSS on a 2-core
machine; synthetic 4,000 stocks x 2,500 days under 3 minutes, scaling linearly. The real data
is also built with its financial statements (`--statements`), reported on its own line.
Each build runs in its own subprocess, which reports its own peak RSS (getrusage).

    python bench/bench_build.py [--sizes 1000x2500,2000x2500,4000x2500] [--skip-real] [--repeat 3]
    python bench/bench_build.py --sizes "" --repeat 3      # the real data only

With --repeat N each build runs N times (a fresh subprocess each) and the line gives
min / median / max of wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py (bench scripts run as python bench/X.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _child(args: list[str]) -> None:
    """Run one build in this process and print wall seconds and peak RSS as JSON."""
    sys.path.insert(0, str(ROOT))
    from atft_core.data.build import build_dataset

    quotes, listed, index, out, statements = args
    t0 = time.perf_counter()
    summary = build_dataset(quotes, listed, out, index=index, statements=statements or None)
    wall = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_rss_gib": rss_kib / 2**20, "rows": summary.n_rows,
                      "stocks": summary.n_stocks, "days": summary.n_days, "features": summary.n_features}))


def _run(quotes, listed, index, out, repeat: int, statements=None) -> dict:
    """`repeat` builds, each in a fresh subprocess; the summary of the first plus wall / RSS lists."""
    cmd = [sys.executable, __file__, "--child", str(quotes), str(listed), str(index), str(out), str(statements or "")]
    runs = []
    for _ in range(repeat):
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return {**runs[0], "walls": [r["wall_s"] for r in runs], "rss": [r["peak_rss_gib"] for r in runs]}


def _spread(values: list[float], fmt: str) -> str:
    """'x' for one value, 'min / median / max (n=N)' for several."""
    if len(values) == 1:
        return format(values[0], fmt)
    return (f"{format(min(values), fmt)} / {format(statistics.median(values), fmt)} / "
            f"{format(max(values), fmt)} (min / median / max, n={len(values)})")


def _machine() -> str:
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def _report(name: str, r: dict) -> None:
    ok = statistics.median(r["walls"]) < 30 and max(r["rss"]) < 4
    print(f"{name} {r['stocks']} stocks x {r['days']} days, {r['rows']:,} rows, {r['features']} features: "
          f"{_spread(r['walls'], '.1f')} s, peak RSS {_spread(r['rss'], '.2f')} GiB  "
          f"[{'OK' if ok else 'OVER TARGET'}: median <30 s, <4 GiB]")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1000x2500,2000x2500,4000x2500")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="builds per dataset (min / median / max when > 1)")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    sys.path.insert(0, str(ROOT))
    from atft_core.data.demo import write_raw

    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_real and (SHARED / "jquants_daily_quotes_2016_2024.parquet").exists():
            r = _run(SHARED / "jquants_daily_quotes_2016_2024.parquet", SHARED / "jquants_listed_info.csv",
                     SHARED / "jquants_topix_2004_2024.parquet", tmp / "real.parquet", args.repeat)
            _report("real  ", r)
            statements = SHARED / "jquants_statements_2021_2024.parquet"
            if statements.exists():
                r = _run(SHARED / "jquants_daily_quotes_2016_2024.parquet", SHARED / "jquants_listed_info.csv",
                         SHARED / "jquants_topix_2004_2024.parquet", tmp / "real_fin.parquet", args.repeat, statements)
                _report("real + statements", r)
        for size in filter(None, args.sizes.split(",")):
            n, d = (int(v) for v in size.split("x"))
            raw = write_raw(tmp / f"raw_{n}x{d}", n, d, seed=0)
            r = _run(raw["quotes"], raw["listed_info"], raw["index"], tmp / f"syn_{n}x{d}.parquet", args.repeat)
            per_m = statistics.median(r["walls"]) / (r["rows"] / 1e6)
            print(f"synth  {n} stocks x {d} days, {r['rows']:,} rows: {_spread(r['walls'], '.1f')} s "
                  f"({per_m:.1f} s per million stock-days at the median), peak RSS {_spread(r['rss'], '.2f')} GiB")
            (tmp / f"syn_{n}x{d}.parquet").unlink()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        main()
