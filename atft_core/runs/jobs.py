"""The job queue as it lies on disk, for readers: jobs, their states and reasons, the dispatcher.

Read side: this module only reads (the queue is written by `atft_core.runs.queue`). One queue per
runs folder and machine, under ``<runs>/.queue/<host>/``:

    jobs/<job id>.json     one file per queued or running job, written atomically; the id starts
                           with the submission time in nanoseconds, so names sort in submission order
    jobs/<job id>.cancel   a request to cancel a queued job (its own file: no write race)
    ended/<job id>.json    where a job's record goes when it ends (done, failed or stopped)
    slots.json             where jobs run (`atft_core.runs.queue.Slots`)
    dispatcher.json        pid and start time of the live dispatcher (removed when it exits)
    dispatcher.lock        flock held by the one dispatcher of this queue
    dispatcher.log         what the dispatcher did

Run folders may be shared between machines (a sweep across machines); each machine's queue is its
own folder, and readers list the jobs of every machine.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from atft_core.paths import slugify
from atft_core.run_files import read_json

QUEUE_DIR = ".queue"
JOB_KINDS = ("train", "ensemble")
"""train: one run's trainer on a slot; ensemble: combine the finished runs among `members` once
the jobs in `after` have ended (no slot)."""
JOB_STATES = ("queued", "running", "done", "failed", "stopped")
ENDED_JOB_STATES = ("done", "failed", "stopped")


def host_name() -> str:
    """This machine's queue folder name."""
    return slugify(socket.gethostname()) or "host"


@dataclass(frozen=True)
class QueuePaths:
    """The files of one machine's queue."""

    root: Path

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def ended(self) -> Path:
        return self.root / "ended"

    @property
    def slots(self) -> Path:
        return self.root / "slots.json"

    @property
    def dispatcher(self) -> Path:
        return self.root / "dispatcher.json"

    @property
    def dispatcher_lock(self) -> Path:
        return self.root / "dispatcher.lock"

    @property
    def log(self) -> Path:
        return self.root / "dispatcher.log"

    def job(self, job_id: str) -> Path:
        return self.jobs / f"{job_id}.json"

    def cancel_request(self, job_id: str) -> Path:
        return self.jobs / f"{job_id}.cancel"


def queue_paths(runs_dir: Path | str, host: str | None = None) -> QueuePaths:
    """This machine's queue (or `host`'s) in `runs_dir`."""
    return QueuePaths(Path(runs_dir) / QUEUE_DIR / (host or host_name()))


@dataclass
class Job:
    """One job: a run to train (or resume) on a slot, or an ensemble step after other jobs."""

    id: str
    kind: str
    created: float
    state: str = "queued"
    reason: str = ""
    """Why it waits (queued), where it runs (running), or how it ended."""
    run_id: str | None = None
    """train: the run it trains; ensemble: the ensemble run, once built."""
    resume: bool = False
    after: list[str] = field(default_factory=list)
    """Job ids that must have ended (whatever their outcome) before this one may start."""
    members: list[str] = field(default_factory=list)
    """ensemble: the runs to combine (those of them that finished)."""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    need_ram: int = 0
    """Peak RAM (bytes) the run is expected to take: an earlier run's measured peak, else an estimate."""
    need_gpu: int = 0
    """Peak GPU memory (bytes) on a GPU slot, likewise."""
    need_source: str = ""
    width: int = 1
    """Slots the job takes at once: a data-parallel run's runtime.devices (one GPU, or one CPU slot's
    threads, per process)."""
    slot: str | None = None
    """The slot it runs on (several, comma-separated, for a job wider than one)."""
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    host: str = ""
    owner: dict[str, Any] | None = None
    """The process a train job belongs to (a sweep worker: `atft_core.runs.queue.this_process`):
    when it is gone, the dispatcher stops the job's run."""

    @property
    def live(self) -> bool:
        return self.state in ("queued", "running")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Job":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _read_jobs(folder: Path, last: int | None = None) -> list[Job]:
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except OSError:
        return []
    jobs = []
    for name in names[-last:] if last else names:
        values = read_json(folder / name)
        if values and values.get("id") == name[:-len(".json")]:
            jobs.append(Job.from_dict(values))
    return jobs


def _hosts(runs_dir: Path | str, host: str | None) -> list[str]:
    if host is not None:
        return [host]
    try:
        return sorted(entry.name for entry in os.scandir(Path(runs_dir) / QUEUE_DIR) if entry.is_dir())
    except OSError:
        return []


def list_jobs(runs_dir: Path | str, host: str | None = None) -> list[Job]:
    """The queued and running jobs of `host`'s queue, or of every machine's queue when `host` is
    None; oldest first. (A job that ended meanwhile may be missing; see `ended_jobs`.)"""
    jobs = [job for h in _hosts(runs_dir, host) for job in _read_jobs(queue_paths(runs_dir, h).jobs)]
    return sorted((j for j in jobs if j.live), key=lambda j: (j.created, j.id))


def ended_jobs(runs_dir: Path | str, host: str | None = None, last: int | None = None) -> list[Job]:
    """The ended jobs (the `last` ones of each machine, if given); oldest first."""
    jobs = [job for h in _hosts(runs_dir, host) for job in _read_jobs(queue_paths(runs_dir, h).ended, last)]
    return sorted(jobs, key=lambda j: (j.created, j.id))


def latest_job_of_run(jobs: list[Job]) -> dict[str, Job]:
    """Run id -> the newest train job of that run (a resumed run has one per submission)."""
    latest: dict[str, Job] = {}
    for job in jobs:
        if job.kind == "train" and job.run_id and (job.run_id not in latest or job.created >= latest[job.run_id].created):
            latest[job.run_id] = job
    return latest


@dataclass
class DispatcherInfo:
    """Whether this machine's queue has a live dispatcher."""

    alive: bool
    pid: int | None = None
    started: float | None = None


def dispatcher_info(runs_dir: Path | str, alive_check) -> DispatcherInfo:
    """The dispatcher recorded in dispatcher.json, checked with `alive_check(pid, start_time)`
    (a killed dispatcher leaves its file behind; a reused pid has another start time)."""
    values = read_json(queue_paths(runs_dir).dispatcher) or {}
    pid, started = values.get("pid"), values.get("proc_start_time")
    return DispatcherInfo(bool(pid) and alive_check(pid, started), pid, values.get("started"))
