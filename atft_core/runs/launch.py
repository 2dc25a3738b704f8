"""The write side for one run: create its folder, start / stop its trainer, delete it, label it.

    create_run(cfg, runs_dir, name="", tags=(), force=False, requested=None, ...) -> run_id
    start_trainer(runs_dir, run_id, resume=False, env=None) -> launch record
    stop_run(runs_dir, run_id, grace_seconds=..., outcome="stopped", reason="") -> final state
    delete_run(runs_dir, run_id) -> None
    rename_run(runs_dir, run_id, name) -> name
    tag_run(runs_dir, run_id, tag, remove=False) -> tags
    note_run(runs_dir, run_id, text) -> None

Runs are launched and resumed through the queue (`atft_core.runs.queue`), whose dispatcher calls
`start_trainer` when a slot is free. A trainer is
``python -m atft_core.train --config <run>/launch_config.json --run-dir <run>`` (or
``--resume <run>``), started from an argument list (never a shell) in its own session, so that it
outlives whoever started it and `stop` can signal its whole process group. Its pid and start time
(`store.process_start_time`) go to run.json: together they identify the process even after the pid is reused.
The per-run lock (`atft_core.run_files.RunLock`) is taken before anything is written and passed to
the trainer, so a second start of the same run fails with a clear error and writes nothing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from atft_core.config import RunConfig
from atft_core.paths import check_tag, clean_text, resolve_within, run_path, slugify
from atft_core.run_files import (FINAL_STATES, STOP_OUTCOMES, RunFiles, RunFolderBusy, RunLock, read_json,
                                 request_stop, update_status, write_json_atomic)
from atft_core.runs.store import (DEFAULT_RUNS_DIR, LAUNCH_CONFIG, RunError, drop_compacted, process_alive,
                                  process_start_time, run_folder, run_state)
from atft_core.system import preflight, verdict

TRAINER_MODULE = "atft_core.train"
TRAINER_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
"""glibc allocator settings for the trainer (atft_core.allocator applies the same at start-up;
the environment also covers what happens before that)."""
DEFAULT_STOP_GRACE_SECONDS = 60.0
"""How long `stop` waits for the trainer to finish its step and save before SIGKILL."""
KILL_WAIT_SECONDS = 10.0
"""How long to wait for the process to vanish after SIGKILL."""
STARTING_WAIT_SECONDS = 10.0
"""How long `stop` waits for a trainer that is being started right now to record its pid."""
REPO_ROOT = Path(__file__).resolve().parents[2]
"""The trainer runs from here so that it imports this same atft_core."""

_CHILDREN: dict[int, subprocess.Popen] = {}
_INFO_LOCK = threading.Lock()


class LaunchError(RunError):
    """A launch was refused; `items` holds the pre-flight checks (if that is why)."""

    def __init__(self, message: str, items: Sequence[Any] = ()):
        super().__init__(message)
        self.items = list(items)


def new_run_id(name: str = "") -> str:
    """Timestamp + sanitised name + short random suffix, e.g. ``20250101-093000-gat-h64-3f9a1c``."""
    parts = [time.strftime("%Y%m%d-%H%M%S"), slugify(name), secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def check_preflight(cfg: RunConfig, runs_dir: Path, force: bool, probes: Any = None, n_runs: int = 1) -> None:
    """LaunchError (with the checklist) when the pre-flight check fails, or warns without `force`."""
    items = preflight(cfg, runs_dir, probes=probes, n_runs=n_runs)
    result = verdict(items)
    bad = [i for i in items if i.verdict == "fail" or (i.verdict == "warn" and not force)]
    if result == "fail" or (result == "warn" and not force):
        lines = "; ".join(f"{i.name}: {i.verdict} ({i.detail})" for i in bad)
        hint = "" if result == "fail" else " (use force / --force to launch despite warnings)"
        outcome = "failed" if result == "fail" else "has warnings"
        raise LaunchError(f"pre-flight check {outcome}: {lines}{hint}", items)


def create_run(cfg: RunConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR, name: str = "", tags: Iterable[str] = (),
               requested: dict | None = None, *, data_roots: Sequence[Path | str] | None = None,
               run_id: str | None = None, info: Mapping[str, Any] | None = None) -> str:
    """Create ``runs/<id>/`` for `cfg` (state queued, no trainer yet) and return the run id.

    The caller has run the pre-flight (`check_preflight`). Refuses (UnsafePathError / LaunchError,
    nothing written) a dataset outside `data_roots` (if given) or an existing `run_id`.
    `requested` is the config as the user gave it (partial dict), kept in run.json with `info`'s
    fields (a seed group's, a study's).
    """
    tags = list(dict.fromkeys(check_tag(t) for t in tags))
    name = clean_text(name)
    cfg = cfg.replace(**{"data.path": str(dataset_path(cfg, data_roots))})   # the trainer runs elsewhere
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id, files = _make_run_dir(runs_dir, name, run_id)
    try:
        write_json_atomic(files.root / LAUNCH_CONFIG, cfg.to_dict())
        write_json_atomic(files.run_info, {"id": run_id, "name": name, "tags": tags, "note": "",
                                           "created": time.time(), "requested": requested or cfg.to_dict(),
                                           **(info or {})})
        update_status(files, state="queued", epoch=0, epochs_planned=sum(cfg.train.phase_epochs))
    except BaseException as exc:  # whatever failed (full disk, a value JSON cannot hold, Ctrl-C): no orphan folder
        remove_run_dir(files)
        if isinstance(exc, Exception):
            raise LaunchError(f"could not create the run folder {files.root}: {exc}") from exc
        raise
    return run_id


def remove_run_dir(files: RunFiles) -> None:
    """Remove a run folder that a launch created and then could not complete."""
    shutil.rmtree(files.root, ignore_errors=True)


def dataset_path(cfg: RunConfig, data_roots: Sequence[Path | str] | None = None) -> Path:
    """The config's dataset as an absolute path, inside `data_roots` when they are given."""
    path = Path(cfg.data.path).expanduser()
    return resolve_within(path, data_roots, "data.path") if data_roots is not None else path.resolve()


def _make_run_dir(runs_dir: Path, name: str, run_id: str | None) -> tuple[str, RunFiles]:
    for _ in range(1 if run_id else 10):
        candidate = run_id or new_run_id(name)
        root = run_path(runs_dir, candidate)
        try:
            root.mkdir()
        except FileExistsError:
            continue
        return candidate, RunFiles(root)
    if run_id:
        raise LaunchError(f"run {run_id} already exists in {runs_dir}")
    raise LaunchError(f"could not create a unique run folder in {runs_dir}")


# ---------------------------------------------------------------------------------------------
# Trainer processes


def start_trainer(runs_dir: Path | str, run_id: str, resume: bool = False,
                  env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Start the run's trainer detached and return the launch record (pid, start time, command).

    Takes the run's lock first: RunFolderBusy if a trainer holds it, RunError if the run ended
    meanwhile (stopped while queued); either way nothing is written. `env` adds variables to the
    trainer's environment (a slot's CUDA_VISIBLE_DEVICES).
    """
    files = run_folder(runs_dir, run_id)
    with RunLock(files).acquire() as lock:
        status = read_json(files.status) or {}
        if status.get("state") in FINAL_STATES:
            raise RunError(f"run {run_id} is {status['state']}: {status.get('error') or 'nothing to start'}")
        record = _spawn(files, resume, lock, env or {})
        lock.record_holder(record["pid"])
        _record_launch(files, record)
    return record


def _spawn(files: RunFiles, resume: bool, lock: RunLock, env: Mapping[str, str]) -> dict[str, Any]:
    # The child inherits the locked descriptor (same number), so the lock passes to it unbroken.
    held = ["--lock-fd", str(lock.fd)]
    if resume:  # the trainer resumes with the settings saved in the run folder
        command = [sys.executable, "-m", TRAINER_MODULE, "--resume", str(files.root), *held]
    else:
        command = [sys.executable, "-m", TRAINER_MODULE, "--config", str(files.root / LAUNCH_CONFIG),
                   "--run-dir", str(files.root), *held]
    # The child keeps the caller's environment (PATH, ...) plus the allocator settings and the
    # slot's; nothing in atft_core reads these back as configuration.
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, env={**os.environ, **TRAINER_ENV, **env}, start_new_session=True,
                                close_fds=True, pass_fds=(lock.fd,))
    reap_when_done(proc)
    return {"pid": proc.pid, "proc_start_time": process_start_time(proc.pid), "command": command, "env": dict(env),
            "host": socket.gethostname(), "launched": time.time(), "resume": resume}


def reap_when_done(proc: subprocess.Popen) -> None:
    """Collect a child's exit status as soon as it ends, so it never lingers as a zombie (a
    zombie would still answer to its pid)."""
    _CHILDREN[proc.pid] = proc

    def wait() -> None:
        proc.wait()
        _CHILDREN.pop(proc.pid, None)

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()


def update_info(files: RunFiles, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into run.json; returns it."""
    with _INFO_LOCK:
        info = read_json(files.run_info) or {}
        info.update(fields)
        write_json_atomic(files.run_info, info)
        return info


def _record_launch(files: RunFiles, launch: dict[str, Any]) -> None:
    info = read_json(files.run_info) or {}
    history = list(info.get("launches") or []) + [launch]
    update_info(files, pid=launch["pid"], proc_start_time=launch["proc_start_time"],
                command=launch["command"], host=launch["host"], launches=history)


def prepare_resume(files: RunFiles) -> None:
    """Make an ended run queued again, to be resumed from last.pt (the caller holds its lock)."""
    drop_compacted(files)
    files.stop_request.unlink(missing_ok=True)
    update_info(files, pid=None, proc_start_time=None)
    update_status(files, state="queued", pid=None, error=None, ended=None, phase_name="")


def _signal_group(pid: int, sig: int) -> None:
    """Signal the trainer's process group (it leads its own session), or just it if not."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    proc = _CHILDREN.get(pid)
    try:
        if proc is not None:
            proc.wait(timeout=timeout)
        else:
            psutil.Process(pid).wait(timeout=timeout)
        return True
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        return True


def stop_run(runs_dir: Path | str, run_id: str, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS, *,
             outcome: str = "stopped", reason: str = "") -> str:
    """Stop a live run: a queued one at once, a training one with SIGTERM to its process group
    and SIGKILL after `grace_seconds`.

    `outcome` 'pruned' ends it as a pruned sweep trial instead of 'stopped'; `reason` (why it was
    stopped) goes to its status as the error the Run page shows. Returns the run's state
    afterwards (the outcome, unless it had already ended another way).
    """
    if outcome not in STOP_OUTCOMES:
        raise ValueError(f"stop_run: outcome must be one of {STOP_OUTCOMES}, got {outcome!r}")
    files = run_folder(runs_dir, run_id)
    if not run_state(runs_dir, run_id).live:
        return run_state(runs_dir, run_id).status
    pid = _trainer_process(files, outcome, reason)
    if pid is None:
        return run_state(runs_dir, run_id).status
    if outcome != "stopped" or reason:
        request_stop(files, outcome, reason)   # the trainer ends with it: no moment without the reason
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, grace_seconds):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, KILL_WAIT_SECONDS)
        _mark_stopped(files, outcome, reason, f"did not stop within {grace_seconds:g} s of SIGTERM; killed")
    status = read_json(files.status) or {}
    if status.get("state") not in FINAL_STATES:
        _mark_stopped(files, outcome, reason, "exited on SIGTERM without a final status")
    elif status.get("state") == "stopped" and (outcome != "stopped" or reason) and not status.get("error"):
        _mark_stopped(files, outcome, reason, "")   # it stopped before it could read the request
    return run_state(runs_dir, run_id).status


def _mark_stopped(files: RunFiles, outcome: str, reason: str, note: str) -> None:
    update_status(files, state=outcome, ended=time.time(), error="; ".join(e for e in (reason, note) if e) or None)


def _trainer_process(files: RunFiles, outcome: str, reason: str) -> int | None:
    """The pid of the live trainer of a live run; None when there is none, after marking the run
    as `outcome` (with `reason`).

    Without a trainer the run's lock is free: taking it shuts out a dispatcher that would start
    one, while the run is marked stopped. A trainer being started right now holds the lock; its
    pid is in run.json within moments.
    """
    deadline = time.time() + STARTING_WAIT_SECONDS
    while True:
        info = read_json(files.run_info) or {}
        pid, start = info.get("pid"), info.get("proc_start_time")
        if pid is not None and process_alive(pid, start):
            return pid
        try:
            with RunLock(files).acquire():
                if (read_json(files.status) or {}).get("state") not in FINAL_STATES:
                    _mark_stopped(files, outcome, reason, "stopped while queued" if pid is None else "process was already gone")
                return None
        except RunFolderBusy:
            if time.time() > deadline:
                raise RunError(f"run {files.root.name} is being started by another process; try again") from None
            time.sleep(0.05)


def delete_run(runs_dir: Path | str, run_id: str) -> None:
    """Delete a run folder (refused while the run is live)."""
    files = run_folder(runs_dir, run_id)
    summary = run_state(runs_dir, run_id)
    if summary.live:
        raise RunError(f"run {run_id} is {summary.status}; stop it before deleting")
    if files.root.is_symlink():
        files.root.unlink()
        return
    # Rename first so a concurrent reader never lists a half-deleted run.
    trash = files.root.with_name(f".deleted-{run_id}-{secrets.token_hex(3)}")
    os.replace(files.root, trash)
    shutil.rmtree(trash)


def tag_run(runs_dir: Path | str, run_id: str, tag: str, remove: bool = False) -> list[str]:
    """Add (or remove) a tag; returns the run's tags."""
    files = run_folder(runs_dir, run_id)
    tag = check_tag(tag)
    tags = list((read_json(files.run_info) or {}).get("tags") or [])
    if remove:
        tags = [t for t in tags if t != tag]
    elif tag not in tags:
        tags.append(tag)
    return list(update_info(files, tags=tags)["tags"])


def rename_run(runs_dir: Path | str, run_id: str, name: str) -> str:
    """Set the run's display name (control characters removed); returns it. The run id, and so
    its folder, never changes."""
    return str(update_info(run_folder(runs_dir, run_id), name=clean_text(name))["name"])


def note_run(runs_dir: Path | str, run_id: str, text: str) -> None:
    """Set the run's free-text note (control characters removed)."""
    update_info(run_folder(runs_dir, run_id), note=clean_text(text))
