"""The job queue: every run is trained through it, on a slot, when its memory fits.

    launch_run(cfg, runs_dir, name="", tags=(), force=False, requested=None, *, run_id=None,
               info=None, after=(), probes=None, data_roots=None) -> run_id
    resume_run(runs_dir, run_id) -> None
    submit_ensemble(runs_dir, after, members, name="", tags=()) -> job id
    cancel_job(runs_dir, job_id) -> None;  forget_ended(runs_dir) -> count
    keep_dispatching(runs_dir) -> bool     # the app, on each page: a killed dispatcher comes back
    wait_for_runs(runs_dir, run_ids, timeout=None, on_change=None) -> [RunSummary]
    read_slots(runs_dir) -> Slots;  set_slots(runs_dir, slots)
    ensure_dispatcher(runs_dir) -> bool;  serve(runs_dir) -> exit code

Submitting writes the run folder (state ``queued``) and a job file (`atft_core.runs.jobs`), then
makes sure this machine's dispatcher runs: one process per queue (a flock), started on demand,
which exits when the queue has been idle for `IDLE_EXIT_SECONDS` and can be killed and restarted
at any time: everything it knows is on disk, and the trainers it started live on without it.

The dispatcher takes the queued jobs in submission order. A job waits while a job it depends on
(`after`) has not ended; then for a free slot; then until its memory fits: its expected peak
(`system.memory_need`: an earlier run's measured peak, else an estimate) must fit in the memory
available now minus what the running jobs are still expected to grow by. A waiting job keeps its
reason, which the run's state shows (``queued``, phase_name "waiting for a slot (2 of 2 busy)").
A job that cannot start yet holds back the ready jobs behind it, so a large run is not starved
by small ones.

Slots: one per GPU (``per_gpu`` jobs each; the trainer sees only its GPU, through
CUDA_VISIBLE_DEVICES) or ``cpu`` CPU slots, each with ``threads`` torch threads: a run that leaves
``runtime.num_threads`` at 0 gets the slot's count (written to its launch config, so the
effective config says so); one asking for more than a slot has is refused. A data-parallel run
(runtime.devices = N) takes N slots at once, on N different GPUs (CUDA_VISIBLE_DEVICES lists them).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from atft_core.config import ConfigError, RunConfig
from atft_core.paths import slugify
from atft_core.run_files import (FINAL_STATES, STOP_OUTCOMES, RunFiles, RunFolderBusy, RunLock, read_json,
                                 write_json_atomic)
from atft_core.runs import launch
from atft_core.runs.jobs import (ENDED_JOB_STATES, Job, QueuePaths, dispatcher_info, ended_jobs, host_name,
                                 list_jobs, queue_paths)
from atft_core.runs.store import (DEFAULT_RUNS_DIR, LAUNCH_CONFIG, RunError, RunSummary, process_alive,
                                  process_start_time, run_folder, run_state)
from atft_core.system import GiB, Probes, memory_need

POLL_SECONDS = 0.2
"""How often the dispatcher looks at its queue."""
IDLE_EXIT_SECONDS = 30.0
"""The dispatcher exits after this long with nothing queued or running (it is restarted on demand)."""
LOCK_WAIT_SECONDS = 5.0
"""A starting dispatcher waits this long for the lock of one that is exiting."""
WAIT_POLL_SECONDS = 1.0
"""How often `wait_for_runs` looks at the runs."""
FINISHED = ("completed", "early_stopped")
SLOT_WAIT = "waiting for a slot"


# ---------------------------------------------------------------------------------------------
# Slots


@dataclass(frozen=True)
class Slots:
    """Where this machine's queue runs its jobs (saved in the queue's slots.json)."""

    gpus: tuple[int, ...] = ()
    """GPU indices; each gives `per_gpu` slots. Empty: CPU slots."""
    per_gpu: int = 1
    """Jobs at once on each GPU."""
    cpu: int = 1
    """CPU slots, when `gpus` is empty."""
    threads: int = 0
    """Torch threads of each slot's job; 0 = the machine's cores shared equally between the slots."""

    def __post_init__(self) -> None:
        if any(not isinstance(g, int) or g < 0 for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
            raise ConfigError(f"slots.gpus: distinct GPU indices >= 0, got {list(self.gpus)}")
        for name in ("per_gpu", "cpu"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"slots.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"slots.threads must be an integer >= 0 (0 = share the cores), got {self.threads!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Slots":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"slots: unknown setting(s) {sorted(unknown)}")
        return cls(**{**values, **({"gpus": tuple(values["gpus"])} if "gpus" in values else {})})

    def names(self) -> list[tuple[str, int | None]]:
        """(slot name, GPU index or None), e.g. ('gpu1', 1) or ('cpu0', None)."""
        if self.gpus:
            return [(f"gpu{g}" + (f".{k}" if self.per_gpu > 1 else ""), g) for g in self.gpus for k in range(self.per_gpu)]
        return [(f"cpu{k}", None) for k in range(self.cpu)]

    def threads_each(self, cpu_count: int) -> int:
        return self.threads or max(1, cpu_count // len(self.names()))

    def describe(self, cpu_count: int) -> str:
        where = (f"{len(self.gpus)} GPU(s) ({', '.join(map(str, self.gpus))}) x {self.per_gpu}" if self.gpus
                 else f"{self.cpu} CPU slot(s)")
        return f"{where}, {self.threads_each(cpu_count)} thread(s) each"


def default_slots(probes: Probes) -> Slots:
    """One slot per GPU when this torch can use them, else one CPU slot with every core."""
    try:
        gpus = tuple(g.index for g in probes.gpus())
    except Exception:  # noqa: BLE001 - no NVML driver: no GPU
        gpus = ()
    # Asked only when there are GPUs: it imports torch (seconds).
    return Slots(gpus=gpus if gpus and probes.cuda_available() else ())


def read_slots(runs_dir: Path | str, probes: Probes | None = None, default: Slots | None = None) -> Slots:
    """This machine's slots: as set with `set_slots`, else `default` (or `default_slots`)."""
    saved = read_json(queue_paths(runs_dir).slots)
    if saved is not None:
        return Slots.from_dict(saved)
    return default or default_slots(probes or Probes())


def set_slots(runs_dir: Path | str, slots: Slots) -> None:
    """Save this machine's slots; the dispatcher uses them from its next look at the queue."""
    paths = queue_paths(runs_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.slots, dataclasses.asdict(slots))


def _place(cfg: RunConfig, slots: Slots, cpu_count: int) -> RunConfig:
    """`cfg` as it runs on slots: the slot's thread count when runtime.num_threads is 0 (safe mode
    keeps its one thread); refused when it asks for more threads than a slot has, a GPU other
    than the one its slot shows it, or more processes (runtime.devices) than there are slots
    (on GPUs: GPUs)."""
    threads, runtime = slots.threads_each(cpu_count), cfg.runtime
    room = len(slots.gpus) if slots.gpus else len(slots.names())
    if runtime.devices > room:
        raise launch.LaunchError(f"runtime.devices={runtime.devices} needs {runtime.devices} "
                                 f"{'GPUs' if slots.gpus else 'slots'} at once; this queue has {room} "
                                 f"({slots.describe(cpu_count)})")
    if runtime.num_threads > threads:
        raise launch.LaunchError(f"runtime.num_threads={runtime.num_threads} is more than a slot of this queue has "
                                 f"({slots.describe(cpu_count)}); set 0 to take the slot's, or change the slots "
                                 "(python -m atft_core.runs queue slots --help)")
    if slots.gpus and runtime.device.startswith("cuda:") and runtime.device != "cuda:0":
        raise launch.LaunchError(f"runtime.device={runtime.device}: on a queue with GPU slots each run sees only its "
                                 "slot's GPU; use runtime.device=cuda (or auto)")
    if runtime.num_threads == 0 and cfg.train.mode != "safe":
        cfg = cfg.replace(**{"runtime.num_threads": threads})
    return cfg


# ---------------------------------------------------------------------------------------------
# Submitting


def launch_run(cfg: RunConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR, name: str = "", tags: Iterable[str] = (),
               force: bool = False, requested: dict | None = None, *, run_id: str | None = None,
               info: Mapping[str, Any] | None = None, after: Sequence[str] = (), probes: Probes | None = None,
               data_roots: Sequence[Path | str] | None = None, preflight_runs: int = 1,
               owner: Mapping[str, Any] | None = None) -> str:
    """Queue a new run of `cfg` and return its id; the dispatcher starts it on a free slot.

    Refuses (LaunchError / UnsafePathError / ConfigError, nothing written) what the pre-flight
    check fails (or warns about, without `force`), a dataset outside `data_roots` (if given), a
    run_id that exists, and settings no slot can give. `requested`: the config as the user gave it
    (partial dict, kept in run.json with `info`'s fields). `after`: job ids to wait for first.
    `preflight_runs` > 1 checks disk for that many runs (a seed group); 0 skips the check (a
    group's later runs, checked with the first). `owner` (`this_process`): the process the run
    belongs to; the dispatcher stops the run when that process is gone (a sweep worker killed
    mid-trial must not leave its trial training).
    """
    probes = probes or Probes()
    runs_dir = Path(runs_dir)
    cfg = _place(cfg.replace(**{"data.path": str(launch.dataset_path(cfg, data_roots))}), read_slots(runs_dir, probes),
                 int(probes.cpu_count()))
    if preflight_runs:
        launch.check_preflight(cfg, runs_dir, force, probes, n_runs=preflight_runs)
    need = memory_need(cfg, runs_dir, probes)
    run_id = launch.create_run(cfg, runs_dir, name, tags, requested, data_roots=data_roots, run_id=run_id, info=info)
    job = Job(id=_job_id("train", run_id), kind="train", created=time.time(), run_id=run_id, after=list(after),
              name=name, need_ram=need.ram_bytes, need_gpu=need.gpu_bytes, need_source=need.source,
              width=cfg.runtime.devices, host=host_name(), owner=dict(owner) if owner else None)
    try:
        _submit(runs_dir, job)
    except BaseException as exc:  # a run without its job would wait for nothing: take it back
        queue_paths(runs_dir).job(job.id).unlink(missing_ok=True)
        launch.remove_run_dir(RunFiles(runs_dir / run_id))
        if isinstance(exc, OSError):
            raise launch.LaunchError(f"could not queue run {run_id}: {exc}") from exc
        raise
    return run_id


def this_process(what: str) -> dict[str, Any]:
    """This process as a job's `owner`: pid and start time (which tell it from a later process
    with the same pid) and what it is, for the stopped run's reason."""
    return {"pid": os.getpid(), "proc_start_time": process_start_time(os.getpid()), "what": what}


def resume_run(runs_dir: Path | str, run_id: str, probes: Probes | None = None) -> None:
    """Queue the run again, to continue from its last checkpoint (refused while it is live, while
    another process holds its lock, or without checkpoints/last.pt; nothing is written then)."""
    files = run_folder(runs_dir, run_id)
    try:
        lock = RunLock(files).acquire()
    except RunFolderBusy as exc:
        raise RunError(str(exc)) from None
    with lock:
        summary = run_state(runs_dir, run_id)
        if summary.live:
            raise RunError(f"run {run_id} is {summary.status}; stop it before resuming")
        if not files.last_checkpoint.is_file():
            raise RunError(f"run {run_id} has no checkpoints/last.pt to resume from; launch a new run instead")
        saved = read_json(files.config) or {}
        cfg = RunConfig.from_dict(saved.get("requested") or read_json(files.root / LAUNCH_CONFIG) or {})
        need = memory_need(cfg, runs_dir, probes)
        launch.prepare_resume(files)
        _submit(runs_dir, Job(id=_job_id("train", run_id), kind="train", created=time.time(), run_id=run_id,
                              resume=True, name=summary.name, need_ram=need.ram_bytes, need_gpu=need.gpu_bytes,
                              need_source=need.source, width=cfg.runtime.devices, host=host_name()))


def submit_ensemble(runs_dir: Path | str, after: Sequence[str], members: Sequence[str], name: str = "",
                    tags: Iterable[str] = ()) -> str:
    """Queue an ensemble step: once the jobs `after` have ended, the runs among `members` that
    finished (two or more) are combined into an ensemble run (`atft_core.runs.ensemble`). Returns
    the job id; the job's `run_id` is the ensemble run once built."""
    job = Job(id=_job_id("ensemble", name or "group"), kind="ensemble", created=time.time(), after=list(after),
              members=list(members), name=name, tags=list(tags), host=host_name())
    _submit(Path(runs_dir), job)
    return job.id


def train_job_id(runs_dir: Path | str, run_id: str) -> str:
    """The id of the run's newest job (the one `after` should name)."""
    jobs = [j for j in [*ended_jobs(runs_dir, host_name()), *list_jobs(runs_dir, host_name())]
            if j.kind == "train" and j.run_id == run_id]
    if not jobs:
        raise RunError(f"run {run_id} has no job in this machine's queue")
    return jobs[-1].id


def cancel_job(runs_dir: Path | str, job_id: str) -> None:
    """Cancel a queued job: a training job's run is stopped; an ensemble step is dropped."""
    paths = queue_paths(runs_dir)
    job = next((j for j in list_jobs(runs_dir, host_name()) if j.id == job_id), None)
    if job is None:
        raise RunError(f"no queued or running job {job_id!r} in {paths.jobs}")
    if job.kind == "train" and job.run_id:
        launch.stop_run(runs_dir, job.run_id)
    elif job.live:
        paths.cancel_request(job_id).touch()


def forget_ended(runs_dir: Path | str) -> int:
    """Remove this machine's records of ended jobs; returns how many."""
    paths = queue_paths(runs_dir)
    ended = ended_jobs(runs_dir, host_name())
    for job in ended:
        (paths.ended / f"{job.id}.json").unlink(missing_ok=True)
    return len(ended)


def keep_dispatching(runs_dir: Path | str) -> bool:
    """Start the dispatcher when this machine's queue has live jobs and none serves them (after a
    dispatcher was killed); True if one was started."""
    return bool(list_jobs(runs_dir, host_name())) and ensure_dispatcher(runs_dir)


def _job_id(kind: str, label: str) -> str:
    return f"{time.time_ns()}-{kind}-{slugify(label) or 'job'}"


def _submit(runs_dir: Path, job: Job) -> None:
    paths = queue_paths(runs_dir)
    paths.jobs.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.job(job.id), job.to_dict())
    ensure_dispatcher(runs_dir)


# ---------------------------------------------------------------------------------------------
# Waiting


def wait_for_runs(runs_dir: Path | str, run_ids: Sequence[str], timeout: float | None = None,
                  on_change: Callable[[RunSummary], None] | None = None,
                  poll_seconds: float = WAIT_POLL_SECONDS) -> list[RunSummary]:
    """Block until none of `run_ids` is queued or running; returns their summaries in order.

    `on_change(summary)` is called whenever a run's state, epoch, phase or reason changes. A
    queue whose dispatcher died is given a new one. TimeoutError after `timeout` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[str, tuple] = {}
    while True:
        summaries = [run_state(runs_dir, run_id) for run_id in run_ids]
        for s in summaries:
            key = (s.status, s.epoch, s.phase, s.phase_name, s.reason)
            if seen.get(s.id) != key:
                seen[s.id] = key
                if on_change is not None:
                    on_change(s)
        if not any(s.live for s in summaries):
            return summaries
        if any(s.status == "queued" for s in summaries):
            ensure_dispatcher(runs_dir)
        if deadline is not None and time.monotonic() > deadline:
            live = ", ".join(f"{s.id} ({s.status})" for s in summaries if s.live)
            raise TimeoutError(f"still live after {timeout:g} s: {live}")
        time.sleep(poll_seconds)


# ---------------------------------------------------------------------------------------------
# The dispatcher

_SPAWNED: dict[str, tuple[int, float]] = {}


def ensure_dispatcher(runs_dir: Path | str) -> bool:
    """Start this machine's dispatcher for `runs_dir` unless one is alive; True if one was started."""
    runs_dir = Path(runs_dir).resolve()
    spawned = _SPAWNED.get(str(runs_dir))   # (pid, start time) of one this process started, maybe not yet serving
    if (spawned is not None and process_alive(*spawned)) or dispatcher_info(runs_dir, process_alive).alive:
        return False
    paths = queue_paths(runs_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "atft_core.runs", "--runs-dir", str(runs_dir), "queue", "serve"]
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=launch.REPO_ROOT, start_new_session=True, close_fds=True)
    launch.reap_when_done(proc)
    started = process_start_time(proc.pid)
    if started is not None:   # else it already ended (another dispatcher serves)
        _SPAWNED[str(runs_dir)] = (proc.pid, started)
    return True


def serve(runs_dir: Path | str, probes: Probes | None = None, idle_exit_seconds: float = IDLE_EXIT_SECONDS) -> int:
    """The dispatcher's loop (``python -m atft_core.runs queue serve``); returns when the queue has
    been idle for `idle_exit_seconds`, or at once when another dispatcher serves this queue."""
    paths = queue_paths(runs_dir)
    paths.jobs.mkdir(parents=True, exist_ok=True)
    lock = _dispatcher_lock(paths)
    if lock is None:
        _say(f"another dispatcher serves {paths.root}")
        return 0
    dispatcher = Dispatcher(Path(runs_dir), probes or Probes())
    try:
        _say(f"dispatcher {os.getpid()} serves {paths.root}")
        _write_record(paths)
        idle_since: float | None = None
        while paths.root.is_dir():
            if dispatcher.step():
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_exit_seconds:
                # Say we are going first: a submitter that still saw us has written its job by now.
                paths.dispatcher.unlink(missing_ok=True)
                if not dispatcher.step():
                    break
                _write_record(paths)
                idle_since = None
            time.sleep(POLL_SECONDS)
    finally:
        if (read_json(paths.dispatcher) or {}).get("pid") == os.getpid():
            paths.dispatcher.unlink(missing_ok=True)
        os.close(lock)
    _say("idle; exiting")
    return 0


def _dispatcher_lock(paths: QueuePaths) -> int | None:
    fd = os.open(paths.dispatcher_lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _write_record(paths: QueuePaths) -> None:
    write_json_atomic(paths.dispatcher, {"pid": os.getpid(), "proc_start_time": process_start_time(os.getpid()),
                                         "started": time.time()})


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


class Dispatcher:
    """One look at the queue per `step`: ended jobs are closed, ready jobs started (see module doc)."""

    def __init__(self, runs_dir: Path, probes: Probes):
        self.runs_dir = runs_dir
        self.paths = queue_paths(runs_dir)
        self.probes = probes
        self.default_slots = default_slots(probes)   # probed once: NVML is slow to ask every step
        self._orphans: dict[str, threading.Thread] = {}

    def step(self) -> bool:
        """Update every job once; True while any job is queued or running."""
        jobs = list_jobs(self.runs_dir, host_name())
        by_id = {j.id: j for j in jobs}
        for job in jobs:
            if job.owner and job.kind == "train" and not process_alive(job.owner.get("pid"),
                                                                       job.owner.get("proc_start_time")):
                self._stop_orphan(job)
            if job.state == "running":
                self._check_running(job)
            elif job.state == "queued" and self._ended_while_queued(job):
                continue
        slots = read_slots(self.runs_dir, default=self.default_slots)
        head: Job | None = None     # the first ready run that could not start: the ones after it wait
        for job in [j for j in jobs if j.state == "queued" and j.id not in self._orphans]:
            waiting = self._waiting_for_jobs(job, by_id)
            if waiting:
                self._set(job, reason=waiting)
            elif job.kind == "ensemble":
                self._combine(job)
            elif head is not None:
                self._set(job, reason=head.reason if head.reason.startswith(SLOT_WAIT)
                          else f"waiting behind run {head.run_id} ({head.reason})")
            elif waiting := self._start(job, jobs, slots):
                self._set(job, reason=waiting)
                head = job
        return any(j.live for j in jobs)

    # -- ended jobs --------------------------------------------------------------------------
    def _check_running(self, job: Job) -> None:
        if job.kind != "train":
            return
        try:
            summary = run_state(self.runs_dir, job.run_id)
        except RunError:
            self._set(job, state="failed", reason=f"run {job.run_id} was deleted", ended=time.time())
            return
        if summary.live and (summary.pid == job.pid or process_alive(job.pid)):
            return
        if summary.live:   # its trainer died and the run was queued again (resumed) before this look
            self._set(job, state="failed", reason=f"crashed: trainer {job.pid} is gone; the run is queued again",
                      ended=time.time())
            return
        state = "done" if summary.status in FINISHED else "stopped" if summary.status in STOP_OUTCOMES else "failed"
        self._set(job, state=state, reason=summary.status + (f": {summary.reason}" if summary.reason else ""),
                  ended=time.time())
        _say(f"{job.id}: {summary.status}")

    def _stop_orphan(self, job: Job) -> None:
        """Stop the run of a job whose owner is gone, in a thread of its own (a trainer may take
        up to its stop grace to save and exit; the queue goes on meanwhile). Its end is then seen
        like any other."""
        if job.id in self._orphans:
            return
        owner = job.owner or {}
        reason = f"its owner ({owner.get('what') or 'process'} {owner.get('pid')}) is gone"
        _say(f"{job.id}: {reason}; stopping run {job.run_id}")
        thread = threading.Thread(target=_stop_quietly, args=(self.runs_dir, job.run_id, reason),
                                  name=f"orphan-{job.run_id}", daemon=True)
        self._orphans[job.id] = thread
        thread.start()

    def _ended_while_queued(self, job: Job) -> bool:
        """A queued job whose run was stopped (or deleted), or whose step was cancelled, is closed."""
        if self.paths.cancel_request(job.id).exists():
            self._set(job, state="stopped", reason="cancelled while queued", ended=time.time())
            self.paths.cancel_request(job.id).unlink(missing_ok=True)
            return True
        if job.kind != "train":
            return False
        files = RunFiles(self.runs_dir / job.run_id)
        status = read_json(files.status) or {}
        if files.root.is_dir() and status.get("state") not in FINAL_STATES:
            return False
        reason = f"{status.get('state')} while queued" if files.root.is_dir() else "run deleted while queued"
        self._set(job, state="stopped", reason=reason, ended=time.time())
        return True

    # -- waiting -----------------------------------------------------------------------------
    def _waiting_for_jobs(self, job: Job, by_id: dict[str, Job]) -> str | None:
        # A job not among the live ones has ended (its record is in ended/).
        pending = [by_id[i] for i in job.after if i in by_id and by_id[i].live]
        if not pending:
            return None
        if job.kind == "ensemble":
            return f"waiting for {len(pending)} of {len(job.after)} runs to end"
        return f"waiting for run {pending[0].run_id or pending[0].id} to end"

    def _start(self, job: Job, jobs: list[Job], slots: Slots) -> str:
        """Start the job on a free slot if its memory fits; else why it waits ('' when started)."""
        running = [j for j in jobs if j.state == "running" and j.kind == "train"]
        busy = {name for j in running for name in (j.slot or "").split(",")}
        taken = _pick_slots([(n, g) for n, g in slots.names() if n not in busy], job.width)
        if taken is None:
            wanted = f"{job.width} slots" if job.width > 1 else "a slot"
            return f"waiting for {wanted} ({len(busy)} of {len(slots.names())} busy)"
        gpus = [g for _, g in taken if g is not None]
        short = self._memory_short(job, running, gpus)
        if short:
            return short
        name = ",".join(n for n, _ in taken)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))} if gpus else {}
        try:
            record = launch.start_trainer(self.runs_dir, job.run_id, resume=job.resume, env=env)
        except RunFolderBusy:   # a trainer already holds it (a dispatcher killed mid-start): follow it
            self._set(job, state="running", slot=name, started=time.time(), reason=f"on {name}")
            return ""
        except RunError as exc:
            self._set(job, state="stopped", reason=str(exc), ended=time.time())
            return ""
        except OSError as exc:
            self._set(job, state="failed", reason=f"could not start the trainer: {exc}", ended=time.time())
            return ""
        self._set(job, state="running", slot=name, pid=record["pid"], started=time.time(), reason=f"on {name}")
        job.slot = name
        running.append(job)
        _say(f"{job.id}: started on {name} (pid {record['pid']})")
        return ""

    def _memory_short(self, job: Job, running: list[Job], gpus: list[int]) -> str:
        """Why the job's memory does not fit beside the running jobs ('' when it does), in RAM
        and on each GPU it would take."""
        _, available = self.probes.ram()
        still_growing = sum(max(0, j.need_ram - _rss(j.pid)) for j in running)
        free = available - still_growing
        if job.need_ram > free:
            return (f"waiting for {job.need_ram / GiB:.1f} GiB of memory ({max(free, 0) / GiB:.1f} GiB free beside "
                    f"the running jobs; {job.need_source})")
        if not job.need_gpu:
            return ""
        devices = {g.index: g for g in self._gpus()}
        for gpu in gpus:
            device = devices.get(gpu)
            used = {p["pid"]: p["used_memory"] or 0 for p in device.processes} if device else {}
            growing = sum(max(0, j.need_gpu - used.get(j.pid, 0)) for j in running
                          if any(name.split(".")[0] == f"gpu{gpu}" for name in (j.slot or "").split(",")))
            gpu_free = (device.memory_free if device else 0) - growing
            if job.need_gpu > gpu_free:
                return (f"waiting for {job.need_gpu / GiB:.1f} GiB on GPU {gpu} ({max(gpu_free, 0) / GiB:.1f} GiB free "
                        f"beside the running jobs; {job.need_source})")
        return ""

    def _gpus(self) -> list:
        try:
            return list(self.probes.gpus())
        except Exception:  # noqa: BLE001 - the driver went away: no GPU memory to give
            return []

    # -- ensemble steps ----------------------------------------------------------------------
    def _combine(self, job: Job) -> None:
        # Imported here: the ensemble module loads torch (seconds), which the dispatcher needs
        # only for this step.
        from atft_core.runs.ensemble import build_ensemble

        finished = [m for m in job.members if _status_of(self.runs_dir, m) in FINISHED]
        if len(finished) < 2:
            self._set(job, state="failed", ended=time.time(),
                      reason=f"{len(finished)} of {len(job.members)} runs finished; no ensemble built")
            return
        self._set(job, state="running", started=time.time(), reason=f"combining {len(finished)} runs")
        try:
            ensemble_id = build_ensemble(self.runs_dir, finished, name=job.name, tags=job.tags)
        except (RunError, OSError) as exc:
            self._set(job, state="failed", ended=time.time(), reason=f"no ensemble built: {exc}")
            return
        self._set(job, state="done", run_id=ensemble_id, ended=time.time(),
                  reason=f"ensemble run {ensemble_id} of {len(finished)} runs")
        _say(f"{job.id}: built {ensemble_id}")

    def _set(self, job: Job, **changes: Any) -> None:
        """Change the job and write it (only when something changed); an ended job's record moves
        to ended/, so each look at the queue reads the live jobs only."""
        if all(getattr(job, k) == v for k, v in changes.items()):
            return
        for key, value in changes.items():
            setattr(job, key, value)
        if job.state in ENDED_JOB_STATES:
            self.paths.ended.mkdir(exist_ok=True)
            write_json_atomic(self.paths.ended / f"{job.id}.json", job.to_dict())
            self.paths.job(job.id).unlink(missing_ok=True)
        else:
            write_json_atomic(self.paths.job(job.id), job.to_dict())


def _pick_slots(free: list[tuple[str, int | None]], width: int) -> list[tuple[str, int | None]] | None:
    """`width` of the free slots, on as many different GPUs (a data-parallel run takes one GPU per
    process); None when there are not enough."""
    taken: list[tuple[str, int | None]] = []
    for name, gpu in free:
        if gpu is None or all(g != gpu for _, g in taken):
            taken.append((name, gpu))
        if len(taken) == width:
            return taken
    return None


def _stop_quietly(runs_dir: Path, run_id: str | None, reason: str) -> None:
    try:
        launch.stop_run(runs_dir, run_id, reason=reason)
    except (RunError, OSError) as exc:   # deleted meanwhile, or a disk error: the next look says so
        _say(f"could not stop run {run_id}: {exc}")


def _status_of(runs_dir: Path, run_id: str) -> str | None:
    try:
        return run_state(runs_dir, run_id).status
    except RunError:
        return None


def _rss(pid: int | None) -> int:
    """Resident memory of a process and its children (0 when it is gone)."""
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except (psutil.Error, ValueError, TypeError):
        return 0
