"""Where studies live: a SQLite file in the runs folder on one machine, PostgreSQL across machines.

    default_url(runs_dir) -> "sqlite:////abs/runs/.sweeps/studies.db"
    normalise_url(url) -> str          # postgresql://... -> postgresql+psycopg://... (psycopg 3)
    redact(text, url) -> str           # the URL's password (and any copy of it) as ***
    open_storage(url, spec=None) -> optuna.storages.RDBStorage   # one per URL and process without spec

Both are Optuna's RDBStorage, chosen over its JournalStorage file because only RDBStorage keeps
trial heartbeats: a worker killed with ``kill -9`` leaves a running trial whose heartbeat stops,
which `fail_stale_trials` then fails and RetryHeartbeatStaleTrialCallback queues again. (A journal
file would leave that trial running forever.) SQLite serialises writers with file locks, which
holds on one machine's disk, not across machines: there, each machine's workers share one
PostgreSQL database.

A storage URL may carry a password. It is never printed, logged or written to a run folder: what
leaves this module is `redact`ed. Better still, leave it out of the URL and let libpq find it
(PGPASSWORD, ~/.pgpass).
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from atft_core.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from optuna.storages import RDBStorage

    from atft_core.sweep.spec import StudySpec

SWEEP_DIR = ".sweeps"
"""The sweep module's folder in the runs folder (hidden: no run folder)."""
STUDIES_FILE = "studies.db"
SQLITE_TIMEOUT_SECONDS = 60
"""How long a SQLite writer waits for another process's lock before it gives up."""
SHARED_STORAGES = 8
"""Storages (URLs) a process keeps open for reading and writing without heartbeats."""
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2", "postgresql+psycopg3")


class SweepError(ValueError):
    """A study cannot be created, found, run or read; the message names the study or storage
    (never a password)."""


def default_url(runs_dir: Path | str) -> str:
    """The single-machine storage: a SQLite file in the runs folder."""
    return f"sqlite:///{(Path(runs_dir) / SWEEP_DIR / STUDIES_FILE).resolve()}"


def normalise_url(url: str) -> str:
    """The URL SQLAlchemy opens: PostgreSQL always through psycopg 3 (`postgresql+psycopg://`);
    SQLite as given. Anything else is refused (ConfigError naming the scheme, not the URL)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("--storage: expected sqlite:///path/to/file.db or postgresql://user@host:port/database")
    scheme, rest = url.split("://", 1)
    if scheme.lower() in POSTGRES_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    if scheme.lower() == "sqlite":
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ConfigError("--storage: a SQLite storage is a file, sqlite:///path/to/file.db")
        return f"sqlite://{rest}"
    raise ConfigError(f"--storage: {scheme}:// is not supported; use sqlite:///file.db (one machine) or "
                      "postgresql://... (several)")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL)."""
    url = normalise_url(url)
    return Path(unquote(url[len("sqlite:///") - 1:])) if url.startswith("sqlite://") else None


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL: redact by pattern only
        return None
    password = parsed.password
    if password is None:
        password = parsed.query.get("password")
        password = password[0] if isinstance(password, tuple) else password
    return str(password) if password else None


def redact(text: str, url: str) -> str:
    """`text` with `url`'s password replaced by ***, wherever it appears (raw or %-encoded)."""
    password = _password(url)
    if not password:
        return text
    for form in {password, _quote(password)}:
        text = text.replace(form, "***")
    return text


def _quote(password: str) -> str:
    from urllib.parse import quote

    return quote(password, safe="")


def shown_url(url: str) -> str:
    """The URL as it may be shown or stored: password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return redact(make_url(normalise_url(url)).render_as_string(hide_password=True), url)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse
        return redact(url, url).split("@")[-1]


def storage_exists(url: str) -> bool:
    """False for a SQLite file not yet made (so listing studies never creates one)."""
    path = sqlite_path(url)
    return path is None or path.is_file()


def open_storage(url: str, spec: "StudySpec | None" = None) -> "RDBStorage":
    """Optuna's RDBStorage at `url`; with `spec`, heartbeats every ``spec.heartbeat_seconds``, a
    running trial without one for ``spec.grace_seconds`` failed, and retried ``spec.max_retries``
    times. SweepError (password-free) when the database cannot be reached.

    Without `spec` the storage is shared within the process (one per URL): opening one builds an
    engine and checks the schema version, which the Sweep page would otherwise pay on every read
    of every draw. RDBStorage is safe to share between threads (SQLAlchemy's pool)."""
    normalised = normalise_url(url)
    path = sqlite_path(normalised)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if spec is not None:
        return _new_storage(normalised, url, spec)
    if path is None:
        return _shared_storage(normalised, url, None)
    try:
        file = path.stat()
    except FileNotFoundError:   # not made yet: RDBStorage makes it, and the next call shares that one
        return _new_storage(normalised, url, None)
    # A SQLite file is known by its inode too: one deleted and made again is another database,
    # which a pooled connection to the old (unlinked) file would never see.
    return _shared_storage(normalised, url, (file.st_dev, file.st_ino))


@functools.lru_cache(maxsize=SHARED_STORAGES)
def _shared_storage(normalised: str, url: str, identity: tuple[int, int] | None) -> "RDBStorage":
    return _new_storage(normalised, url, None)   # a failure raises, and lru_cache keeps nothing


def _new_storage(normalised: str, url: str, spec: "StudySpec | None") -> "RDBStorage":
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine: dict[str, Any] = ({"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
                              if sqlite_path(normalised) is not None else {"pool_pre_ping": True})
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():   # heartbeats and their retry callback are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat: dict[str, Any] = {} if spec is None else {
                "heartbeat_interval": spec.heartbeat_seconds, "grace_period": spec.grace_seconds,
                "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retries)}
            return RDBStorage(normalised, engine_kwargs=engine, **heartbeat)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy / driver errors of every kind
        raise SweepError(f"cannot open the study storage {shown_url(url)}: {describe_error(exc, url)}") from None


def describe_error(exc: BaseException, url: str) -> str:
    """A database error in one password-free line (SQLAlchemy's text without its SQL and links)."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()
    line = next((t for t in text if t.strip()), type(exc).__name__)
    return redact(f"{type(origin).__name__}: {line.strip()}", url)
