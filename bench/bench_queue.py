"""Queue overhead per job: submitting, dispatching and bookkeeping, measured on trivial jobs.

    python bench/bench_queue.py [--jobs 12] [--slots 2] [--warm 3] [--waiting 200] [--repeat 5]

In a temporary folder with a small demo dataset:

1. --jobs ridge-baseline runs (a trainer whose work takes well under a second once Python and
   torch are loaded) are queued on --slots CPU slots and served by the real dispatcher process.
   Per job: the submit call (`queue.launch_run`: pre-flight, memory estimate, run folder, job
   file); submit -> trainer started, for the jobs that found a slot free; a trainer's final
   status -> the next trainer started on its slot (process exit, noticing it, starting the
   next); a run's final status -> its job closed; the whole batch's wall time against the
   trainers' own time divided by the slots; then --warm single jobs, one at a time, submitted to
   the running dispatcher.
2. In-process, with the machine reporting no free memory (so nothing starts): one dispatcher
   look at a queue of --waiting jobs, and `list_runs` over their queued runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from machine import cpu_model  # noqa: E402
from atft_core import runs  # noqa: E402
from atft_core.config import RunConfig  # noqa: E402
from atft_core.data.demo import make_demo  # noqa: E402
from atft_core.run_files import RunFiles, read_json, write_json_atomic  # noqa: E402
from atft_core.runs import queue  # noqa: E402
from atft_core.runs.jobs import ended_jobs, queue_paths  # noqa: E402
from atft_core.runs.launch import check_preflight  # noqa: E402
from atft_core.runs.store import process_start_time  # noqa: E402
from atft_core.system import GiB, Probes, memory_need  # noqa: E402


def spread(values: list[float], unit: float = 1000.0) -> str:
    """min / median / max in ms (values in seconds)."""
    if not values:
        return "-"
    return " / ".join(f"{v * unit:.0f}" for v in (min(values), statistics.median(values), max(values))) + " ms"


def trivial(dataset: Path) -> RunConfig:
    return RunConfig.from_dict({"data": {"path": str(dataset), "lookback": 8}, "model": {"kind": "ridge"},
                                "runtime": {"heartbeat_seconds": 1.0}})


def closed_jobs(runs_dir: Path, run_ids: list[str]) -> dict:
    """Run id -> its ended job, once the dispatcher has closed every one (a moment after the runs end)."""
    while True:
        jobs = {j.run_id: j for j in ended_jobs(runs_dir) if j.run_id in run_ids}
        if len(jobs) == len(run_ids):
            return jobs
        time.sleep(0.05)


def batch(root: Path, dataset: Path, n_jobs: int, n_slots: int, n_warm: int) -> None:
    runs_dir = root / "batch"
    queue.set_slots(runs_dir, queue.Slots(cpu=n_slots, threads=1))
    cfg = trivial(dataset)
    t = time.perf_counter()
    check_preflight(cfg, runs_dir, force=True)
    preflight_s = time.perf_counter() - t
    t = time.perf_counter()
    memory_need(cfg, runs_dir)
    need_s = time.perf_counter() - t
    submit, ids, start = [], [], time.time()
    for i in range(n_jobs):
        t = time.perf_counter()
        ids.append(queue.launch_run(cfg, runs_dir, name=f"job {i}", force=True))
        submit.append(time.perf_counter() - t)
    summaries = queue.wait_for_runs(runs_dir, ids, poll_seconds=0.2)
    wall = time.time() - start
    assert all(s.status == "completed" for s in summaries), [(s.id, s.status, s.reason) for s in summaries]
    jobs = closed_jobs(runs_dir, ids)
    launched = {i: read_json(RunFiles(runs_dir / i).run_info)["launches"][-1]["launched"] for i in ids}
    ended = {i: read_json(RunFiles(runs_dir / i).status)["ended"] for i in ids}
    order = sorted(ids, key=launched.get)
    first = [launched[i] - jobs[i].created for i in order[:n_slots]]
    handover = [launched[i] - max(e for e in ended.values() if e < launched[i]) for i in order[n_slots:]]
    closing = [jobs[i].ended - ended[i] for i in ids]
    trainer = [ended[i] - launched[i] for i in ids]
    print(f"{n_jobs} ridge runs on {n_slots} CPU slots (real dispatcher process)")
    print(f"  submit (launch_run)                   {spread(submit)}   "
          f"(of which pre-flight {preflight_s * 1000:.0f} ms, memory estimate {need_s * 1000:.0f} ms)")
    print(f"  submit -> trainer started (free slot) {spread(first)}   (includes starting the dispatcher for the first)")
    print(f"  final status -> next trainer started  {spread(handover)}")
    print(f"  final status -> job closed            {spread(closing)}")
    print(f"  trainer, start to final status        {spread(trainer, 1.0).replace('ms', 's')}")
    ideal = sum(trainer) / n_slots
    print(f"  batch wall {wall:.1f} s vs trainers' time / slots {ideal:.1f} s: "
          f"{(wall - ideal) / n_jobs * 1000:.0f} ms of queue per job")
    warm = []
    for i in range(n_warm):   # one at a time, while the batch's dispatcher is still up
        run_id = queue.launch_run(cfg, runs_dir, name=f"warm {i}", force=True)
        queue.wait_for_runs(runs_dir, [run_id], poll_seconds=0.2)
        job = closed_jobs(runs_dir, [run_id])[run_id]
        warm.append(read_json(RunFiles(runs_dir / run_id).run_info)["launches"][-1]["launched"] - job.created)
    print(f"  submit -> trainer started, dispatcher already running {spread(warm)}")


def waiting(root: Path, dataset: Path, n_waiting: int, repeat: int) -> None:
    runs_dir = root / "waiting"
    paths = queue_paths(runs_dir)
    paths.root.mkdir(parents=True)
    # This process serves the queue itself (no dispatcher process), with no memory to give.
    write_json_atomic(paths.dispatcher, {"pid": os.getpid(), "proc_start_time": process_start_time(os.getpid())})
    queue.set_slots(runs_dir, queue.Slots(cpu=2, threads=1))
    for i in range(n_waiting):
        queue.launch_run(trivial(dataset), runs_dir, name=f"w{i}", force=True, preflight_runs=0)
    dispatcher = queue.Dispatcher(runs_dir, Probes(ram=lambda: (64 * GiB, 0)))
    t = time.perf_counter()
    dispatcher.step()
    first = time.perf_counter() - t
    steps, listing = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        dispatcher.step()
        steps.append(time.perf_counter() - t)
        t = time.perf_counter()
        listed = runs.list_runs(runs_dir, compact=False)
        listing.append(time.perf_counter() - t)
    assert len(listed) == n_waiting and all(r.status == "queued" and r.phase_name for r in listed)
    print(f"{n_waiting} queued jobs waiting for memory (in-process, {repeat} repeats)")
    print(f"  first dispatcher look (writes every reason) {first * 1000:.0f} ms")
    print(f"  dispatcher look, nothing changed            {spread(steps)}   "
          f"({statistics.median(steps) / n_waiting * 1e6:.0f} us per job)")
    print(f"  list_runs of the {n_waiting} queued runs          {spread(listing)}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--warm", type=int, default=3, help="single jobs submitted to a running dispatcher afterwards")
    ap.add_argument("--waiting", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = root / "demo.parquet"
        make_demo(dataset, n_stocks=40, n_days=260, seed=7)
        batch(root, dataset, args.jobs, args.slots, args.warm)
        waiting(root, dataset, args.waiting, args.repeat)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
