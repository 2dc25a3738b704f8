"""A sweep worker: takes the study's waiting trials until none is left, each one an ordinary run
queued on this machine's job queue (`atft_core.runs.queue`), and tells Optuna how it went.

    Worker(name, url, runs_dir, parallel=None).run() -> WorkerReport
    python -m atft_core.sweep run STUDY [--storage URL] [--parallel N] [--slots N] [--threads T]

Each of the worker's `parallel` threads loops: fail the study's stale trials (a dead worker's),
take a waiting trial, sample its settings, queue its run (tagged ``sweep-<study>``, ``trial-<n>``;
run.json ``sweep``), follow the run epoch by epoch, reporting the best validation value so far to
Optuna, whose pruner may stop it (the run ends ``pruned``), and record the outcome: the best
epoch's value (complete), pruned, or failed with the run's reason.

Several workers, on one machine or several, share a study through its storage. A trial is taken
by switching it from waiting to running in the database (one row, locked: SELECT ... FOR UPDATE on
PostgreSQL; on SQLite, which cannot lock a row, the workers of the machine take turns under a file
lock), so no trial runs twice. While a worker holds trials it records their heartbeats; a worker
killed with ``kill -9`` stops beating, another worker fails its trials after the study's grace
period and queues each again once (RetryHeartbeatStaleTrialCallback), and the dead worker's
runs are stopped by its machine's queue (each run's job names the worker as its owner), so the
failed trial does not train on beside its retry.

A stop (``sweep stop``, or SIGTERM / Ctrl-C to the worker) stops the runs of the trials in flight,
fails those trials and queues each again (same settings) for whoever runs the study next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from atft_core.config import ConfigError
from atft_core.paths import UnsafePathError
from atft_core.run_files import write_json_atomic
from atft_core.runs import launch, queue
from atft_core.runs.store import RunError, RunSummary
from atft_core.sweep.objective import best_so_far, best_value, epoch_values
from atft_core.sweep.space import requested_config, trial_config, trial_values
from atft_core.sweep.spec import StudySpec
from atft_core.sweep.storage import describe_error, open_storage, shown_url, sqlite_path
from atft_core.sweep.trials import (ERROR_ATTR, HOST_ATTR, ORIGIN_ATTR, RUN_ATTR, STOP_ATTR, load, slot_of, spec_of,
                                    workers_dir)

POLL_SECONDS = 1.0
"""How often a trial looks at its run, and an idle worker at the study."""
STOP_CHECK_SECONDS = 5.0
"""How often a trial asks the storage whether the study was stopped."""
FINISHED = ("completed", "early_stopped")


@dataclass
class WorkerReport:
    """What one worker did: its trials, as (number, outcome, run id)."""

    trials: list[tuple[int, str, str | None]] = field(default_factory=list)
    error: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for _, o, _ in self.trials if o == outcome)


class Worker:
    """One worker of study `name` (see the module doc). `say` receives its log lines."""

    def __init__(self, name: str, url: str, runs_dir: Path | str, parallel: int | None = None,
                 poll_seconds: float = POLL_SECONDS, say: Callable[[str], None] = print):
        self.name, self.url, self.runs_dir = name, url, Path(runs_dir)
        self.spec: StudySpec = spec_of(load(name, url))
        self.storage = open_storage(url, self.spec)
        self.study = optuna.load_study(study_name=name, storage=self.storage)
        self.study_id = self.storage.get_study_id_from_name(name)
        self.parallel = parallel or self.spec.parallel
        if not 1 <= self.parallel <= 64:
            raise ConfigError(f"--parallel: 1 to 64 trials at once, got {self.parallel}")
        self.poll_seconds = poll_seconds
        self.owner = queue.this_process(f"sweep worker of {name}")
        self.host = socket.gethostname()
        self.stopping = threading.Event()
        self.report = WorkerReport()
        self._say = say
        self._held: dict[int, int] = {}            # trial id -> number, beating
        self._lock = threading.Lock()             # guards _held
        self._claim_lock = threading.Lock()       # one claim at a time in this worker
        self._claim_file = _claim_file(url)

    # -- the worker's life -------------------------------------------------------------------
    def run(self) -> WorkerReport:
        """Take trials until the study has none waiting or running, or until `stop`."""
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        record = self._register()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(beat_stop,), name="heartbeat", daemon=True)
        beat.start()
        threads = [threading.Thread(target=self._take_trials, name=f"trials-{i}", daemon=True)
                   for i in range(self.parallel)]
        self.say(f"worker {os.getpid()} on {self.host}: study {self.name} ({self.spec.n_trials} trials, "
                 f"{self.parallel} at once) in {shown_url(self.url)}; runs in {self.runs_dir.resolve()}")
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        beat_stop.set()
        beat.join()
        record.unlink(missing_ok=True)
        self.say(f"worker {os.getpid()} done: {len(self.report.trials)} trial(s), " + ", ".join(
            f"{self.report.count(o)} {o}" for o in ("complete", "pruned", "fail") if self.report.count(o)))
        return self.report

    def stop(self) -> None:
        """Stop taking trials; the trials in flight are given back (see the module doc)."""
        self.stopping.set()

    def say(self, message: str) -> None:
        self._say(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")

    def _register(self) -> Path:
        """A record of this worker in the runs folder (the Sweep page lists the live ones)."""
        folder = workers_dir(self.runs_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.host}-{os.getpid()}.json"
        write_json_atomic(path, {**self.owner, "host": self.host, "study": self.name, "storage": shown_url(self.url),
                                 "parallel": self.parallel, "started": time.time()})
        return path

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.spec.heartbeat_seconds):
            with self._lock:
                held = list(self._held)
            for trial_id in held:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # noqa: BLE001 - the database went away: say so, keep trying
                    self.say(f"heartbeat not recorded: {describe_error(exc, self.url)}")

    def _take_trials(self) -> None:
        while not self.stopping.is_set():
            try:
                if self._stop_requested():
                    self.say(f"study {self.name} was stopped; this worker takes no more trials")
                    return
                claimed = self._claim()
                if claimed is None:
                    if self._nothing_left():
                        return
                    self.stopping.wait(self.poll_seconds)
                    continue
                self._run_trial(*claimed)
            except Exception as exc:  # noqa: BLE001 - a storage error: this worker ends, its trials go stale
                self.report.error = describe_error(exc, self.url)
                self.say(f"worker stops: {self.report.error}")
                self.stopping.set()

    # -- taking a trial ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Exclusive among this worker's threads and, on SQLite, among the machine's workers."""
        with self._claim_lock, (_file_lock(self._claim_file) if self._claim_file else contextlib.nullcontext()):
            yield

    def _claim(self) -> tuple[int, int] | None:
        """Fail the stale trials (queueing their retries), then take a waiting trial: (id, number)."""
        with self._turn():
            optuna.storages.fail_stale_trials(self.study)
            for frozen in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, frozen.number)
                # The heartbeat first: a worker killed right after taking the trial has left one to go stale.
                self.storage.record_heartbeat(trial_id)
                try:
                    taken = self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                if taken:
                    with self._lock:
                        self._held[trial_id] = frozen.number
                    return trial_id, frozen.number
        return None

    def _nothing_left(self) -> bool:
        live = self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        return not live

    def _stop_requested(self) -> bool:
        return bool(self.storage.get_study_user_attrs(self.study_id).get(STOP_ATTR))

    # -- running a trial ---------------------------------------------------------------------
    def _run_trial(self, trial_id: int, number: int) -> None:
        study = optuna.load_study(study_name=self.name, storage=self.storage, sampler=make_sampler(self.spec, number),
                                  pruner=make_pruner(self.spec))
        trial = optuna.Trial(study, trial_id)
        try:
            trial.set_user_attr(HOST_ATTR, self.host)
            outcome, run_id = self._train(study, trial, trial_id)
        finally:
            with self._lock:
                self._held.pop(trial_id, None)
        self.report.trials.append((number, outcome, run_id))

    def _train(self, study: optuna.Study, trial: optuna.Trial, trial_id: int) -> tuple[str, str | None]:
        slot = slot_of(self.storage.get_trial(trial_id))
        try:
            values = trial_values(trial, self.spec.space)
            cfg = trial_config(self.spec.base, values)
            run_id = queue.launch_run(
                cfg, self.runs_dir, name=f"{self.name} #{trial.number}", tags=(f"sweep-{self.name}", f"trial-{trial.number}"),
                force=self.spec.force, requested=requested_config(self.spec.base, values),
                info={"sweep": {"study": self.name, "trial": trial.number, "slot": slot, "params": _plain(values),
                                "storage": shown_url(self.url), "host": self.host}},
                owner=self.owner)
        except (ConfigError, RunError, UnsafePathError, OSError) as exc:
            return self._fail(study, trial, f"not launched: {exc}"), None
        trial.set_user_attr(RUN_ATTR, run_id)
        self.say(f"trial {trial.number}: run {run_id} queued ({', '.join(f'{k}={v}' for k, v in _plain(values).items())})")
        return self._follow(study, trial, trial_id, run_id), run_id

    def _follow(self, study: optuna.Study, trial: optuna.Trial, trial_id: int, run_id: str) -> str:
        """Watch the run to its end; report each epoch; prune or give back when it must stop."""
        follow = _Follow(self, trial, run_id)
        next_stop_check = time.monotonic() + STOP_CHECK_SECONDS
        while True:
            try:
                summary = queue.wait_for_runs(self.runs_dir, [run_id], timeout=self.poll_seconds,
                                              on_change=follow.on_change, poll_seconds=self.poll_seconds)[0]
                break
            except TimeoutError:
                pass
            if follow.stop_reason is not None:
                continue
            if self.stopping.is_set():
                follow.stop(f"its sweep worker {os.getpid()} on {self.host} was stopped")
            elif time.monotonic() > next_stop_check:
                next_stop_check = time.monotonic() + STOP_CHECK_SECONDS
                if self._stop_requested():
                    follow.stop(f"sweep {self.name} was stopped")
        follow.on_change(summary)
        return self._record(study, trial, trial_id, run_id, summary, follow)

    def _record(self, study: optuna.Study, trial: optuna.Trial, trial_id: int, run_id: str, summary: RunSummary,
                follow: "_Follow") -> str:
        if summary.status == "pruned":
            trial.set_user_attr(ERROR_ATTR, summary.reason)
            study.tell(trial, state=TrialState.PRUNED)
            self.say(f"trial {trial.number}: pruned ({summary.reason})")
            return "pruned"
        if summary.status in FINISHED:
            value = best_value(epoch_values(self.runs_dir, run_id, self.spec.metric), self.spec.direction)
            if value is None:
                return self._fail(study, trial, f"run {run_id} {summary.status} without logging {self.spec.metric}")
            study.tell(trial, value)
            self.say(f"trial {trial.number}: {self.spec.metric} = {value:.5f} (best epoch; run {summary.status})")
            return "complete"
        if follow.stop_reason is not None:
            return self._give_back(study, trial, trial_id, f"{follow.stop_reason}; queued again")
        return self._fail(study, trial, f"run {run_id} {summary.status}" + (f": {summary.reason}" if summary.reason else ""))

    def _fail(self, study: optuna.Study, trial: optuna.Trial, reason: str) -> str:
        trial.set_user_attr(ERROR_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
        self.say(f"trial {trial.number}: failed: {reason}")
        return "fail"

    def _give_back(self, study: optuna.Study, trial: optuna.Trial, trial_id: int, reason: str) -> str:
        """Fail a trial that was stopped, not beaten, and queue a copy of it (same settings and slot)
        for the next worker. Failed first: a worker dying in between loses the slot's rerun, never
        runs it twice."""
        self._fail(study, trial, reason)
        frozen = self.storage.get_trial(trial_id)
        with self._turn():
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
                system_attrs={**frozen.system_attrs, ORIGIN_ATTR: slot_of(frozen)}))
        return "fail"


class _Follow:
    """What a worker knows while one trial's run trains: the epochs reported, why it stopped it."""

    def __init__(self, worker: Worker, trial: optuna.Trial, run_id: str):
        self.worker, self.trial, self.run_id = worker, trial, run_id
        self.reported = 0
        self.stop_reason: str | None = None

    def on_change(self, summary: RunSummary) -> None:
        """Report the epochs not reported yet (the best value so far); prune when the pruner says so."""
        if (summary.epoch or 0) <= self.reported and summary.live:
            return
        spec = self.worker.spec
        for epoch, best in best_so_far(epoch_values(self.worker.runs_dir, self.run_id, spec.metric), spec.direction):
            if epoch <= self.reported:
                continue
            self.trial.report(best, epoch)
            self.reported = epoch
            if summary.live and self.stop_reason is None and self.trial.should_prune():
                self.prune(epoch, best)

    def prune(self, epoch: int, best: float) -> None:
        spec = self.worker.spec
        reason = (f"pruned by sweep {self.worker.name} after epoch {epoch}: best {spec.metric} so far {best:.5f} is "
                  f"{'below' if spec.direction == 'maximize' else 'above'} the {_pruner_words(spec)} of the finished "
                  "trials at that epoch")
        self.stop_reason = reason
        launch.stop_run(self.worker.runs_dir, self.run_id, outcome="pruned", reason=reason)

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        launch.stop_run(self.worker.runs_dir, self.run_id, reason=reason)


def make_sampler(spec: StudySpec, number: int) -> optuna.samplers.BaseSampler:
    """The study's sampler for trial `number`, seeded with ``spec.seed + number``: reproducible, and
    two workers sampling at the same moment never draw the same settings."""
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed + number)
    # constant_liar: trials still running count as bad, so parallel trials spread out.
    return optuna.samplers.TPESampler(seed=spec.seed + number, constant_liar=True)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.pruner_startup_trials,
                                           n_warmup_steps=spec.pruner_warmup_epochs)
    if spec.pruner == "percentile":
        return optuna.pruners.PercentilePruner(spec.pruner_percentile, n_startup_trials=spec.pruner_startup_trials,
                                               n_warmup_steps=spec.pruner_warmup_epochs)
    return optuna.pruners.NopPruner()


def _pruner_words(spec: StudySpec) -> str:
    return "median" if spec.pruner == "median" else f"{spec.pruner_percentile:g}th percentile"


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _claim_file(url: str) -> Path | None:
    path = sqlite_path(url)
    return None if path is None else path.with_name(path.name + ".claim.lock")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

