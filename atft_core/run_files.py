"""The files of one run folder and how they are written safely.

A run folder holds ``config.json`` (effective config + resolved facts), ``run.json`` (id,
name, tags, note, pid and process start time, requested config), ``status.json`` (state,
heartbeat), ``metrics.jsonl`` (append-only long-format metrics), ``train.log`` and
``checkpoints/``; a finished run adds ``predictions.parquet`` and, for the deep model,
``feature_weights.json`` (the encoder's mean variable-selection weight per input). JSON files
are written atomically (temp file + rename) so a reader never sees half a file (the trainer's
`StatusFile` rewrites status.json on every heartbeat); each metric line is written whole in one
``write`` and flushed, so a reader can at worst see a torn *last* line, which DuckDB is told to
skip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RUN_STATES = ("queued", "running", "completed", "early_stopped", "stopped", "pruned", "failed", "crashed", "broken")
"""`crashed` and `broken` are never written by a trainer: readers infer them (crashed: the process
is gone without a final state; broken: status.json is unreadable and no process claims the run).
`pruned` is a sweep trial stopped because it could not beat the others (`atft_core.sweep`)."""
FINAL_STATES = ("completed", "early_stopped", "stopped", "pruned", "failed")
STOP_OUTCOMES = ("stopped", "pruned")
"""What a stop request (`request_stop`) may end a run as."""
DYING_HOLDER_WAIT_SECONDS = 10.0
"""How long taking a run's lock waits for a holder that is already dying to let go."""
LOCK_FILE = ".trainer.lock"
"""Held (flock) by the one trainer of a run folder for its whole life, and by whoever is about to
start one; the kernel releases it when the holder exits, however it exits."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def run_info(self) -> Path:
        return self.root / "run.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.parquet"

    @property
    def feature_weights(self) -> Path:
        return self.root / "feature_weights.json"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def stop_request(self) -> Path:
        return self.root / "stop_request.json"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock (a trainer trains it, or is being started)."""


class RunLock:
    """The per-run lock: an exclusive `flock` on ``<run>/.trainer.lock``.

    Taken without waiting (`acquire` raises RunFolderBusy naming the holder's pid). The launcher
    takes it before it writes anything and hands the locked descriptor to the trainer it starts
    (`fd`, inherited), so the lock is held without a gap from the check to the trainer's exit;
    a trainer started by hand takes it itself. Two trainers can never share a run folder.
    """

    def __init__(self, files: RunFiles, fd: int | None = None):
        """`fd`: an inherited descriptor that already holds the lock (checked to be this file's)."""
        self.files = files
        self.fd = fd
        if fd is not None and not _same_file(fd, files.lock):
            raise RunFolderBusy(f"descriptor {fd} does not hold {files.lock}")

    def acquire(self) -> "RunLock":
        """Take the lock now; RunFolderBusy if a live process holds it. A holder that is dying
        (a killed trainer whose threads are still exiting keeps its descriptors a moment after
        its main thread is a zombie) is waited for, up to `DYING_HOLDER_WAIT_SECONDS`."""
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + DYING_HOLDER_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            holder = self.holder()
            if holder is None or not _dying(holder) or time.monotonic() > deadline:
                os.close(fd)
                raise RunFolderBusy(f"run {self.files.root.name} is in use by process {holder or '?'} "
                                    f"(it holds {self.files.lock})")
            time.sleep(0.05)

    def record_holder(self, pid: int) -> None:
        """Write the pid of the process that keeps the lock (for the loser's message; on a full
        disk the message goes without it)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(pid).encode(), 0)

    def holder(self) -> int | None:
        try:
            return int(self.files.lock.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """Close this process's descriptor (a trainer that inherited it keeps the lock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _dying(pid: int) -> bool:
    """The process is gone or a zombie (its other threads may still be exiting)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def finite_or_none(value: Any) -> float | None:
    """JSON has no NaN/Infinity: non-finite numbers are written as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to a temp file in the same folder, fsync, then rename over `path`.

    On any failure the temp file is removed and `path` keeps what it held before; an OSError
    names `path` (a failed ``write`` alone does not say which file it was).
    """
    path = Path(path)
    # Unique per process and thread: two writers of one file must not share (and rename) one temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON atomically (`write_bytes_atomic`). The text is made first, so a value JSON
    cannot hold (NaN, infinity) raises ValueError before any file is touched."""
    write_bytes_atomic(path, json.dumps(payload, indent=2, allow_nan=False, default=str).encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON object, or None if the file is missing or unreadable."""
    try:
        with open(path) as fh:
            value = json.load(fh)
    except (OSError, ValueError):  # ValueError: invalid JSON or not UTF-8
        return None
    return value if isinstance(value, dict) else None


def read_problem(path: Path) -> str:
    """Why `read_json(path)` gives None: 'is missing', 'is not valid JSON (...)', 'cannot be read (...)'."""
    try:
        with open(path) as fh:
            value = json.load(fh)
    except FileNotFoundError:
        return "is missing"
    except json.JSONDecodeError as exc:
        return f"is not valid JSON ({exc})"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read ({exc.strerror or exc})" if isinstance(exc, OSError) else f"is not text ({exc})"
    return "" if isinstance(value, dict) else f"holds a {type(value).__name__}, not an object"


def request_stop(files: RunFiles, outcome: str, reason: str) -> None:
    """Say how the trainer about to be stopped should end (`stop_outcome`): as `outcome` (one of
    STOP_OUTCOMES), with `reason` as its error. Written before the trainer is signalled."""
    if outcome not in STOP_OUTCOMES:
        raise ValueError(f"a stop ends a run as one of {STOP_OUTCOMES}, got {outcome!r}")
    write_json_atomic(files.stop_request, {"outcome": outcome, "reason": reason, "at": time.time()})


def stop_outcome(files: RunFiles) -> tuple[str, str | None]:
    """(final state, error) of a trainer that was stopped: what `request_stop` asked for, else
    ('stopped', None)."""
    request = read_json(files.stop_request) or {}
    outcome = request.get("outcome") if request.get("outcome") in STOP_OUTCOMES else "stopped"
    return outcome, (str(request["reason"]) if request.get("reason") else None)


def update_status(files: RunFiles, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json (atomically), stamping `updated`; returns the new status."""
    status = read_json(files.status) or {}
    status.update(fields)
    status["updated"] = time.time()
    write_json_atomic(files.status, status)
    return status


RESERVE_BYTES = 64 * 1024
"""Disk kept for the final status (a file of this size beside status.json while the trainer
works): a run that fills its disk frees it to record why it failed."""


def describe_os_error(exc: OSError, where: Path) -> str:
    """A full disk or quota as the user should read it: what ran out and where (`where` when the
    error names no file); any other OSError as Python words it."""
    place = exc.filename or where
    if exc.errno == errno.ENOSPC:
        return f"no space left on {place}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded on {place}"
    return f"{type(exc).__name__}: {exc}"


class StatusFile:
    """status.json of a run as its trainer keeps it: one in-memory dict, written atomically by the
    training loop and by a heartbeat thread (every `heartbeat_seconds`) while the trainer works.

    It also keeps the run's clocks: `started` is the first start (kept on resume) and
    `active_seconds` the training time summed over every launch (`training_started` /
    `training_stopped` bracket this launch's share)."""

    def __init__(self, files: RunFiles, heartbeat_seconds: float):
        self._files = files
        self._lock = threading.Lock()
        self._status: dict[str, Any] = read_json(files.status) or {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_seconds,), daemon=True)
        self._active_since: float | None = None
        self._active_before = 0.0
        self._failed_write = ""

    @property
    def _reserve(self) -> Path:
        return self._files.root / ".status.reserve"

    def get(self, key: str, default: Any = None) -> Any:
        """A field as last set (or as found in status.json when the trainer started)."""
        with self._lock:
            return self._status.get(key, default)

    def note(self, **fields: Any) -> None:
        """Change fields without writing: the next heartbeat or `set` writes them (step progress
        changes every step; status.json is rewritten once per heartbeat, not per step)."""
        with self._lock:
            self._status.update(fields)

    def set(self, **fields: Any) -> None:
        """Change fields and write status.json now (OSError if it cannot be written)."""
        with self._lock:
            self._status.update(fields)
            self._status["updated"] = time.time()
            if self._active_since is not None:
                self._status["active_seconds"] = self._active_before + time.time() - self._active_since
            write_json_atomic(self._files.status, self._status)

    def finish(self, **fields: Any) -> None:
        """The final status. On a full disk the reserve is released for it; if it still cannot be
        written, status.json keeps its previous content and the reason goes to the log."""
        try:
            self.set(**fields)
        except OSError:
            self._release_reserve()
            try:
                self.set(**fields)
            except OSError as exc:
                log.error("status.json not written (%s); the run ended %s: %s",
                          describe_os_error(exc, self._files.status), fields.get("state"), fields.get("error") or "")

    def warn(self, message: str, topic: str = "") -> None:
        """Log a warning and keep it in status.json's "warnings" (the Run page shows them).
        A warning starting with `topic` replaces an earlier one on that topic (one line per
        problem, the latest figures), and an identical one is kept once."""
        log.warning(message)
        with self._lock:
            kept = [w for w in self._status.get("warnings", []) if w != message and not (topic and w.startswith(topic))]
            self._status["warnings"] = [*kept, message]
        self.set()

    def training_started(self) -> None:
        """Start this launch's training clock; `active_seconds` goes on from earlier launches."""
        with self._lock:
            self._active_before = float(self._status.get("active_seconds") or 0.0)
            self._active_since = time.time()

    def training_stopped(self) -> None:
        """Stop this launch's clock (the next write records the total)."""
        with self._lock:
            if self._active_since is not None:
                self._status["active_seconds"] = self._active_before + time.time() - self._active_since
            self._active_since = None

    def start(self) -> None:
        """Start the heartbeat, and set aside the reserve for the final status."""
        with contextlib.suppress(OSError):
            write_bytes_atomic(self._reserve, bytes(RESERVE_BYTES))
        self._thread.start()

    def close(self) -> None:
        """Stop the heartbeat (waiting for a write in progress, so no stale write follows the final
        status) and give back the reserve."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._release_reserve()

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self._reserve.unlink(missing_ok=True)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.set()
            except OSError as exc:  # a full disk: the training loop's next write fails and says so
                if str(exc) != self._failed_write:
                    self._failed_write = str(exc)
                    log.warning("heartbeat: status.json not written: %s", describe_os_error(exc, self._files.status))


class MetricsWriter:
    """Append-only writer of ``metrics.jsonl`` in long format, one whole line per metric.

    Each line: ``{"epoch", "step", "phase", "wall_time", "name", "value"}`` with `value` a
    finite float or null. The file is opened in append mode so a resumed run continues it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = open(self.path, "a", buffering=1)

    def log(self, *, epoch: int, step: int, phase: int, values: dict[str, Any]) -> None:
        """Write one line per (name, value); each line in a single write, then flush. An OSError
        (a full disk) names this file."""
        now = time.time()
        try:
            for name, value in values.items():
                line = json.dumps(
                    {"epoch": int(epoch), "step": int(step), "phase": int(phase), "wall_time": now,
                     "name": str(name), "value": finite_or_none(value)},
                    allow_nan=False,
                )
                self._fh.write(line + "\n")
            self._fh.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(OSError):  # the error in flight (a full disk) says more than this one
            self.close()
