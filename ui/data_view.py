"""Data page pieces: dataset details, saving uploads, running a build or demo with progress."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from atft_core.paths import UnsafePathError, data_file

from . import charts, live


def dataset_details(path: str) -> None:
    """The check summary as the CLI prints it, and the stocks-per-day coverage chart."""
    summary, error = live.dataset_summary(path)
    if summary is None:
        st.error(f"error: {error}")
        return
    st.code(summary.to_text(), language=None)
    st.altair_chart(charts.coverage_chart(live.stocks_per_day(path)))


def output_path(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name` when `name` is a plain .parquet file name inside it; else the error is shown."""
    try:
        return data_file(data_dir, name, "Output file")
    except UnsafePathError as exc:
        st.error(f"error: {exc}")
        return None


def input_file(label: str, key: str, required: bool = True) -> str | None:
    """A path typed in, or an uploaded file saved to a temp folder; returns the path or None."""
    cols = st.columns(2)
    typed = cols[0].text_input(f"{label}: path", key=f"{key}_path")
    upload = cols[1].file_uploader(f"... or upload {label}", key=f"{key}_upload", type=["parquet", "csv"])
    if upload is not None:
        folder = Path(tempfile.mkdtemp(prefix="atft-upload-"))
        target = folder / Path(upload.name).name
        target.write_bytes(upload.getbuffer())
        return str(target)
    if typed.strip():
        return typed.strip()
    return None if not required else ""


def defaults_of(func: Callable) -> dict[str, Any]:
    """Keyword defaults of a library function (so the page never retypes them)."""
    return {n: p.default for n, p in inspect.signature(func).parameters.items() if p.default is not inspect.Parameter.empty}


def run_with_progress(label: str, work: Callable[[Callable[[str], None]], Any]) -> Any:
    """Run `work(log)` inside a status box that shows each log line; DataError shown like the CLI."""
    from atft_core.data.errors import DataError

    with st.status(label, expanded=True) as box:
        try:
            result = work(box.write)
        except DataError as exc:
            box.update(label=f"{label}: failed", state="error")
            st.error(f"error: {exc}")
            return None
        box.update(label=f"{label}: done", state="complete")
    return result
