"""Write side of a study's life outside its workers: create it, stop it.

    create_study(spec, url, runs_dir, probes=None) -> StudySpec
    start_worker(name, url, runs_dir, parallel=None) -> pid    # a detached `sweep run` process
    request_stop(name, url, reason="") -> None     # workers stop their trials and take no more
    clear_stop(name, url) -> None                  # `run` on a stopped study resumes it

`create_study` checks everything first (the spec with its space against RunConfig, the objective,
the name not taken, the pre-flight of the base config for all its trials), then creates the
study with all `spec.n_trials` trials waiting, in one go: a refused study leaves nothing behind,
not even the SQLite file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from atft_core.runs.launch import REPO_ROOT, check_preflight, dataset_path, reap_when_done
from atft_core.sweep.spec import SPEC_ATTR, StudySpec
from atft_core.sweep.storage import SWEEP_DIR, SweepError, open_storage, shown_url, storage_exists
from atft_core.sweep.trials import STOP_ATTR, load

STORAGE_ENV = "ATFT_SWEEP_STORAGE"
"""The environment variable through which `start_worker` hands the storage URL to the worker: a
password in it never shows in the process list, as an argument would."""


def create_study(spec: StudySpec, url: str, runs_dir: Path | str, probes: Any = None) -> StudySpec:
    """Create the study (all its trials waiting) and return the spec as stored (dataset path made
    absolute, so workers started elsewhere find it). SweepError / ConfigError / LaunchError with
    nothing created when the name is taken or a check fails."""
    import optuna

    base = spec.base_config()
    absolute = base.replace(**{"data.path": str(dataset_path(base))})
    spec = StudySpec.from_dict({**spec.to_dict(), "base": {**spec.base, "data": {**spec.base.get("data", {}),
                                                                               "path": absolute.data.path}}})
    if storage_exists(url) and spec.name in _names(url):
        raise SweepError(f"study {spec.name!r} already exists in {shown_url(url)}")
    check_preflight(absolute, Path(runs_dir), spec.force, probes, n_runs=spec.n_trials)
    storage = open_storage(url)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction)
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepError(f"study {spec.name!r} already exists in {shown_url(url)}") from None
    try:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
        for _ in range(spec.n_trials):
            study.enqueue_trial({})
    except BaseException:
        optuna.delete_study(study_name=spec.name, storage=storage)
        raise
    return spec


def _names(url: str) -> set[str]:
    return {s.study_name for s in open_storage(url).get_all_studies()}


def request_stop(name: str, url: str, reason: str = "") -> None:
    """Ask every worker of the study to stop: running trials' runs are stopped and their trials
    queued again; nothing new starts until `clear_stop` (a `run` does it)."""
    study = load(name, url)
    study.set_user_attr(STOP_ATTR, {"at": time.time(), "host": socket.gethostname(),
                                    "reason": reason or "stopped by the user"})


def clear_stop(name: str, url: str) -> None:
    """Let workers take trials again."""
    load(name, url).set_user_attr(STOP_ATTR, None)


def start_worker(name: str, url: str, runs_dir: Path | str, parallel: int | None = None) -> int:
    """Start ``python -m atft_core.sweep run NAME`` detached (it outlives the app); returns its pid.
    Its output goes to ``<runs>/.sweeps/<name>-worker-<time>.log``."""
    runs_dir = Path(runs_dir).resolve()
    load(name, url)   # a missing study is said here, not in a log nobody reads
    log_path = runs_dir / SWEEP_DIR / f"{name}-worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "atft_core.sweep", "--runs-dir", str(runs_dir), "run", name]
    if parallel:
        command += ["--parallel", str(parallel)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env={**os.environ, STORAGE_ENV: url}, start_new_session=True, close_fds=True)
    reap_when_done(proc)
    return proc.pid
