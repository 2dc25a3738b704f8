"""Session state shared by the pages: the data/runs folders and the launch token.

The folders are decided once by app.py (the edge, which may read environment variables) and
kept in st.session_state; pages read them here and never look at the environment.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import streamlit as st

RUN_PAGE = "pages/run.py"
NEW_RUN_PAGE = "pages/new_run.py"


def init(data_dir: str | Path, runs_dir: str | Path) -> None:
    """Remember the folders for this session (the first call wins) and make sure they exist."""
    st.session_state.setdefault("data_dir", str(Path(data_dir).resolve()))
    st.session_state.setdefault("runs_dir", str(Path(runs_dir).resolve()))
    Path(st.session_state["data_dir"]).mkdir(parents=True, exist_ok=True)
    Path(st.session_state["runs_dir"]).mkdir(parents=True, exist_ok=True)


def data_dir() -> Path:
    return Path(st.session_state["data_dir"])


def runs_dir() -> Path:
    return Path(st.session_state["runs_dir"])


def selected_run() -> str | None:
    """The run named by ?run=... or, failing that, the last one opened in this session."""
    return st.query_params.get("run") or st.session_state.get("selected_run")


def open_run(run_id: str) -> None:
    """Go to the Run page of `run_id` (not callable from inside a widget callback)."""
    st.session_state["selected_run"] = run_id
    st.switch_page(RUN_PAGE, query_params={"run": run_id})


def new_submission() -> None:
    """Any change to the form makes a new submission: the next Launch starts a new run."""
    st.session_state["launch_token"] = uuid.uuid4().hex


def launched_run() -> str | None:
    """Run id already started by the current submission (a repeated click reuses it)."""
    token = st.session_state.setdefault("launch_token", uuid.uuid4().hex)
    return st.session_state.setdefault("launched", {}).get(token)


def launch_once(launch: Any, *args: Any, **kwargs: Any) -> None:
    """Button callback: call `launch` at most once per submission token; then go to the run.

    A double click delivers two clicks with the same token: the second finds the run id the
    first one recorded and starts nothing.
    """
    token = st.session_state.setdefault("launch_token", uuid.uuid4().hex)
    done = st.session_state.setdefault("launched", {})
    st.session_state.pop("launch_error", None)
    if token not in done:
        try:
            done[token] = launch(*args, **kwargs)
        except Exception as exc:  # shown on the page: the user must see why nothing started
            st.session_state["launch_error"] = f"{type(exc).__name__}: {exc}"
            return
    st.session_state["goto_run"] = done[token]
