"""Data page pieces: dataset details, input files (typed or uploaded), output names, runs with
progress, and the fetch -> build hand-over."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from atft_core.data.build import BuildParams, build_dataset
from atft_core.data.errors import DataError
from atft_core.paths import UnsafePathError, data_file, data_folder

from . import charts, live

UPLOAD_TYPES = ["parquet", "csv"]
FETCHED = {"quotes": "daily_quotes", "listed": "listed_info", "index": "topix", "statements": "statements"}
"""Build input -> the file `fetch` writes for it."""


def flash_and_prefill() -> None:
    """Show the message a finished action left, and put paths it chose into the inputs (before
    any widget exists: Streamlit forbids changing a widget's value after it is drawn)."""
    if flash := st.session_state.pop("data_flash", None):
        st.success(flash)
    for key, value in st.session_state.pop("data_prefill", {}).items():
        st.session_state[key] = value


def dataset_details(path: str) -> None:
    """The check summary as the CLI prints it (long lines wrapped), and stocks per day."""
    summary, error = live.dataset_summary(path)
    if summary is None:
        st.error(f"error: {error}")
        return
    st.code(summary.to_text(), language=None, wrap_lines=True)
    st.altair_chart(charts.coverage_chart(live.stocks_per_day(path)))


@dataclass
class InputFile:
    """One input of the build: a path typed in, or an uploaded file (kept in memory)."""

    path: str = ""
    upload: Any = None

    @property
    def label(self) -> str:
        """How messages name it: the typed path, or the upload's own name."""
        return f"'{self.upload.name}' (uploaded)" if self.upload is not None else self.path


def input_file(label: str, key: str) -> InputFile | None:
    """A path typed in, or an upload (which wins); None when neither is given."""
    cols = st.columns(2)
    typed = cols[0].text_input(f"{label}: path", key=f"{key}_path")
    upload = cols[1].file_uploader(f"... or upload {label}", key=f"{key}_upload", type=UPLOAD_TYPES)
    if upload is not None:
        st.caption(f"{label}: uploaded {upload.name} ({upload.size / 1e6:.1f} MB)")
        return InputFile(upload=upload)
    return InputFile(path=typed.strip()) if typed.strip() else None


@contextmanager
def materialized(inputs: dict[str, InputFile | None]) -> Iterator[dict[str, str | None]]:
    """Paths for the inputs while the block runs: uploads are written to a temporary folder
    (one subfolder per input, so two uploads named alike stay apart) that is removed after it.
    A DataError raised inside names the uploads as the user knows them, not by the temp path."""
    with tempfile.TemporaryDirectory(prefix="atft-upload-") as tmp:
        paths, names = {}, {}
        for role, item in inputs.items():
            if item is None or item.upload is None:
                paths[role] = item.path if item else None
                continue
            target = Path(tmp) / role / Path(item.upload.name).name
            target.parent.mkdir()
            target.write_bytes(item.upload.getbuffer())
            paths[role], names[str(target)] = str(target), item.label
        try:
            yield paths
        except DataError as exc:
            message = str(exc)
            for path, label in names.items():
                message = message.replace(path, label)
            raise DataError(message) from None


def build(inputs: dict[str, InputFile | None], out: Path, start: str, end: str, log: Callable[[str], None]):
    """`build_dataset` on the page's inputs (uploads included); returns its DatasetSummary."""
    with materialized(inputs) as paths:
        params = BuildParams(start=start.strip(), end=end.strip())
        return build_dataset(paths["quotes"], paths["listed"], out, paths["index"], params, log=log,
                             statements=paths["statements"])


def output_path(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name` when `name` is a plain .parquet file name inside it; else the error is shown."""
    return _inside(data_file, data_dir, name, "Output file")


def output_folder(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name` for a plain folder name; else the error is shown."""
    return _inside(data_folder, data_dir, name, "Folder")


def _inside(check: Callable[[Path, str, str], Path], data_dir: Path, name: str, what: str) -> Path | None:
    try:
        return check(data_dir, name, what)
    except UnsafePathError as exc:
        st.error(f"error: {exc}")
        return None


def overwrite_confirmed(target: Path | None, key: str) -> bool:
    """True when `target` is new, or exists and the user ticked that it may be replaced."""
    if target is None or not target.exists():
        return True
    return st.checkbox(f"Replace the existing {target.name}", key=f"{key}_overwrite",
                       help="It exists in the data folder; the new file replaces it only once this is ticked.")


def use_fetched(folder: Path) -> None:
    """Point the build inputs at the files `fetch` wrote to `folder`, on the next run."""
    st.session_state["data_prefill"] = {
        f"{role}_path": str(folder / f"{name}{'.csv' if name == 'listed_info' else '.parquet'}")
        for role, name in FETCHED.items()}
    st.session_state["data_flash"] = f"Fetched into {folder}; the build form below now uses those files."


def defaults_of(func: Callable) -> dict[str, Any]:
    """Keyword defaults of a library function (so the page never retypes them)."""
    return {n: p.default for n, p in inspect.signature(func).parameters.items() if p.default is not inspect.Parameter.empty}


def run_with_progress(label: str, work: Callable[[Callable[[str], None]], Any]) -> Any:
    """Run `work(log)` in a status box that lists each log line and names the current stage;
    on failure the box stays open and the error is shown below it, as the CLI prints it."""
    box = st.status(label, expanded=True)

    def log(line: str) -> None:
        box.write(line)
        if line[:1].isdigit() and "/" in line.split(" ", 1)[0]:  # a stage: "3/6 market calendar ..."
            box.update(label=f"{label}: {line}")

    try:
        result = work(log)
    except (DataError, UnsafePathError, OSError) as exc:
        box.update(label=f"{label}: failed", state="error", expanded=True)
        st.error(f"error: {exc}")
        return None
    box.update(label=f"{label}: done", state="complete", expanded=False)
    return result
