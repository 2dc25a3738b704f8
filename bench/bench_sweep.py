"""Sweeps: a demo sweep on two CPU slots against the same trials one after another, and how long
the Sweep page takes to draw a study of many finished trials.

    python bench/bench_sweep.py [--trials 24] [--page-trials 200] [--skip-sweep] [--skip-page]

In a temporary folder with the demo dataset (60 stocks x 260 days):

1. A study of --trials tiny trials (hidden 8, lookback 5, two epochs, horizons 1 and 5, optimized
   mode; train.lr and model.hidden_size searched; no pruner, so every trial trains in full) run by
   one worker with 2 trials at once on 2 CPU slots of 1 thread (`sweep run --slots 2 --threads 1`),
   from `create` to the worker's exit. Then the very same trial configs (read back from the run
   folders) queued on 1 CPU slot of 2 threads, so they train one after another with the whole
   machine each, from the first submission to the last run's end. Printed: both wall times and
   their ratio, and the trainers' own time (sum of active_seconds).
2. A study of --page-trials finished trials (told by hand, two fields) and the Sweep page drawn by
   AppTest: the first draw (importances computed) and the median of five draws after it
   (importances cached), with the page's own work only (AppTest's script run, not a browser).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from machine import cpu_model  # noqa: E402
from atft_core import runs  # noqa: E402
from atft_core.config import RunConfig  # noqa: E402
from atft_core.data.demo import make_demo  # noqa: E402
from atft_core.run_files import RunFiles, read_json  # noqa: E402
from atft_core.runs import queue  # noqa: E402
from atft_core.sweep.storage import default_url  # noqa: E402
from atft_core.sweep.trials import read_study  # noqa: E402


def tiny_args(dataset: Path) -> list[str]:
    return [f"--data.path={dataset}", "--data.lookback=5", "--data.horizons=1,5", "--model.fan_top_k=2",
            "--train.phase_epochs=1,1,0,0", "--train.mode=optimized", "--train.early_stopping_patience=0"]


def sweep_cli(runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atft_core.sweep", "--runs-dir", str(runs_dir), *args], cwd=REPO,
                          capture_output=True, text=True, check=True)


def active_seconds(runs_dir: Path, run_ids: list[str]) -> float:
    return sum(float((read_json(RunFiles(runs_dir / r).status) or {}).get("active_seconds") or 0.0) for r in run_ids)


def bench_sweep(root: Path, dataset: Path, trials: int) -> None:
    parallel_dir, serial_dir = root / "parallel", root / "serial"
    start = time.perf_counter()
    sweep_cli(parallel_dir, "create", "bench", *tiny_args(dataset), "--param", "train.lr=1e-4..1e-2:log",
              "--param", "model.hidden_size=8|16", "--trials", str(trials), "--parallel", "2", "--pruner", "none")
    sweep_cli(parallel_dir, "run", "bench", "--slots", "2", "--threads", "1")
    parallel_s = time.perf_counter() - start
    view = read_study("bench", default_url(parallel_dir))
    assert view.finished and view.counts["complete"] == trials, view.counts
    run_ids = [t.run_id for t in view.trials]

    queue.set_slots(serial_dir, queue.Slots(cpu=1, threads=2))
    configs = [read_json(RunFiles(parallel_dir / r).run_info)["requested"] for r in run_ids]
    start = time.perf_counter()
    serial_ids = [queue.launch_run(RunConfig.from_dict(c), serial_dir, name=f"serial {i}", force=True)
                  for i, c in enumerate(configs)]
    states = queue.wait_for_runs(serial_dir, serial_ids)
    serial_s = time.perf_counter() - start
    assert all(s.status in ("completed", "early_stopped") for s in states)
    print(f"{trials}-trial demo sweep, 2 CPU slots x 1 thread, 2 trials at once: {parallel_s:.0f} s "
          f"(trainers' own time {active_seconds(parallel_dir, run_ids):.0f} s)")
    print(f"the same {trials} trials one after another, 1 CPU slot x 2 threads: {serial_s:.0f} s "
          f"(trainers' own time {active_seconds(serial_dir, serial_ids):.0f} s)")
    print(f"wall-time ratio one-after-another / sweep: {serial_s / parallel_s:.2f}x")


def finished_study(runs_dir: Path, dataset: Path, n: int) -> None:
    import optuna

    from atft_core.sweep.space import parse_param
    from atft_core.sweep.spec import StudySpec
    from atft_core.sweep.study import create_study

    url = default_url(runs_dir)
    create_study(StudySpec(name="page", base={"data": {"path": str(dataset)}}, n_trials=n,
                           space=(parse_param("train.lr=1e-4..1e-2:log"), parse_param("model.hidden_size=16|32|64"))),
                 url, runs_dir, probes=None)
    study = optuna.load_study(study_name="page", storage=url)
    for i in range(n):
        trial = study.ask()
        lr = trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
        hidden = trial.suggest_categorical("model.hidden_size", [16, 32, 64])
        trial.set_user_attr("run_id", f"run-{i}")
        study.tell(trial, 0.02 + 5 * lr - hidden / 10_000)


def bench_page(root: Path, dataset: Path, trials: int) -> None:
    from streamlit.testing.v1 import AppTest

    data, runs_dir = root / "page-data", root / "page-runs"
    data.mkdir()
    (data / "demo.parquet").symlink_to(dataset)
    finished_study(runs_dir, dataset, trials)
    os.environ.update(ATFT_DATA_DIR=str(data), ATFT_RUNS_DIR=str(runs_dir))
    os.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/sweep.py")
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == trials and len(at.get("vega_lite_chart")) == 3
    again = []
    for _ in range(5):
        start = time.perf_counter()
        at.run()
        again.append(time.perf_counter() - start)
    print(f"Sweep page with {trials} finished trials (AppTest script run): first draw {first:.2f} s "
          f"(importances computed), then median {statistics.median(again):.2f} s "
          f"(min {min(again):.2f}, max {max(again):.2f}) over 5 draws")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--page-trials", type=int, default=200)
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-page", action="store_true")
    args = p.parse_args()
    print(f"machine: {cpu_model()}, {psutil.cpu_count()} logical CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = Path(tmp)
        dataset = root / "demo.parquet"
        make_demo(dataset, n_stocks=60, n_days=260, seed=7)
        if not args.skip_page:
            bench_page(root, dataset, args.page_trials)
        if not args.skip_sweep:
            bench_sweep(root, dataset, args.trials)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
