"""Safe handling of the names and paths a user gives: run ids, run names, tags, data files.

Every run lives in ``runs/<run_id>/``. A run id is only ever used after `run_path` has checked
it: a plain name of safe characters (no separators, no ``..``, no leading dot) whose resolved
folder (symlinks followed) is still inside the resolved runs folder. Names and tags never reach
a shell (processes are started from argument lists), but they do become parts of file names
and of the dashboard, so they are reduced to a small safe alphabet here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

RUN_ID_MAX = 128
"""Longest accepted run id (well under any file system's name limit)."""
SLUG_MAX = 40
"""Longest name part inside a generated run id."""
TAG_MAX = 32
"""Longest tag."""
TEXT_MAX = 2000
"""Longest display name or note kept."""

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_UNSAFE_SLUG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class UnsafePathError(ValueError):
    """A user-given name or path is malformed or would escape its allowed folder."""


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is a safe folder name, else raise UnsafePathError saying why."""
    if not isinstance(run_id, str) or not run_id:
        raise UnsafePathError(f"run id must be a non-empty string, got {run_id!r}")
    if len(run_id) > RUN_ID_MAX:
        raise UnsafePathError(f"run id is longer than {RUN_ID_MAX} characters: {run_id[:40]!r}...")
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise UnsafePathError(
            f"run id {run_id!r} may contain only letters, digits, '_', '-', '.' "
            "(no path separators, no '..', no leading dot)"
        )
    return run_id


def within(path: Path, root: Path) -> bool:
    """True if `path` resolves (symlinks followed) to `root` or somewhere below it."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def run_path(runs_dir: Path | str, run_id: str) -> Path:
    """The folder of run `run_id` inside `runs_dir`, refusing anything that escapes it.

    The folder need not exist. A symlinked run folder is accepted only if its target is
    inside `runs_dir` too.
    """
    root = Path(runs_dir).resolve()
    candidate = root / check_run_id(run_id)
    if not candidate.resolve().is_relative_to(root) or candidate.resolve() == root:
        raise UnsafePathError(f"run {run_id!r} resolves to {candidate.resolve()}, outside {root}")
    return candidate


def resolve_within(path: Path | str, roots: Iterable[Path | str], what: str = "path") -> Path:
    """Resolve `path` and return it if it lies inside one of `roots`; else UnsafePathError."""
    resolved = Path(path).expanduser().resolve()
    allowed = [Path(r).expanduser().resolve() for r in roots]
    if any(resolved.is_relative_to(r) for r in allowed):
        return resolved
    listed = ", ".join(str(r) for r in allowed) or "(none configured)"
    raise UnsafePathError(f"{what} {path!r} resolves to {resolved}, outside the allowed folders: {listed}")


def clean_text(text: str, max_len: int = TEXT_MAX) -> str:
    """Display text (names, notes): control characters removed, whitespace trimmed, capped."""
    text = "".join(ch for ch in str(text) if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return text.strip()[:max_len]


def slugify(name: str, max_len: int = SLUG_MAX) -> str:
    """A file-name-safe slug of `name` (ASCII letters, digits, '_', '-', '.'), maybe empty."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    slug = _UNSAFE_SLUG_CHARS.sub("-", ascii_name)
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")
    return slug[:max_len].strip("-._")


def check_tag(tag: str) -> str:
    """Return `tag` stripped if it is a safe tag, else raise UnsafePathError saying why."""
    tag = str(tag).strip()
    if not tag or len(tag) > TAG_MAX or not _TAG.fullmatch(tag):
        raise UnsafePathError(
            f"tag {tag!r}: use 1-{TAG_MAX} letters, digits, '_', '-', '.', ':' (starting with a letter or digit)"
        )
    return tag


DATASET_SUFFIX = ".parquet"


def data_file(data_dir: Path | str, name: str, what: str = "output file") -> Path:
    """The dataset `data_dir/name` for a user-given file name, refusing anything that leaves it.

    `name` must be a plain file name ending in .parquet: no folder part, no '..', no leading
    dot; the resolved path (symlinks followed) must still be inside `data_dir`.
    """
    name = str(name).strip()
    if not name or Path(name).name != name or name in (".", "..") or name.startswith("."):
        raise UnsafePathError(f"{what} {name!r}: give a plain file name such as my_data.parquet, without folders")
    if not name.endswith(DATASET_SUFFIX):
        raise UnsafePathError(f"{what} {name!r}: the dataset must be a {DATASET_SUFFIX} file")
    return resolve_within(Path(data_dir) / name, [data_dir], what)


def data_folder(data_dir: Path | str, name: str, what: str = "folder") -> Path:
    """The folder `data_dir/name` for a user-given folder name (a plain name, no '..'), inside it."""
    name = str(name).strip()
    if not name or Path(name).name != name or name.startswith("."):
        raise UnsafePathError(f"{what} {name!r}: give a plain folder name such as jquants, without '/' or '..'")
    return resolve_within(Path(data_dir) / name, [data_dir], what)
