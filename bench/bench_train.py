"""Training throughput of the real trainer (stock-days per second), safe vs optimized mode.

    python bench/bench_train.py --quick                       # demo only, hidden 64
    python bench/bench_train.py                               # demo + real data, hidden 64 and 256
    python bench/bench_train.py --skip-demo --modes optimized --hidden 64 \
        --dataset /tmp/real.parquet --data-start 2019-01-01 --data-end 2020-12-31
    python bench/bench_train.py --quick --precision bf16
    python bench/bench_train.py --quick --repeat 3          # min / median / max of 3 runs each
    python bench/bench_train.py --quick --repeat 3 --compare-with /tmp/before   # interleaved A/B

Each setting is one `python -m atft_core.train ... --run-dir TMP` subprocess (with the
launcher's allocator variables MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_) that trains one
epoch of phase 0 (no FAN, no GAT) and one epoch of phase 2 (GAT on): `--train.phase_epochs=1,0,1,0`.
The figures are the trainer's own `samples_per_second` and `epoch_seconds` metrics from the
run's metrics.jsonl (the training loop only: no data loading, validation or final evaluation).
Datasets: (a) the default demo (`python -m atft_core.data demo`, 300 stocks x 750 days) built in
a temp folder; (b) the real data in ../shared/data built with `build_dataset` into a temp folder
(or `--dataset PATH` to reuse one). For real data the table also projects one full epoch over
`--projection-days` training days (the issue's 943 stocks x ~1650 days) from the measured rate
and the measured stock-days per day. Load averages are printed next to each figure because the
machine may be shared. `--compare-with DIR` runs the trainer of another checkout (e.g. the
code before a change: `git archive <commit> | tar -x -C DIR`) on the same datasets, alternating
run by run with this one, and prints each setting's median ratio this / other (on a shared,
noisy machine only interleaved runs compare fairly).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py (bench scripts run as python bench/X.py)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
"""The allocator settings atft_core.runs.launch gives the trainer (they only act at process start)."""
PHASES = {0: "phase 0 (no GAT)", 2: "phase 2 (GAT)"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="demo only, hidden 64 only")
    ap.add_argument("--modes", nargs="+", default=["safe", "optimized"], choices=["safe", "optimized"])
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="runtime.precision of every run (bf16 = CPU bf16 autocast)")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--dataset", default="", help="reuse this built real-data parquet instead of building one")
    ap.add_argument("--data-start", default="", help="data.start of the real-data runs (restricts the work)")
    ap.add_argument("--data-end", default="", help="data.end of the real-data runs")
    ap.add_argument("--demo-stocks", type=int, default=300)
    ap.add_argument("--demo-days", type=int, default=750)
    ap.add_argument("--projection-days", type=int, default=1650,
                    help="training days of a full real-data epoch, for the projected epoch time")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per training subprocess")
    ap.add_argument("--extra", nargs="*", default=[], help="more --section.name=value overrides for every run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per setting; with more than one, min / median / max are printed too")
    ap.add_argument("--compare-with", default="", metavar="DIR",
                    help="another checkout whose trainer runs interleaved with this one (A/B ratio)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.quick:
        args.skip_real, args.hidden = True, [64]
    return args


def machine_line() -> str:
    import torch
    cpu = cpu_model()
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"machine: {cpu}, {os.cpu_count()} cpus{mem}, {gpu}; torch {torch.__version__} "
            f"(default threads {torch.get_num_threads()}); python {platform.python_version()}; "
            f"threads per run: safe 1, optimized {os.cpu_count()}")


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def build_demo(tmp: Path, args: argparse.Namespace) -> Path:
    out = tmp / "demo.parquet"
    cmd = [sys.executable, "-m", "atft_core.data", "demo", "--out", str(out),
           "--stocks", str(args.demo_stocks), "--days", str(args.demo_days)]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return out


def build_real(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    from atft_core.data.build import build_dataset
    out = tmp / "real.parquet"
    started = time.perf_counter()
    build_dataset(SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet", SHARED_DATA / "jquants_listed_info.csv",
                  out, index=SHARED_DATA / "jquants_topix_2004_2024.parquet")
    print(f"built real dataset in {time.perf_counter() - started:.1f} s -> {out}", flush=True)
    return out


def train_once(dataset: Path, mode: str, hidden: int, args: argparse.Namespace, tmp: Path,
               date_range: tuple[str, str], root: Path = REPO_ROOT) -> dict:
    """One trainer subprocess (of the checkout `root`); returns its per-phase throughput, train
    days and load averages."""
    run_dir = tmp / f"run-{mode}-{hidden}-{int(time.time() * 1000)}"
    cmd = [sys.executable, "-m", "atft_core.train", f"--data.path={dataset}", f"--train.mode={mode}",
           f"--model.hidden_size={hidden}", "--train.phase_epochs=1,0,1,0",
           "--train.early_stopping_patience=0", f"--runtime.precision={args.precision}", *args.extra]
    if date_range[0]:
        cmd.append(f"--data.start={date_range[0]}")
    if date_range[1]:
        cmd.append(f"--data.end={date_range[1]}")
    cmd += ["--run-dir", str(run_dir)]
    load_before = load()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env={**os.environ, **MALLOC_ENV}, capture_output=True,
                          text=True, timeout=args.timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed ({mode}, hidden {hidden}), exit {proc.returncode}:\n{proc.stderr[-2000:]}")
    return {"phases": read_phase_metrics(run_dir / "metrics.jsonl"), "train_days": read_train_days(run_dir),
            "wall": wall, "load_before": load_before, "load_after": load()}


def read_phase_metrics(path: Path) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["name"] in ("samples_per_second", "epoch_seconds") and row["value"] is not None:
            found.setdefault(int(row["phase"]), {})[row["name"]] = float(row["value"])
    return found


def read_train_days(run_dir: Path) -> int | None:
    """`train_days` from the run's config.json facts, wherever it is nested."""
    def find(node):
        if isinstance(node, dict):
            if isinstance(node.get("train_days"), int):
                return node["train_days"]
            for value in node.values():
                hit = find(value)
                if hit is not None:
                    return hit
        return None
    try:
        return find(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError):
        return None


def projected_minutes(m: dict[str, float], days: int | None, args: argparse.Namespace) -> float | None:
    """A full real-data epoch of --projection-days days at this run's rate and stocks per day."""
    if not days:
        return None
    per_day = m["samples_per_second"] * m["epoch_seconds"] / days
    return args.projection_days * per_day / m["samples_per_second"] / 60


def report(label: str, mode: str, hidden: int, result: dict, args: argparse.Namespace, real: bool) -> None:
    for phase, name in PHASES.items():
        m = result["phases"].get(phase)
        if not m:
            continue
        rate, secs = m["samples_per_second"], m["epoch_seconds"]
        extra = ""
        days = result["train_days"]
        projected = projected_minutes(m, days, args) if real else None
        if projected is not None:
            per_day = rate * secs / days
            extra = f" | {per_day:6.0f} stocks/day, full epoch ({args.projection_days} days) ~{projected:5.1f} min"
        print(f"{label:<6} {mode:<9} h{hidden:<4} {args.precision:<5} {name:<17} {rate:8.0f} stock-days/s "
              f"{secs:7.1f} s over {days} days | load {result['load_before']:.1f}->{result['load_after']:.1f}"
              f" | run wall {result['wall']:.0f} s{extra}", flush=True)


def bench(label: str, dataset: Path, args: argparse.Namespace, tmp: Path, date_range: tuple[str, str]) -> None:
    real = label == "real"
    other = Path(args.compare_with).resolve() if args.compare_with else None
    for hidden in args.hidden:
        rates: dict[str, dict[int, float]] = {}
        for mode in args.modes:
            results, others = [], []
            for _ in range(args.repeat):
                results.append(train_once(dataset, mode, hidden, args, tmp, date_range))
                report(label, mode, hidden, results[-1], args, real)
                if other is not None:
                    others.append(train_once(dataset, mode, hidden, args, tmp, date_range, root=other))
                    report("other", mode, hidden, others[-1], args, real)
            rates[mode] = summarize(label, mode, hidden, results, args, real)
            if other is not None:
                compare(label, mode, hidden, rates[mode], summarize("other", mode, hidden, others, args, real))
        if {"safe", "optimized"} <= rates.keys():
            for phase, name in PHASES.items():
                if phase in rates["safe"] and phase in rates["optimized"]:
                    ratio = rates["optimized"][phase] / rates["safe"][phase]
                    print(f"{label:<6} optimized/safe h{hidden} {name}: {ratio:.2f}x (medians)", flush=True)


def compare(label: str, mode: str, hidden: int, ours: dict[int, float], theirs: dict[int, float]) -> None:
    """Median throughput of this checkout over the other's, per phase."""
    for phase, name in PHASES.items():
        if phase in ours and phase in theirs:
            print(f"{label:<6} {mode:<9} h{hidden:<4} {name:<17} this / other: {ours[phase] / theirs[phase]:.2f}x "
                  "(medians of interleaved runs)", flush=True)


def summarize(label: str, mode: str, hidden: int, results: list[dict], args: argparse.Namespace,
              real: bool) -> dict[int, float]:
    """Print min / median / max per phase over the repeats; returns the median rate per phase."""
    medians = {}
    for phase, name in PHASES.items():
        runs = [r for r in results if phase in r["phases"]]
        if not runs:
            continue
        rates = [r["phases"][phase]["samples_per_second"] for r in runs]
        medians[phase] = statistics.median(rates)
        if len(runs) < 2:
            continue
        line = f"{label:<6} {mode:<9} h{hidden:<4} {args.precision:<5} {name:<17} n={len(runs)} stock-days/s " \
               f"min/median/max {min(rates):.0f} / {medians[phase]:.0f} / {max(rates):.0f}"
        minutes = [projected_minutes(r["phases"][phase], r["train_days"], args) for r in runs] if real else []
        if minutes and None not in minutes:
            line += f" | full epoch {min(minutes):.2f} / {statistics.median(minutes):.2f} / {max(minutes):.2f} min"
        print(line, flush=True)
    return medians


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as name:
        tmp = Path(name)
        if not args.skip_demo:
            demo = build_demo(tmp, args)
            print(f"demo dataset: {args.demo_stocks} stocks x {args.demo_days} days", flush=True)
            bench("demo", demo, args, tmp, ("", ""))
        if args.skip_real:
            return
        if args.dataset:
            real = Path(args.dataset)
        elif SHARED_DATA.is_dir():
            real = build_real(tmp)
        else:
            print(f"real data: skipped ({SHARED_DATA} is absent and no --dataset given)")
            return
        print(f"real dataset: {real}, data.start={args.data_start or 'first'} data.end={args.data_end or 'last'}", flush=True)
        bench("real", real, args, tmp, (args.data_start, args.data_end))


if __name__ == "__main__":
    main(sys.argv[1:])
