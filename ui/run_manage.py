"""The Run page's *Manage* section: rename, tag and note a run, start a new run from its
settings, delete it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from atft_core import runs
from atft_core.config import ConfigError
from atft_core.runs import ENSEMBLE_KIND, launch
from atft_core.paths import UnsafePathError
from atft_core.run_files import read_json

from . import form, state
from .logic import tag_changes

FROM_PARAM = "from"
"""New run's query parameter naming the run whose settings fill the form (?from=<run id>)."""
FLASH = "run_flash"
"""Session-state key of the message shown once after an action on the Run page."""


def flash() -> None:
    """Show (once) what the last action did."""
    if message := st.session_state.pop(FLASH, None):
        st.success(message)


def manage(runs_dir: Path, summary: runs.RunSummary) -> None:
    """Name, tags and note (one Save), "New run from this one", and Delete (not while live)."""
    with st.form(f"labels_{summary.id}"):
        cols = st.columns([1, 1])
        name = cols[0].text_input("Name", value=summary.name)
        tags = cols[1].text_input("Tags (comma-separated)", value=", ".join(summary.tags))
        note = st.text_area("Note", value=summary.note, height=80)
        if st.form_submit_button("Save name, tags and note"):
            _save_labels(runs_dir, summary, name, tags, note)
    cols = st.columns(2)
    with cols[0]:
        _new_run_from(runs_dir, summary)
    with cols[1]:
        _delete(runs_dir, summary)


def _save_labels(runs_dir: Path, summary: runs.RunSummary, name: str, tags: str, note: str) -> None:
    add, remove = tag_changes(summary.tags, tags)
    try:
        launch.rename_run(runs_dir, summary.id, name)
        for tag in remove:
            launch.tag_run(runs_dir, summary.id, tag, remove=True)
        for tag in add:
            launch.tag_run(runs_dir, summary.id, tag)
        launch.note_run(runs_dir, summary.id, note)
    except (runs.RunError, UnsafePathError) as exc:
        st.error(f"Not saved: {exc}")
        return
    st.session_state[FLASH] = f"Saved the name, tags and note of {summary.id}."
    st.rerun()


def _new_run_from(runs_dir: Path, summary: runs.RunSummary) -> None:
    """A link to New run with the run's settings in the form (`prefill_from`, read there).

    A link, not a button that switches pages from the server: `st.switch_page` while this page's
    live fragment has an auto-refresh on its way lets Streamlit 1.67 run that stale refresh with
    this page's id after the switch, and the browser goes blank ("Bad delta path index").
    """
    if summary.model_kind == ENSEMBLE_KIND:
        st.caption("An ensemble has no settings of its own to start a new run from.")
        return
    st.page_link(state.NEW_RUN_PAGE, label="New run from this one", query_params={FROM_PARAM: summary.id},
                 icon=":material/content_copy:", help="Open New run with this run's settings in the form")


def prefill_from(runs_dir: Path, data_dir: Path, run_id: str) -> tuple[str, str]:
    """Load run `run_id`'s requested settings, name and tags into the New run form; returns
    (what the page says about it, an error instead). Seed-group tags are left out."""
    try:
        files = runs.run_folder(runs_dir, run_id)
    except (runs.RunError, UnsafePathError) as exc:
        return "", f"Cannot start from run {run_id!r}: {exc}"
    summary = runs.run_state(runs_dir, run_id)
    if summary.model_kind == ENSEMBLE_KIND:
        return "", f"Run {run_id} is an ensemble: it has no settings of its own to start a new run from."
    saved, info = read_json(files.config) or {}, read_json(files.run_info) or {}
    requested = saved.get("requested") or info.get("requested") or saved.get("config") or {}
    try:
        form.prefill(requested, name=summary.name, tags=[t for t in summary.tags if not t.startswith("seeds-")])
    except ConfigError as exc:
        return "", f"The settings of run {run_id} are not a valid config today: {exc}"
    dataset = Path(str((requested.get("data") or {}).get("path", ""))).name
    missing = dataset and dataset not in {Path(p).name for p in form.dataset_paths(data_dir)}
    return (f"The form holds the settings of run {run_id}"
            + (f" (its dataset {dataset} is not in the data folder: choose one)" if missing else "")
            + ": change what you want and launch."), ""


def _delete(runs_dir: Path, summary: runs.RunSummary) -> None:
    """Delete the run folder after a confirmation (refused while the run is live)."""
    if summary.live:
        st.caption("Stop the run before deleting it.")
        return
    sure = st.checkbox(f"Delete {summary.id}, its checkpoints and predictions", key=f"delete_confirm_{summary.id}")
    if st.button("Delete run", disabled=not sure, key=f"delete_{summary.id}"):
        try:
            launch.delete_run(runs_dir, summary.id)
        except runs.RunError as exc:
            st.error(str(exc))
            return
        st.session_state[FLASH] = f"Deleted run {summary.id}."
        st.session_state.pop("selected_run", None)
        st.query_params.clear()
        st.rerun()
