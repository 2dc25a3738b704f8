"""The read side of the run machinery: a run's state, its metrics, log and checkpoints.

    list_runs(runs_dir) -> list[RunSummary]          # newest first, one DuckDB query
    run_state(runs_dir, run_id) -> RunSummary
    query_metrics(runs_dir, run_ids, names=None) -> polars.DataFrame
        # columns run_id, epoch, step, phase, wall_time, name, value
    log_tail(runs_dir, run_id, lines=50) -> str
    list_checkpoints(runs_dir, run_id) -> list[CheckpointInfo]

This module imports nothing of the write side (`atft_core.runs.launch`, `.seeds`, `.ensemble`):
the app's pages that only watch runs never load the launcher.

A run's state is what its ``status.json`` says, checked against the live process: a run that
says queued/running but whose process is gone (pid not alive, pid reused by another process
with a different start time, or a zombie) is reported as ``crashed``. Metrics are read with one
in-memory DuckDB connection over every run's ``metrics.jsonl`` (explicit column types,
``ignore_errors`` so a torn last line is skipped; DuckDB turns such a line into an all-null row,
which is filtered out). A finished run is compacted once (by `list_runs`) to a parquet file named
after the JSONL size it was made from, so it is used only while it still matches.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import psutil

from atft_core.paths import UnsafePathError, check_run_id, run_path
from atft_core.run_files import FINAL_STATES, RunFiles, RunLock, read_json, read_problem
from atft_core.runs.jobs import dispatcher_info, host_name, latest_job_of_run, list_jobs
from atft_core.runs.progress import run_progress

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

DEFAULT_RUNS_DIR = "runs"
RANK_IC_METRIC = "val/rank_ic"
"""The metric a run is ranked by (best value and its epoch)."""
LIVE_STATES = ("queued", "running")
START_TIME_TOLERANCE_S = 1.0
"""A process's start time and the recorded one come from the same clock; allow rounding."""
WALL_CLOCK_STAMP_MIN = 1e9
"""Start times recorded before `process_start_time` were wall-clock seconds (> 1e9 since 2001);
seconds since boot never get there."""
STALE_HEARTBEATS = 12
"""A run with no heartbeat for this many heartbeat periods (and no process to ask) is crashed."""
MIN_STALE_SECONDS = 120.0
"""...but never sooner than this: a slow first epoch must not look like a crash."""
DEFAULT_HEARTBEAT_SECONDS = 5.0
"""Used only when a run's config cannot be read (same default as RuntimeConfig)."""
LAUNCH_CONFIG = "launch_config.json"
"""The full config the launcher handed the trainer (`--config`), written before the start."""
ENSEMBLE_KIND = "ensemble"
"""run.json's ``kind`` (and the runs table's model kind) of an ensemble run (`atft_core.runs.ensemble`)."""

METRIC_COLUMNS = {"epoch": "BIGINT", "step": "BIGINT", "phase": "BIGINT", "wall_time": "DOUBLE",
                  "name": "VARCHAR", "value": "DOUBLE"}
METRIC_SCHEMA = {"run_id": pl.String, "epoch": pl.Int64, "step": pl.Int64, "phase": pl.Int64,
                 "wall_time": pl.Float64, "name": pl.String, "value": pl.Float64}
# The run id is the folder holding the metrics file.
_RUN_ID_SQL = r"regexp_extract(filename, '([^/\\]+)[/\\][^/\\]+$', 1)"


class RunError(ValueError):
    """A run does not exist, or the requested action does not fit its state."""


# ---------------------------------------------------------------------------------------------
# Process liveness


def process_start_time(pid: int) -> float | None:
    """When process `pid` started, as recorded with a run or job to tell it from a later process
    with the same pid; None if there is no such process.

    On Linux: seconds since boot from /proc/<pid>/stat. A wall-clock start time (psutil's
    create_time) is boot time + that, and the boot time is derived from the wall clock: a clock
    step or a paused and resumed VM moves it (by 48 s once here), so live trainers looked dead and
    the queue started more of them. Elsewhere: psutil's create_time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22 of stat(5): starttime in ticks
    except FileNotFoundError:
        return None if sys.platform.startswith("linux") else _create_time(pid)
    except (OSError, IndexError, ValueError):
        return _create_time(pid)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_alive(pid: Any, start_time: Any = None) -> bool:
    """True if `pid` is a live, non-zombie process (started at `start_time`, if given: a
    `process_start_time`, or a wall-clock create_time recorded by an earlier version).

    The start time guards against pid reuse: a new process with the same pid has another one.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if start_time is not None:
            recorded = float(start_time)
            actual = proc.create_time() if recorded > WALL_CLOCK_STAMP_MIN else process_start_time(pid)
            if actual is None or abs(actual - recorded) > START_TIME_TOLERANCE_S:
                return False
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's live process
        return True


# ---------------------------------------------------------------------------------------------
# Summaries


@dataclass
class CheckpointInfo:
    """One checkpoint file of a run."""

    name: str
    path: str
    size_bytes: int
    modified: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    """What the runs table shows for one run (all plain values; see `to_dict`)."""

    id: str
    name: str = ""
    tags: list[str] = field(default_factory=list)
    note: str = ""
    status: str = "queued"
    reason: str = ""
    """Why a run failed or crashed (the trainer's error, or what the reader inferred)."""
    warnings: list[str] = field(default_factory=list)
    """What the trainer warned about (status.json "warnings"): degenerate predictions, a
    setting too weak for the run's length, a seed group without an ensemble."""
    dataset: str = ""
    model_kind: str = ""
    hidden_size: int | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    mode: str = ""
    device: str = ""
    epoch: int | None = None
    """Epochs done, as the trainer reports them in status.json."""
    epochs_planned: int | None = None
    phase: Any = None
    phase_name: str = ""
    best_rank_ic: float | None = None
    best_epoch: int | None = None
    latest: dict[str, float | None] = field(default_factory=dict)
    """Last logged value of every metric name."""
    last_metric_epoch: int | None = None
    step: int | None = None
    """Optimizer steps done (status.json; the trainer's plan and progress: atft_core.runs.progress)."""
    steps_planned: int | None = None
    epoch_steps_done: int | None = None
    """Steps done inside the current epoch (a progress bar inside the epoch)."""
    epoch_steps_planned: int | None = None
    progress: float | None = None
    """Share of the planned steps done."""
    eta_seconds: float | None = None
    """Estimated seconds until a live run ends, from its step rate (None when not known yet)."""
    created: float | None = None
    started: float | None = None
    """When the run first started training (kept when it is resumed)."""
    updated: float | None = None
    ended: float | None = None
    duration: float | None = None
    """Wall time from the first start to the end (or now): spans every launch and the pauses."""
    active_seconds: float | None = None
    """Time spent training, summed over every launch (status.json `active_seconds`)."""
    pid: int | None = None
    sweep: dict[str, Any] | None = None
    """A sweep trial's study and trial number (run.json "sweep": study, trial, slot, params)."""

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _heartbeat_limit(config: dict[str, Any]) -> float:
    seconds = (config.get("runtime") or {}).get("heartbeat_seconds") or DEFAULT_HEARTBEAT_SECONDS
    return max(MIN_STALE_SECONDS, STALE_HEARTBEATS * float(seconds))


def infer_state(files: RunFiles, status: dict, info: dict, config: dict, now: float,
                waiting: str | None = None) -> tuple[str, str, dict]:
    """(state, reason, status) from the files plus a live process check; see module doc.

    `waiting`: why the run's queue job waits, when it has one that has not started a trainer:
    the run is then queued for that reason (whatever its heartbeat), never crashed.
    """
    state = status.get("state") or "queued"
    if state in FINAL_STATES:
        return state, status.get("error") or "", status
    if waiting is not None and info.get("pid") is None:   # the queue has not started its trainer yet
        return "queued", "", {**status, "phase_name": waiting}
    pid, start = info.get("pid"), info.get("proc_start_time")
    if pid is None:
        pid, start = status.get("pid"), None
    heartbeat = status.get("updated") or info.get("created") or now
    stale = now - float(heartbeat) > _heartbeat_limit(config)
    same_host = info.get("host", socket.gethostname()) == socket.gethostname()
    if pid is None or not same_host:
        if stale:
            return "crashed", f"no heartbeat for {now - float(heartbeat):.0f} s and no process to check", status
        return state, "", status
    if process_alive(pid, start):
        return state, (f"no heartbeat for {now - float(heartbeat):.0f} s" if stale else ""), status
    # The trainer may have written its final status and exited since we read the file.
    fresh = read_json(files.status) or status
    if fresh.get("state") in FINAL_STATES:
        return fresh["state"], fresh.get("error") or "", fresh
    return "crashed", f"process {pid} is gone without a final status (see train.log)", fresh


def _run_config(files: RunFiles) -> dict[str, Any]:
    saved = read_json(files.config)
    if saved and isinstance(saved.get("config"), dict):
        return saved["config"]
    return read_json(files.root / LAUNCH_CONFIG) or {}


class _Queue:
    """What the queue says about runs: each run's newest job, and (asked once, if needed) whether
    this machine's dispatcher is alive."""

    def __init__(self, runs_dir: Path | str):
        self.runs_dir = runs_dir
        self.jobs = latest_job_of_run(list_jobs(runs_dir))
        self._dispatcher_alive: bool | None = None

    def waiting(self, run_id: str) -> str | None:
        """Why the run's job waits; None when it has no job that is yet to start a trainer."""
        job = self.jobs.get(run_id)
        if job is None or job.state != "queued":
            return None
        if job.host == host_name() and not self.dispatcher_alive():
            return f"{job.reason + '; ' if job.reason else ''}{DISPATCHER_DOWN}"
        return job.reason or "waiting for the dispatcher"

    def dispatcher_alive(self) -> bool:
        if self._dispatcher_alive is None:
            self._dispatcher_alive = dispatcher_info(self.runs_dir, process_alive).alive
        return self._dispatcher_alive


DISPATCHER_DOWN = "the queue's dispatcher is not running (python -m atft_core.runs queue start)"


def _unreadable(files: RunFiles) -> str:
    """Why neither status.json nor run.json can tell this run's state ('' if one of them can)."""
    problems = []
    for path in (files.status, files.run_info):
        if read_json(path) is not None:
            return ""
        problems.append(f"{path.name} {read_problem(path)}")
    return "; ".join(problems)


def _broken(files: RunFiles, info: dict) -> str:
    """Why the run is broken: no state can be read and no trainer holds the folder ('' if not)."""
    problem = _unreadable(files) or (f"status.json {read_problem(files.status)}"
                                     if files.status.exists() and read_json(files.status) is None else "")
    if not problem:
        return ""
    pid = info.get("pid") or RunLock(files).holder()
    if pid is not None and process_alive(pid, info.get("proc_start_time") if info.get("pid") else None):
        return ""
    return f"{problem}: the run's state cannot be read (delete it, or restore the file)"


def _summary(files: RunFiles, now: float, queue: _Queue) -> RunSummary:
    info = read_json(files.run_info) or {}
    if broken := _broken(files, info):
        return RunSummary(id=files.root.name, status="broken", reason=broken, created=info.get("created"))
    status = read_json(files.status) or {}
    config = _run_config(files)
    state, reason, status = infer_state(files, status, info, config, now, queue.waiting(files.root.name))
    data, model, loss, train = (config.get(k) or {} for k in ("data", "model", "loss", "train"))
    started = status.get("started") or info.get("created")
    end = status.get("ended") if state in FINAL_STATES else (status.get("updated") if state == "crashed" else now)
    progress = run_progress(status, now, live=state in LIVE_STATES)
    return RunSummary(
        id=files.root.name, name=info.get("name", ""), tags=list(info.get("tags") or []),
        note=info.get("note", ""), status=state, reason=reason, warnings=_warnings(status),
        dataset=data.get("path", ""),
        model_kind=ENSEMBLE_KIND if info.get("kind") == ENSEMBLE_KIND else model.get("kind", ""),
        hidden_size=model.get("hidden_size"),
        loss_weights={k: v for k, v in loss.items() if k.endswith("_weight")},
        mode=train.get("mode", ""), device=(config.get("runtime") or {}).get("device", ""),
        epoch=status.get("epoch"), epochs_planned=status.get("epochs_planned"),
        phase=status.get("phase"), phase_name=status.get("phase_name") or "",
        step=progress.step, steps_planned=progress.steps_planned, epoch_steps_done=progress.epoch_steps_done,
        epoch_steps_planned=progress.epoch_steps_planned, progress=progress.fraction,
        eta_seconds=progress.eta_seconds, created=info.get("created"), started=started,
        updated=status.get("updated"), ended=status.get("ended"),
        duration=(float(end) - float(started)) if started and end else None,
        active_seconds=status.get("active_seconds"), pid=info.get("pid") or status.get("pid"), sweep=info.get("sweep"),
    )


def _warnings(status: dict[str, Any]) -> list[str]:
    # Runs trained before "warnings" kept only their last one, as "warning".
    found = status.get("warnings") or ([status["warning"]] if status.get("warning") else [])
    return [str(w) for w in found]


def _is_run_dir(entry: os.DirEntry) -> bool:
    if entry.name.startswith(".") or not entry.is_dir():
        return False
    try:
        check_run_id(entry.name)
    except UnsafePathError:
        return False
    return any(os.path.exists(os.path.join(entry.path, f)) for f in ("run.json", "status.json", "config.json"))


def _run_dirs(runs_dir: Path) -> list[RunFiles]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    resolved_root = root.resolve()
    out = []
    with os.scandir(root) as entries:
        for entry in entries:
            # A symlinked run folder counts only if it points inside the runs folder.
            if _is_run_dir(entry) and (not entry.is_symlink() or Path(entry.path).resolve().is_relative_to(resolved_root)):
                out.append(RunFiles(Path(entry.path)))
    return out


def run_folder(runs_dir: Path | str, run_id: str) -> RunFiles:
    """The files of an existing run (UnsafePathError for a bad id, RunError if absent)."""
    root = run_path(runs_dir, run_id)
    if not root.is_dir():
        raise RunError(f"no run {run_id!r} in {Path(runs_dir).resolve()}")
    return RunFiles(root)


# ---------------------------------------------------------------------------------------------
# Metrics through DuckDB

_CON: "duckdb.DuckDBPyConnection | None" = None
_CON_LOCK = threading.Lock()


def _duckdb():
    """The duckdb module, imported on the first query: the trainer, the launcher and ensembles use
    this module's run-folder helpers only, and so run where DuckDB is not installed (a bare GPU box)."""
    import duckdb

    return duckdb


def _connection() -> "duckdb.DuckDBPyConnection":
    """The process's one in-memory DuckDB connection (never a .duckdb file a trainer could hold)."""
    global _CON
    if _CON is None:
        _CON = _duckdb().connect(":memory:")
    return _CON


def _parquet_for(files: RunFiles) -> tuple[Path | None, int]:
    """(compacted parquet if any, the JSONL size it was made from)."""
    try:
        with os.scandir(files.root) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("metrics-") and name.endswith(".parquet"):
                    size = name[len("metrics-"):-len(".parquet")]
                    if size.isdigit():
                        return Path(entry.path), int(size)
    except OSError:
        pass
    return None, -1


def _jsonl_size(files: RunFiles) -> int:
    try:
        return files.metrics.stat().st_size
    except OSError:
        return -1


def _metric_files(runs: list[RunFiles], final: set[str]) -> tuple[list[str], list[str]]:
    """Split runs into (jsonl files, parquet files): a run's parquet only while it matches."""
    jsonl, parquet = [], []
    for files in runs:
        size = _jsonl_size(files)
        if files.root.name in final:
            pq, made_from = _parquet_for(files)
            if pq is not None and made_from == size:
                parquet.append(str(pq))
                continue
        if size > 0:
            jsonl.append(str(files.metrics))
    return jsonl, parquet


def _source_sql(jsonl: list[str], parquet: list[str]) -> tuple[str, list]:
    """A SELECT over all metric rows (run_id + METRIC_COLUMNS), and its parameters."""
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in METRIC_COLUMNS.items()) + "}"
    names = ", ".join(METRIC_COLUMNS)
    parts, params = [], []
    if jsonl:
        parts.append(
            f"SELECT {_RUN_ID_SQL} AS run_id, {names} FROM read_json(?, format='newline_delimited', "
            f"columns={cols}, ignore_errors=true, filename=true) WHERE name IS NOT NULL AND epoch IS NOT NULL"
        )
        params.append(jsonl)
    if parquet:
        parts.append(f"SELECT {_RUN_ID_SQL} AS run_id, {names} FROM read_parquet(?, filename=true)")
        params.append(parquet)
    return " UNION ALL ".join(parts), params


def _query(sql_for, runs: list[RunFiles], final: set[str]) -> pl.DataFrame | None:
    """Run `sql_for(source_sql)` over the runs' metric files; None when there are none.

    A run deleted between listing and reading makes DuckDB fail on its missing file; the file
    list is then rebuilt once.
    """
    for attempt in range(2):
        jsonl, parquet = _metric_files(runs, final)
        if not jsonl and not parquet:
            return None
        source, params = _source_sql(jsonl, parquet)
        try:
            with _CON_LOCK:
                return _connection().sql(sql_for(source), params=params).pl()
        except _duckdb().IOException:
            if attempt:
                raise
            runs = [r for r in runs if r.root.is_dir()]
    return None


def _metric_stats(runs: list[RunFiles], final: set[str]) -> pl.DataFrame | None:
    """Per (run, metric): latest value, best value and its epoch, last epoch; one query."""
    def sql(source: str) -> str:
        return (
            f"SELECT run_id, name, arg_max(value, (epoch, step, wall_time)) AS latest, "
            f"max(value) AS best, arg_max(epoch, value) AS best_epoch, max(epoch) AS last_epoch "
            f"FROM ({source}) GROUP BY run_id, name"
        )
    return _query(sql, runs, final)


def _attach_metrics(summaries: dict[str, RunSummary], stats: pl.DataFrame | None) -> None:
    if stats is None:
        return
    for row in stats.iter_rows(named=True):
        s = summaries.get(row["run_id"])
        if s is None:
            continue
        s.latest[row["name"]] = row["latest"]
        if row["last_epoch"] is not None:
            s.last_metric_epoch = max(s.last_metric_epoch or 0, row["last_epoch"])
        if row["name"] == RANK_IC_METRIC:
            s.best_rank_ic, s.best_epoch = row["best"], row["best_epoch"]


def list_runs(runs_dir: Path | str = DEFAULT_RUNS_DIR, compact: bool = True) -> list[RunSummary]:
    """Every run in `runs_dir`, newest first, with state, settings and best/latest metrics.

    Finished runs are compacted to parquet on the way (once) when `compact` is true.
    """
    now = time.time()
    runs = _run_dirs(Path(runs_dir))
    queue = _Queue(runs_dir)
    summaries = {f.root.name: _summary(f, now, queue) for f in runs}
    final = {rid for rid, s in summaries.items() if s.status in FINAL_STATES}
    if compact:
        for files in runs:
            if files.root.name in final:
                _compact(files)
    _attach_metrics(summaries, _metric_stats(runs, final))
    return sorted(summaries.values(), key=lambda s: (s.created or s.started or 0, s.id), reverse=True)


def run_state(runs_dir: Path | str, run_id: str) -> RunSummary:
    """The summary of one run (RunError if there is no such run)."""
    files = run_folder(runs_dir, run_id)
    summary = _summary(files, time.time(), _Queue(runs_dir))
    final = {run_id} if summary.status in FINAL_STATES else set()
    _attach_metrics({run_id: summary}, _metric_stats([files], final))
    return summary


def query_metrics(runs_dir: Path | str, run_ids: list[str] | tuple[str, ...], names: list[str] | None = None) -> pl.DataFrame:
    """The long metric table of `run_ids`: run_id, epoch, step, phase, wall_time, name, value.

    Rows are ordered by run, wall time, epoch and step; `names` filters metric names.
    """
    runs = [run_folder(runs_dir, rid) for rid in dict.fromkeys(run_ids)]
    final = {f.root.name for f in runs if (read_json(f.status) or {}).get("state") in FINAL_STATES}
    # The sources take the positional parameters, so names go in as an escaped literal list.
    literal = "[" + ", ".join("'" + str(n).replace("'", "''") + "'" for n in names or ()) + "]"
    where = f"WHERE list_contains({literal}, name)" if names else ""

    def sql(source: str) -> str:
        return f"SELECT * FROM ({source}) {where} ORDER BY run_id, wall_time, epoch, step"
    frame = _query(sql, runs, final)
    if frame is None:
        return pl.DataFrame(schema=METRIC_SCHEMA)
    return frame.cast(METRIC_SCHEMA)


def _compact(files: RunFiles) -> bool:
    """Write the finished run's metrics to ``metrics-<jsonl size>.parquet`` (temp, then rename)."""
    size = _jsonl_size(files)
    old, made_from = _parquet_for(files)
    if size <= 0 or made_from == size:
        return False
    target = files.root / f"metrics-{size}.parquet"
    tmp = files.root / f".metrics.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    source, params = _source_sql([str(files.metrics)], [])
    try:
        with _CON_LOCK:
            _connection().execute(f"COPY ({source}) TO '{tmp}' (FORMAT parquet)", params)
        if _jsonl_size(files) != size:  # appended meanwhile (resumed): try again later
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, target)
    except (_duckdb().Error, OSError):
        tmp.unlink(missing_ok=True)
        return False
    if old is not None and old != target:
        old.unlink(missing_ok=True)
    return True


def drop_compacted(files: RunFiles) -> None:
    """Remove compacted parquet files (before a run is resumed and its JSONL grows again)."""
    for path in files.root.glob("metrics-*.parquet"):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Logs and checkpoints


def log_tail(runs_dir: Path | str, run_id: str, lines: int = 50) -> str:
    """The last `lines` lines of the run's train.log ('' if there is none yet)."""
    path = run_folder(runs_dir, run_id).log
    if not path.is_file() or lines <= 0:
        return ""
    block, data = 8192, b""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def list_checkpoints(runs_dir: Path | str, run_id: str) -> list[CheckpointInfo]:
    """The run's checkpoint files (best.pt, last.pt, ...), newest first."""
    folder = run_folder(runs_dir, run_id).checkpoints
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.pt"):
        st = path.stat()
        out.append(CheckpointInfo(path.name, str(path), st.st_size, st.st_mtime))
    return sorted(out, key=lambda c: c.modified, reverse=True)
