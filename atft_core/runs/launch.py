"""The write side for one run: start, stop, resume and delete its trainer; edit its labels.

    launch_run(cfg, runs_dir, name="", tags=(), force=False, requested=None) -> run_id
    stop_run(runs_dir, run_id, grace_seconds=DEFAULT_STOP_GRACE_SECONDS) -> final state
    resume_run(runs_dir, run_id) -> None
    delete_run(runs_dir, run_id) -> None
    rename_run(runs_dir, run_id, name) -> name
    tag_run(runs_dir, run_id, tag, remove=False) -> tags
    note_run(runs_dir, run_id, text) -> None

A trainer is `python -m atft_core.train --config <run>/launch_config.json --run-dir <run>`
(or `--resume <run>`),
started from an argument list (never a shell) in its own session, so that it outlives the app
and `stop` can signal its whole process group. Its pid and psutil start time go to run.json:
together they identify the process even after the pid is reused.
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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from atft_core.config import RunConfig
from atft_core.paths import check_tag, clean_text, resolve_within, run_path, slugify
from atft_core.run_files import FINAL_STATES, RunFiles, read_json, update_status, write_json_atomic
from atft_core.runs.store import (DEFAULT_RUNS_DIR, LAUNCH_CONFIG, RunError, drop_compacted, process_alive,
                                  run_folder, run_state)
from atft_core.system import preflight, verdict

TRAINER_MODULE = "atft_core.train"
TRAINER_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
"""glibc allocator settings for the trainer (atft_core.allocator applies the same at start-up;
the environment also covers what happens before that)."""
DEFAULT_STOP_GRACE_SECONDS = 60.0
"""How long `stop` waits for the trainer to finish its step and save before SIGKILL."""
KILL_WAIT_SECONDS = 10.0
"""How long to wait for the process to vanish after SIGKILL."""
REPO_ROOT = Path(__file__).resolve().parents[2]
"""The trainer runs from here so that it imports this same atft_core."""

_CHILDREN: dict[int, subprocess.Popen] = {}
_INFO_LOCK = threading.Lock()


class LaunchError(RunError):
    """A launch was refused; `items` holds the pre-flight checks (if that is why)."""

    def __init__(self, message: str, items: Sequence[Any] = ()):
        super().__init__(message)
        self.items = list(items)


def _reap_when_done(proc: subprocess.Popen) -> None:
    """Collect the trainer's exit status as soon as it ends, so it never lingers as a zombie
    (a zombie would still answer to its pid)."""
    def wait() -> None:
        proc.wait()
        _CHILDREN.pop(proc.pid, None)

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()


def new_run_id(name: str = "") -> str:
    """Timestamp + sanitised name + short random suffix, e.g. ``20250101-093000-gat-h64-3f9a1c``."""
    parts = [time.strftime("%Y%m%d-%H%M%S"), slugify(name), secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def _trainer_env() -> dict[str, str]:
    # The child keeps the caller's environment (PATH, threads settings, ...) plus the allocator
    # settings; nothing in atft_core reads these back as configuration.
    return {**os.environ, **TRAINER_ENV}


def _start_trainer(files: RunFiles, config_path: Path | None, resume: bool, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Start the detached trainer; returns the launch record (pid, start time, command)."""
    if resume:  # the trainer resumes with the settings saved in the run folder
        command = [sys.executable, "-m", TRAINER_MODULE, "--resume", str(files.root)]
    else:
        command = [sys.executable, "-m", TRAINER_MODULE, "--config", str(config_path), "--run-dir", str(files.root), *extra]
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, env=_trainer_env(), start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    _reap_when_done(proc)
    try:
        start_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:  # pragma: no cover - our unreaped child always has one
        start_time = None
    return {"pid": proc.pid, "proc_start_time": start_time, "command": command,
            "host": socket.gethostname(), "launched": time.time(), "resume": resume}


def _update_info(files: RunFiles, **fields: Any) -> dict[str, Any]:
    with _INFO_LOCK:
        info = read_json(files.run_info) or {}
        info.update(fields)
        write_json_atomic(files.run_info, info)
        return info


def _record_launch(files: RunFiles, launch: dict[str, Any]) -> None:
    info = read_json(files.run_info) or {}
    history = list(info.get("launches") or []) + [launch]
    _update_info(files, pid=launch["pid"], proc_start_time=launch["proc_start_time"],
                 command=launch["command"], host=launch["host"], launches=history)


def _check_preflight(cfg: RunConfig, runs_dir: Path, force: bool, probes: Any, n_runs: int = 1) -> None:
    items = preflight(cfg, runs_dir, probes=probes, n_runs=n_runs)
    result = verdict(items)
    bad = [i for i in items if i.verdict == "fail" or (i.verdict == "warn" and not force)]
    if result == "fail" or (result == "warn" and not force):
        lines = "; ".join(f"{i.name}: {i.verdict} ({i.detail})" for i in bad)
        hint = "" if result == "fail" else " (use force / --force to launch despite warnings)"
        outcome = "failed" if result == "fail" else "has warnings"
        raise LaunchError(f"pre-flight check {outcome}: {lines}{hint}", items)


def launch_run(cfg: RunConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR, name: str = "",
               tags: Iterable[str] = (), force: bool = False, requested: dict | None = None, *,
               probes: Any = None, data_roots: Sequence[Path | str] | None = None,
               group: dict[str, Any] | None = None) -> str:
    """Create ``runs/<id>/``, start the trainer detached, and return the run id.

    Refuses (LaunchError / UnsafePathError, nothing written) when the dataset lies outside
    `data_roots` (if given) or the pre-flight check fails, or warns without `force`.
    `requested` is the config as the user gave it (partial dict), kept in run.json.
    `group` is for `atft_core.runs.seeds.launch_seeds` only: ``{"id", "name", "size", "after", "ensemble_of"}``.
    """
    tags = list(dict.fromkeys(check_tag(t) for t in tags))
    name = clean_text(name)
    data_path = Path(cfg.data.path).expanduser()
    data_path = resolve_within(data_path, data_roots, "data.path") if data_roots is not None else data_path.resolve()
    # The trainer runs in the repo root: give it an absolute dataset path.
    cfg = cfg.replace(**{"data.path": str(data_path)})
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    group = group or {}
    if not group.get("after"):   # later runs of a seed group were checked with the first, for all of them
        _check_preflight(cfg, runs_dir, force, probes, n_runs=int(group.get("size", 1)))
    run_id, files = _make_run_dir(runs_dir, name)
    extra = []
    if group.get("after"):
        extra += ["--after", str(run_path(runs_dir, group["after"]))]
    if group.get("ensemble_of"):
        extra += ["--ensemble-of", ",".join(group["ensemble_of"])]
    started: dict[str, Any] = {}
    try:
        write_json_atomic(files.root / LAUNCH_CONFIG, cfg.to_dict())
        write_json_atomic(files.run_info, {"id": run_id, "name": name, "tags": tags, "note": "",
                                           "created": time.time(), "requested": requested or cfg.to_dict(),
                                           **({"group": group["id"], "group_name": group["name"]} if group else {})})
        update_status(files, state="queued", epoch=0, epochs_planned=sum(cfg.train.phase_epochs))
        started = _start_trainer(files, files.root / LAUNCH_CONFIG, resume=False, extra=extra)
        _record_launch(files, started)
    except BaseException as exc:  # whatever failed (full disk, a value JSON cannot hold, Ctrl-C): no orphan folder
        _undo_launch(files, started.get("pid"))
        if isinstance(exc, Exception):
            raise LaunchError(f"could not start the trainer for {run_id}: {exc}") from exc
        raise
    return run_id


def _undo_launch(files: RunFiles, pid: int | None) -> None:
    """Kill a trainer that was started for a launch that then failed, and remove its folder."""
    if pid is not None:
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, KILL_WAIT_SECONDS)
    shutil.rmtree(files.root, ignore_errors=True)


def _make_run_dir(runs_dir: Path, name: str) -> tuple[str, RunFiles]:
    for _ in range(10):
        run_id = new_run_id(name)
        root = run_path(runs_dir, run_id)
        try:
            root.mkdir()
        except FileExistsError:
            continue
        return run_id, RunFiles(root)
    raise LaunchError(f"could not create a unique run folder in {runs_dir}")


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
            _CHILDREN.pop(pid, None)
        else:
            psutil.Process(pid).wait(timeout=timeout)
        return True
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        return True


def stop_run(runs_dir: Path | str, run_id: str, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> str:
    """Stop a live run: SIGTERM to its process group, SIGKILL after `grace_seconds`.

    Returns the run's state afterwards (``stopped`` unless it had already ended another way).
    """
    files = run_folder(runs_dir, run_id)
    summary = run_state(runs_dir, run_id)
    if not summary.live:
        return summary.status
    info = read_json(files.run_info) or {}
    pid, start = info.get("pid"), info.get("proc_start_time")
    if pid is None or not process_alive(pid, start):
        note = "stopped before the trainer started" if pid is None else "process was already gone"
        update_status(files, state="stopped", ended=time.time(), error=note)
        return run_state(runs_dir, run_id).status
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, grace_seconds):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, KILL_WAIT_SECONDS)
        update_status(files, state="stopped", ended=time.time(),
                      error=f"did not stop within {grace_seconds:g} s of SIGTERM; killed")
    status = read_json(files.status) or {}
    if status.get("state") not in FINAL_STATES:
        update_status(files, state="stopped", ended=time.time(), error="exited on SIGTERM without a final status")
    return run_state(runs_dir, run_id).status


def resume_run(runs_dir: Path | str, run_id: str) -> None:
    """Relaunch the trainer with ``--resume`` on the run's folder (refused while it is live)."""
    files = run_folder(runs_dir, run_id)
    summary = run_state(runs_dir, run_id)
    if summary.live:
        raise RunError(f"run {run_id} is {summary.status}; stop it before resuming")
    if not files.last_checkpoint.is_file():
        raise RunError(f"run {run_id} has no checkpoints/last.pt to resume from; launch a new run instead")
    drop_compacted(files)
    update_status(files, state="queued", error=None, ended=None)
    _record_launch(files, _start_trainer(files, None, resume=True))


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
    return list(_update_info(files, tags=tags)["tags"])


def rename_run(runs_dir: Path | str, run_id: str, name: str) -> str:
    """Set the run's display name (control characters removed); returns it. The run id, and so
    its folder, never changes."""
    return str(_update_info(run_folder(runs_dir, run_id), name=clean_text(name))["name"])


def note_run(runs_dir: Path | str, run_id: str, text: str) -> None:
    """Set the run's free-text note (control characters removed)."""
    _update_info(run_folder(runs_dir, run_id), note=clean_text(text))
