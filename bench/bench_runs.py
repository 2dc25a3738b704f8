"""How fast `list` and a 5-run `metrics` query are over many runs, and how they scale.

    python bench/bench_runs.py [--runs 100,250,500] [--epochs 100] [--metrics 25] [--repeat 5]

Builds finished runs (epochs x metrics rows each, real run-folder files) plus 3 live runs (a
real sleeping process each) in a temporary folder, then times at each run count:
`list` over JSONL only (nothing compacted), the first `list` (which compacts finished runs to
parquet), `list` afterwards, and `query_metrics` for 5 runs; min / median / max of --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import runs  # noqa: E402
from atft_core.runs.store import process_start_time  # noqa: E402
from atft_core.run_files import RunFiles, update_status, write_json_atomic  # noqa: E402


def make_run(root: Path, run_id: str, epochs: int, n_metrics: int, state: str, pid: int | None = None) -> None:
    files = RunFiles(root / run_id)
    files.checkpoints.mkdir(parents=True)
    now = time.time()
    start = process_start_time(pid) if pid else None
    write_json_atomic(files.run_info, {"id": run_id, "name": run_id, "tags": ["bench"], "created": now,
                                       "pid": pid, "proc_start_time": start, "host": socket.gethostname()})
    write_json_atomic(files.config, {"config": {"data": {"path": "data/demo.parquet"}, "model": {"hidden_size": 64},
                                                "loss": {"rankic_weight": 0.2}, "train": {"mode": "safe"}}})
    names = ["val/rank_ic"] + [f"metric/{i:02d}" for i in range(n_metrics - 1)]
    lines = []
    for e in range(epochs):
        for i, name in enumerate(names):
            lines.append(json.dumps({"epoch": e, "step": e * 100, "phase": min(e // 25, 3), "wall_time": now + e,
                                     "name": name, "value": ((hash(run_id) + e * 31 + i) % 1000) / 1000}))
    files.metrics.write_text("\n".join(lines) + "\n")
    update_status(files, state=state, pid=pid, started=now, epoch=epochs, epochs_planned=epochs,
                  **({} if state == "running" else {"ended": now + 60}))


def timed(fn, repeat: int) -> tuple[float, float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), max(times)


def fmt(t: tuple[float, float, float]) -> str:
    return " / ".join(f"{x * 1000:7.1f}" for x in t) + " ms"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = psutil.virtual_memory().total / 1024**3
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}, {platform.system()} {platform.release()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="100,250,500")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--metrics", type=int, default=25)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    counts = [int(c) for c in args.runs.split(",")]
    print(f"machine: {machine()}")
    print(f"runs x {args.epochs} epochs x {args.metrics} metrics (+3 live runs); min / median / max of {args.repeat}")
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(3)]
    root = Path(tempfile.mkdtemp(prefix="bench_runs_"))
    try:
        for i, proc in enumerate(sleepers):
            make_run(root, f"live-{i}", args.epochs // 2, args.metrics, "running", pid=proc.pid)
        made = 0
        for count in counts:
            t = time.perf_counter()
            while made < count:
                make_run(root, f"run-{made:05d}", args.epochs, args.metrics, "completed")
                made += 1
            size = sum(f.stat().st_size for f in root.glob("*/metrics.jsonl")) / 1024**2
            print(f"\n{count} finished runs ({size:.0f} MiB of JSONL, generated in {time.perf_counter() - t:.1f} s)")
            for pq in root.glob("*/metrics-*.parquet"):
                pq.unlink()
            listed = runs.list_runs(root, compact=False)
            assert len(listed) == count + 3 and sum(r.status == "running" for r in listed) == 3, "wrong states"
            print(f"  list, JSONL only        {fmt(timed(lambda: runs.list_runs(root, compact=False), args.repeat))}")
            t = time.perf_counter()
            runs.list_runs(root)
            print(f"  first list (compacts)   {(time.perf_counter() - t) * 1000:7.1f} ms")
            print(f"  list, compacted         {fmt(timed(lambda: runs.list_runs(root), args.repeat))}")
            ids = ["live-0", "run-00000", "run-00001", "run-00002", f"run-{count - 1:05d}"]
            frame = runs.query_metrics(root, ids)
            assert frame.height == args.epochs * args.metrics * 4 + (args.epochs // 2) * args.metrics
            print(f"  metrics, 5 runs         {fmt(timed(lambda: runs.query_metrics(root, ids), args.repeat))}"
                  f"  ({frame.height} rows)")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(root), "list", "--json"],
                       cwd=Path(__file__).resolve().parents[1], check=True, capture_output=True)
        print(f"\nCLI `list --json` in a fresh process ({made + 3} runs, incl. start-up): "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
