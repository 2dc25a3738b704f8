"""A private PostgreSQL server for tests: Debian's `postgresql` package, a cluster in a temporary
folder, listening on 127.0.0.1 at a free port, stopped and removed afterwards.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user the package
creates (`runuser -u postgres -- ...`, argument lists, no shell). Tests that need it skip, saying
why, when the binaries are absent or no such user exists.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pw!"
"""The test role's password: tests check that it never shows up in output or files."""
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Cluster:
    """A running private server: `url` connects as role `sweep` (with PASSWORD) to database `sweeps`."""

    port: int
    url: str
    url_without_password: str


def binaries() -> Path | None:
    """The newest installed PostgreSQL bin folder (None when the package is not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    """Why no private cluster can be started here (None when one can)."""
    if binaries() is None:
        return "PostgreSQL is not installed (Debian package `postgresql`; ./test.sh installs it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to own the test cluster (initdb refuses root)"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start the cluster as the `postgres` user"
    return None


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], **kwargs) -> None:
    out = subprocess.run(_as_owner(command), capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS, **kwargs)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """Start a throw-away cluster; stop it and delete its folder on exit."""
    bin_dir = binaries()
    assert bin_dir is not None, missing_reason()
    root = Path(tempfile.mkdtemp(prefix="atft-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    (root / "pwfile").write_text("postgres-admin\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, sockets, root / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
              "--auth-host=scram-sha-256", f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--no-sync"])
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t",
              str(START_TIMEOUT_SECONDS), "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
              "start"])
        started = True
        psql = [str(bin_dir / "psql"), "-h", str(sockets), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                "-q"]
        _run([*psql, "-c", f"CREATE ROLE sweep LOGIN PASSWORD '{PASSWORD}'"])
        _run([*psql, "-c", "CREATE DATABASE sweeps OWNER sweep"])
        from urllib.parse import quote

        yield Cluster(port, f"postgresql://sweep:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/sweeps",
                      f"postgresql://sweep@127.0.0.1:{port}/sweeps")
    finally:
        if started:
            subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=START_TIMEOUT_SECONDS)
        shutil.rmtree(root, ignore_errors=True)
