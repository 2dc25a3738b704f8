"""`python -m atft_core.runs`: list, show, launch, stop, resume, delete, rename, tag, note runs; their
metrics, log and checkpoints; ensembles of finished runs; the job queue (`queue`: jobs with their
reasons, slots, the dispatcher). Errors are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from atft_core.config import ConfigError, RunConfig, load_config_file, merge_overrides, parse_overrides
from atft_core.paths import UnsafePathError
from atft_core.runs import launch, queue
from atft_core.runs.jobs import Job, dispatcher_info, ended_jobs, list_jobs
from atft_core.runs.seeds import launch_seeds
from atft_core.runs.store import (DEFAULT_RUNS_DIR, RunError, RunSummary, list_checkpoints, list_runs, log_tail,
                                  process_alive, query_metrics, run_state)
from atft_core.system import GiB

ENDED_JOBS_SHOWN = 10
"""`queue` lists the live jobs and this many of the most recently submitted ended ones (--all: every one)."""


def launch_from_cli(runs_dir: Path | str, config_file: str | None, args: list[str], name: str = "",
                    tags: Iterable[str] = (), force: bool = False,
                    data_roots: Sequence[str] | None = None, seeds: int = 1) -> str:
    """`launch` as the CLI gives it: a JSON file plus ``--section.field=value`` overrides; with
    `seeds` > 1 a seed group (`launch_seeds`), whose run ids are returned one per line."""
    overrides, rest = parse_overrides(args)
    if rest:
        raise ConfigError(f"unrecognised launch arguments: {' '.join(rest)} (overrides look like --model.hidden_size=128)")
    requested = merge_overrides(load_config_file(config_file) if config_file else {}, overrides)
    cfg = RunConfig.from_dict(requested)
    if seeds < 1:
        raise launch.LaunchError(f"--seeds must be >= 1, got {seeds}")
    if seeds > 1:
        return "\n".join(launch_seeds(cfg, runs_dir, seeds, name=name, tags=tags, force=force, requested=requested,
                                      data_roots=data_roots))
    return queue.launch_run(cfg, runs_dir, name=name, tags=tags, force=force, requested=requested, data_roots=data_roots)


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_table(runs: list[RunSummary]) -> str:
    """A plain-text table of runs, one row each."""
    head = ["id", "name", "tags", "status", "dataset", "hidden", "mode", "epochs", "phase",
            "best rank_ic@ep", "started", "duration"]
    rows = [head]
    for r in runs:
        best = f"{r.best_rank_ic:.4f}@{r.best_epoch}" if r.best_rank_ic is not None else "-"
        detail = r.reason or (r.phase_name if r.status == "queued" else "")
        status = r.status + (f" ({detail[:40]})" if detail else "")
        rows.append([r.id, r.name[:20], ",".join(r.tags)[:20], status, Path(r.dataset).name,
                     str(r.hidden_size or "-"), r.mode or "-", f"{r.epoch if r.epoch is not None else '-'}/"
                     f"{r.epochs_planned if r.epochs_planned is not None else '-'}", str(r.phase if r.phase is not None else "-"),
                     best, _fmt_time(r.started), _fmt_duration(r.duration)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def format_jobs(jobs: list[Job]) -> str:
    """A plain-text table of queue jobs, one row each."""
    head = ["job", "kind", "run", "state", "slot", "memory", "reason"]
    rows = [head] + [[j.id, j.kind, j.run_id or "-", j.state, j.slot or "-",
                      f"{j.need_ram / GiB:.1f} GiB" if j.need_ram else "-", j.reason or "-"] for j in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _queue_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("queue", help="the job queue: jobs with their state and reason (more: queue --help)")
    q.add_argument("--json", action="store_true", help="print the jobs as a JSON array")
    q.add_argument("--all", action="store_true", help=f"every ended job too (default: the last {ENDED_JOBS_SHOWN})")
    qs = q.add_subparsers(dest="queue_command")
    s = qs.add_parser("slots", help="show this machine's slots, or set them")
    s.add_argument("--cpu", type=int, help="N CPU slots")
    s.add_argument("--threads", type=int, help="torch threads of each slot's job (0 = share the cores)")
    s.add_argument("--gpus", help="GPU indices, one slot each, e.g. 0,1 (empty: CPU slots)")
    s.add_argument("--per-gpu", type=int, help="jobs at once on each GPU")
    qs.add_parser("start", help="start this machine's dispatcher unless one runs")
    qs.add_parser("serve", help="run the dispatcher in the foreground (until the queue is idle)")
    qs.add_parser("cancel", help="cancel a queued job (a run's job stops the run)").add_argument("job_id")
    qs.add_parser("forget", help="remove the records of ended jobs")


def _queue_command(args: argparse.Namespace) -> None:
    rd = args.runs_dir
    command = args.queue_command
    if command == "slots":
        _slots_command(args)
    elif command == "start":
        started = queue.ensure_dispatcher(rd)
        print("dispatcher started" if started else f"dispatcher running (pid {dispatcher_info(rd, process_alive).pid})")
    elif command == "serve":
        queue.serve(rd)
    elif command == "cancel":
        queue.cancel_job(rd, args.job_id)
    elif command == "forget":
        print(f"forgot {queue.forget_ended(rd)} ended job(s)")
    else:
        ended = ended_jobs(rd, last=None if args.all else ENDED_JOBS_SHOWN)
        shown = [*(ended if args.all else ended[-ENDED_JOBS_SHOWN:]), *list_jobs(rd)]
        if args.json:
            print(json.dumps([j.to_dict() for j in shown], indent=2))
            return
        info = dispatcher_info(rd, process_alive)
        print(f"slots: {queue.read_slots(rd).describe(os.cpu_count() or 1)}; dispatcher: "
              + (f"running (pid {info.pid})" if info.alive else "not running (starts with the next job; or: queue start)"))
        print(format_jobs(shown))


def _slots_command(args: argparse.Namespace) -> None:
    current = queue.read_slots(args.runs_dir)
    changes = {k: v for k, v in (("cpu", args.cpu), ("threads", args.threads), ("per_gpu", args.per_gpu)) if v is not None}
    if args.gpus is not None:
        try:
            changes["gpus"] = tuple(int(g) for g in args.gpus.split(",") if g.strip())
        except ValueError:
            raise ConfigError(f"slots.gpus: comma-separated GPU indices, got {args.gpus!r}") from None
    if changes:
        current = queue.Slots.from_dict({**dataclasses.asdict(current), **changes})
        queue.set_slots(args.runs_dir, current)
    print(current.describe(os.cpu_count() or 1))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m atft_core.runs", description="Manage and inspect training runs.")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="folder holding the runs (default runs/)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="one row per run")
    s.add_argument("--json", action="store_true", help="print a JSON array of run objects")
    s = sub.add_parser("show", help="state of one run (JSON)")
    s.add_argument("run_id")
    s = sub.add_parser("launch", help="start a training run; prints its id (more: --section.field=value)")
    s.add_argument("--config", help="JSON config file (partial is fine)")
    s.add_argument("--name", default="")
    s.add_argument("--tag", action="append", default=[])
    s.add_argument("--force", action="store_true", help="launch despite pre-flight warnings (never failures)")
    s.add_argument("--seeds", type=int, default=1, help="N > 1: a seed group (N queued runs, then an ensemble run "
                   "of those that finished); prints the N run ids")
    s.add_argument("--data-root", action="append", default=[], help="allowed dataset folder (repeatable)")
    s = sub.add_parser("stop", help="SIGTERM the run's process group, SIGKILL after --grace seconds")
    s.add_argument("run_id")
    s.add_argument("--grace", type=float, default=None, help="seconds to wait before SIGKILL")
    for name, text in (("resume", "queue the run again, to continue from its last checkpoint"),
                       ("delete", "delete a run that is not queued or running")):
        sub.add_parser(name, help=text).add_argument("run_id")
    s = sub.add_parser("tag", help="add (or --remove) a tag")
    s.add_argument("run_id")
    s.add_argument("tag")
    s.add_argument("--remove", action="store_true")
    s = sub.add_parser("rename", help="set the run's display name (its id stays)")
    s.add_argument("run_id")
    s.add_argument("name")
    s = sub.add_parser("note", help="set the run's note")
    s.add_argument("run_id")
    s.add_argument("text")
    s = sub.add_parser("metrics", help="long metric table of runs")
    s.add_argument("run_ids", nargs="+")
    s.add_argument("--names", nargs="+", default=None)
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s = sub.add_parser("log", help="tail of train.log")
    s.add_argument("run_id")
    s.add_argument("--lines", type=int, default=50)
    sub.add_parser("checkpoints", help="checkpoint files").add_argument("run_id")
    s = sub.add_parser("ensemble", help="combine finished runs into a new ensemble run; prints its id")
    s.add_argument("run_ids", nargs="+", help="two or more finished runs with the same dataset, horizons and splits")
    s.add_argument("--name", default="")
    s.add_argument("--tag", action="append", default=[])
    _queue_parser(sub)
    return p


def _run_command(args: argparse.Namespace, extra: list[str]) -> int:  # noqa: C901 - a flat dispatch
    rd = args.runs_dir
    if args.command == "list":
        runs = list_runs(rd)
        print(json.dumps([r.to_dict() for r in runs], indent=2) if args.json else format_table(runs))
    elif args.command == "show":
        print(json.dumps(run_state(rd, args.run_id).to_dict(), indent=2))
    elif args.command == "launch":
        print(launch_from_cli(rd, args.config, extra, name=args.name, tags=args.tag,
                              force=args.force, data_roots=args.data_root or None, seeds=args.seeds))
    elif args.command == "stop":
        kwargs = {} if args.grace is None else {"grace_seconds": args.grace}
        print(launch.stop_run(rd, args.run_id, **kwargs))
    elif args.command == "resume":
        queue.resume_run(rd, args.run_id)
        print(f"queued {args.run_id} to resume")
    elif args.command == "delete":
        launch.delete_run(rd, args.run_id)
        print(f"deleted {args.run_id}")
    elif args.command == "tag":
        print(",".join(launch.tag_run(rd, args.run_id, args.tag, remove=args.remove)))
    elif args.command == "rename":
        print(launch.rename_run(rd, args.run_id, args.name))
    elif args.command == "note":
        launch.note_run(rd, args.run_id, args.text)
    elif args.command == "metrics":
        frame = query_metrics(rd, args.run_ids, args.names)
        sys.stdout.write(frame.write_csv() if args.format == "csv" else frame.write_json() + "\n")
    elif args.command == "log":
        print(log_tail(rd, args.run_id, args.lines))
    elif args.command == "checkpoints":
        print(json.dumps([c.to_dict() for c in list_checkpoints(rd, args.run_id)], indent=2))
    elif args.command == "ensemble":
        from atft_core.runs.ensemble import build_ensemble  # loads torch (seconds): only for this command

        print(build_ensemble(rd, args.run_ids, name=args.name, tags=args.tag))
    elif args.command == "queue":
        _queue_command(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; errors are printed as one line and give exit status 2."""
    args, extra = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra and args.command != "launch":
        print(f"error: unrecognised arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    try:
        return _run_command(args, extra)
    except (RunError, UnsafePathError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
