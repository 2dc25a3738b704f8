"""`python -m atft_core.runs`: list, show, launch, stop, resume, delete, rename, tag, note runs; their
metrics, log and checkpoints; ensembles of finished runs. Errors are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from atft_core.config import ConfigError, RunConfig, load_config_file, merge_overrides, parse_overrides
from atft_core.paths import UnsafePathError
from atft_core.runs import launch
from atft_core.runs.ensemble import build_ensemble
from atft_core.runs.seeds import launch_seeds
from atft_core.runs.store import (DEFAULT_RUNS_DIR, RunError, RunSummary, list_checkpoints, list_runs, log_tail,
                                  query_metrics, run_state)


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
    return launch.launch_run(cfg, runs_dir, name=name, tags=tags, force=force, requested=requested, data_roots=data_roots)


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
        status = r.status + (f" ({r.reason[:40]})" if r.reason else "")
        rows.append([r.id, r.name[:20], ",".join(r.tags)[:20], status, Path(r.dataset).name,
                     str(r.hidden_size or "-"), r.mode or "-", f"{r.epoch if r.epoch is not None else '-'}/"
                     f"{r.epochs_planned if r.epochs_planned is not None else '-'}", str(r.phase if r.phase is not None else "-"),
                     best, _fmt_time(r.started), _fmt_duration(r.duration)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


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
    s.add_argument("--seeds", type=int, default=1, help="N > 1: a seed group, trained one after another, then "
                   "combined into an ensemble run; prints the N run ids")
    s.add_argument("--data-root", action="append", default=[], help="allowed dataset folder (repeatable)")
    s = sub.add_parser("stop", help="SIGTERM the run's process group, SIGKILL after --grace seconds")
    s.add_argument("run_id")
    s.add_argument("--grace", type=float, default=None, help="seconds to wait before SIGKILL")
    for name, text in (("resume", "relaunch the trainer with --resume"), ("delete", "delete a run that is not running")):
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
        launch.resume_run(rd, args.run_id)
        print(f"resumed {args.run_id}")
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
        print(build_ensemble(rd, args.run_ids, name=args.name, tags=args.tag))
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
