"""`python -m atft_core.sweep`: create, run, list, show, stop and confirm studies.

    python -m atft_core.sweep create hp --config base.json --train.phase_epochs=1,1,0,0 \\
        --param train.lr=1e-4..1e-2:log --param model.hidden_size=16|32|64 --trials 24 --parallel 2
    python -m atft_core.sweep run hp --slots 2 --threads 1         # a worker; several may run
    python -m atft_core.sweep show hp --json
    python -m atft_core.sweep confirm hp --top 3 --seeds 3

`--storage` defaults to a SQLite file in the runs folder (one machine); across machines give every
command the same ``postgresql://user@host:port/db`` (the password best in PGPASSWORD or ~/.pgpass;
the environment variable ATFT_SWEEP_STORAGE may hold the URL instead of the option). Errors are
one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from atft_core.config import ConfigError, load_config_file, merge_overrides, parse_overrides
from atft_core.paths import UnsafePathError
from atft_core.runs.store import DEFAULT_RUNS_DIR, RunError
from atft_core.sweep.confirm import BASELINE_KINDS
from atft_core.sweep.spec import DEFAULT_METRIC, DIRECTIONS, PRUNERS, SAMPLERS, StudySpec
from atft_core.sweep.space import Param, parse_param
from atft_core.sweep.storage import SweepError, default_url, redact, shown_url
from atft_core.sweep.study import STORAGE_ENV

SPEC_DEFAULTS = {f: StudySpec.__dataclass_fields__[f].default for f in StudySpec.__dataclass_fields__
                 if f not in ("name", "base", "space")}


def _storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None, help="sqlite:///file.db or postgresql://user@host:port/db (default: "
                   f"a SQLite file in the runs folder, or ${STORAGE_ENV})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m atft_core.sweep", description="Hyper-parameter studies (Optuna) whose "
                                "trials are ordinary runs, trained through the job queue.")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="folder holding the runs (default runs/)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("create", help="create a study (more: --section.field=value for the base config)")
    s.add_argument("name")
    s.add_argument("--config", help="base config, a JSON file (partial is fine)")
    s.add_argument("--param", action="append", default=[], metavar="FIELD=SPEC",
                   help="a searched field: FIELD=LOW..HIGH (options :log, :step=N) or FIELD=A|B|C (repeatable)")
    s.add_argument("--space", help='JSON file: a list of {"name", "low", "high", "log", "step"} or {"name", "choices"}')
    s.add_argument("--trials", type=int, default=SPEC_DEFAULTS["n_trials"], help="trials in all")
    s.add_argument("--parallel", type=int, default=SPEC_DEFAULTS["parallel"], help="trials one worker runs at once")
    s.add_argument("--metric", default=DEFAULT_METRIC, help="validation metric whose best epoch is a trial's value")
    s.add_argument("--direction", choices=DIRECTIONS, default=SPEC_DEFAULTS["direction"])
    s.add_argument("--pruner", choices=PRUNERS, default=SPEC_DEFAULTS["pruner"])
    s.add_argument("--pruner-startup", type=int, default=SPEC_DEFAULTS["pruner_startup_trials"],
                   help="finished trials before any pruning")
    s.add_argument("--pruner-warmup", type=int, default=SPEC_DEFAULTS["pruner_warmup_epochs"],
                   help="epochs before a trial can be pruned")
    s.add_argument("--pruner-percentile", type=float, default=SPEC_DEFAULTS["pruner_percentile"])
    s.add_argument("--sampler", choices=SAMPLERS, default=SPEC_DEFAULTS["sampler"])
    s.add_argument("--seed", type=int, default=SPEC_DEFAULTS["seed"], help="sampler seed (trial n uses seed + n)")
    s.add_argument("--heartbeat", type=int, default=SPEC_DEFAULTS["heartbeat_seconds"], help="seconds between heartbeats")
    s.add_argument("--grace", type=int, default=SPEC_DEFAULTS["grace_seconds"],
                   help="seconds without a heartbeat after which a trial's worker counts as dead")
    s.add_argument("--retries", type=int, default=SPEC_DEFAULTS["max_retries"],
                   help="times a dead worker's trial is run again")
    s.add_argument("--force", action="store_true", help="launch trials despite pre-flight warnings (never failures)")
    s.add_argument("--note", default="")
    s.add_argument("--start", action="store_true", help="also start a worker (detached) on this machine")
    _storage_option(s)
    s = sub.add_parser("run", help="a worker: runs the study's trials until none is left")
    s.add_argument("name")
    s.add_argument("--parallel", type=int, default=None, help="trials at once (default: the study's)")
    s.add_argument("--slots", type=int, default=None, help="set this machine's queue to N CPU slots first")
    s.add_argument("--threads", type=int, default=None, help="... with this many torch threads each")
    s.add_argument("--gpus", default=None, help="... or to one slot per GPU, e.g. 0,1")
    _storage_option(s)
    s = sub.add_parser("list", help="the studies in the storage")
    s.add_argument("--json", action="store_true")
    _storage_option(s)
    s = sub.add_parser("show", help="a study's trials: state, settings, value, run")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    _storage_option(s)
    s = sub.add_parser("stop", help="stop a study: its running trials are stopped and queued again; `run` resumes it")
    s.add_argument("name")
    s.add_argument("--reason", default="")
    _storage_option(s)
    s = sub.add_parser("confirm", help="re-run the best settings with several seeds; mean ± std and paired t against "
                       "the best baseline (validation; --test adds the test split)")
    s.add_argument("name")
    s.add_argument("--top", type=int, default=3, help="how many of the best settings")
    s.add_argument("--seeds", type=int, default=3, help="seeds per setting")
    s.add_argument("--baselines", default=",".join(BASELINE_KINDS), help="model.kind of the baselines, comma-separated")
    s.add_argument("--test", action="store_true", help="also report the test split (labelled TEST)")
    s.add_argument("--json", action="store_true")
    _storage_option(s)
    return p


def _storage(args: argparse.Namespace) -> str:
    return args.storage or os.environ.get(STORAGE_ENV) or default_url(args.runs_dir)


def spec_from_args(args: argparse.Namespace, extra: list[str]) -> StudySpec:
    """The study the `create` arguments describe (ConfigError naming what is wrong)."""
    overrides, rest = parse_overrides(extra)
    if rest:
        raise ConfigError(f"unrecognised arguments: {' '.join(rest)} (base settings look like --model.hidden_size=32)")
    base = merge_overrides(load_config_file(args.config) if args.config else {}, overrides)
    params = [parse_param(text) for text in args.param] + (_space_file(args.space) if args.space else [])
    return StudySpec(
        name=args.name, base=base, space=tuple(params), n_trials=args.trials, parallel=args.parallel, metric=args.metric,
        direction=args.direction, pruner=args.pruner, pruner_startup_trials=args.pruner_startup,
        pruner_warmup_epochs=args.pruner_warmup, pruner_percentile=args.pruner_percentile, sampler=args.sampler,
        seed=args.seed, heartbeat_seconds=args.heartbeat, grace_seconds=args.grace, max_retries=args.retries,
        force=args.force, note=args.note)


def _space_file(path: str) -> list[Param]:
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--space {path}: {exc}") from None
    values = values.get("params", values) if isinstance(values, dict) else values
    if not isinstance(values, list):
        raise ConfigError(f"--space {path}: expected a list of parameters")
    return [Param.from_dict(v) for v in values]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "-" if value is None else str(value)


def format_trials(view: Any) -> str:
    """`show` as text: the study's progress, then a row per trial."""
    spec, counts = view.spec, view.counts
    lines = [f"study {view.name} in {view.storage}: {view.slots_done} of {spec.n_trials} trials done "
             f"({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); objective: best epoch of {spec.metric} "
             f"({spec.direction})" + (f"; STOPPED: {view.stop_requested.get('reason')}" if view.stop_requested else "")]
    if view.best:
        lines.append(f"best: trial {view.best.number} = {view.best.value:.5f} (run {view.best.run_id})")
    names = [p.name for p in spec.space]
    rows = [["trial", "state", "value", *names, "run", "note"]]
    for t in view.trials:
        note = t.reason or (f"retry of {t.retry_of}" if t.retry_of is not None else "")
        rows.append([str(t.number), t.state, _fmt(t.value), *(_fmt(t.params.get(n)) for n in names), t.run_id or "-",
                     note[:60]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _run_worker(args: argparse.Namespace, url: str) -> int:
    from atft_core.runs import queue
    from atft_core.sweep.study import clear_stop
    from atft_core.sweep.trials import STOP_ATTR, load
    from atft_core.sweep.worker import Worker

    if load(args.name, url).user_attrs.get(STOP_ATTR):
        clear_stop(args.name, url)
        print(f"study {args.name} was stopped; resuming it", flush=True)
    if args.slots is not None or args.gpus is not None or args.threads is not None:
        import dataclasses

        current = queue.read_slots(args.runs_dir)
        gpus = current.gpus if args.gpus is None else tuple(int(g) for g in args.gpus.split(",") if g.strip())
        slots = queue.Slots(gpus=gpus, per_gpu=current.per_gpu, cpu=args.slots or current.cpu,
                            threads=current.threads if args.threads is None else args.threads)
        queue.set_slots(args.runs_dir, slots)
        print(f"queue slots: {slots.describe(os.cpu_count() or 1)} ({dataclasses.asdict(slots)})", flush=True)
    worker = Worker(args.name, url, args.runs_dir, parallel=args.parallel, say=lambda m: print(m, flush=True))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    report = worker.run()
    return 1 if report.error else 0


def _run_command(args: argparse.Namespace, extra: list[str]) -> int:
    url = _storage(args)
    if args.command == "create":
        from atft_core.sweep.study import create_study, start_worker

        spec = create_study(spec_from_args(args, extra), url, args.runs_dir)
        print(f"created study {spec.name}: {spec.n_trials} trials of {', '.join(p.describe() for p in spec.space)}")
        if args.start:
            print(f"worker started (pid {start_worker(spec.name, url, args.runs_dir)})")
    elif args.command == "run":
        return _run_worker(args, url)
    elif args.command == "list":
        from atft_core.sweep.trials import list_studies

        studies = list_studies(url)
        if args.json:
            print(json.dumps([s.__dict__ for s in studies], indent=2))
        elif not studies:
            print(f"no study in {shown_url(url)}")
        for s in [] if args.json else studies:
            best = "-" if s.best_value is None else f"{s.best_value:.5f}"
            print(f"{s.name}  {s.done}/{s.planned} done, {s.running} running, best {s.metric} {best}"
                  + ("  (stopped)" if s.stopped else ""))
    elif args.command == "show":
        from atft_core.sweep.trials import read_study

        view = read_study(args.name, url)
        print(json.dumps(view.to_dict(), indent=2) if args.json else format_trials(view))
    elif args.command == "stop":
        from atft_core.sweep.study import request_stop

        request_stop(args.name, url, args.reason)
        print(f"study {args.name}: stop requested; its workers stop their trials within seconds")
    elif args.command == "confirm":
        from atft_core.sweep.confirm import confirm_best, format_confirmation

        result = confirm_best(args.name, url, args.runs_dir, top=args.top, seeds=args.seeds,
                              baselines=[k.strip() for k in args.baselines.split(",") if k.strip()], test=args.test,
                              say=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(result.to_dict(), indent=2) if args.json else format_confirmation(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; errors are printed as one line (never with a password) and give exit status 2."""
    args, extra = _parser().parse_known_args(argv)   # argv None: argparse reads the command line
    if extra and args.command != "create":
        print(f"error: unrecognised arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    try:
        return _run_command(args, extra)
    except (SweepError, ConfigError, RunError, UnsafePathError) as exc:
        print(f"error: {redact(str(exc), _storage(args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
