"""Session state shared by the pages: the data/runs folders and the launch token.

The folders are decided once by app.py (the edge, which may read environment variables) and
kept in st.session_state; pages read them here and never look at the environment.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

RUN_PAGE = "app_pages/run.py"
NEW_RUN_PAGE = "app_pages/new_run.py"
SWEEP_PAGE = "app_pages/sweep.py"


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
    """Go to the Run page of `run_id` (not callable from inside a widget callback).

    Only from a page with no self-refreshing fragment (New run): Streamlit 1.67 runs a refresh
    queued during the switch with the old page's id and the browser goes blank (see
    docs/architecture.md). Elsewhere link with `st.page_link(..., query_params=...)`."""
    st.session_state["selected_run"] = run_id
    st.switch_page(RUN_PAGE, query_params={"run": run_id})


def new_submission() -> None:
    """Deliberately allow another launch of the same settings (a new submission)."""
    st.session_state["launch_nonce"] = uuid.uuid4().hex


def submission_key(*parts: Any) -> str:
    """Idempotency key of one submission: the settings as shown plus a per-session nonce.

    A double click sends the same settings twice, so the key repeats and nothing new starts;
    any change of a setting, or `new_submission`, gives a new key.
    """
    nonce = st.session_state.setdefault("launch_nonce", uuid.uuid4().hex)
    text = json.dumps([nonce, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def launched_run(key: str) -> str | None:
    """Run id already started by submission `key`, if any."""
    return st.session_state.setdefault("launched", {}).get(key)


def launch_once(key: str, launch: Any, *args: Any, **kwargs: Any) -> tuple[str | None, str | None]:
    """Call `launch` at most once per submission key; return (run_id, error text).

    The id is recorded right after `launch` returns, with no Streamlit call in between, so a
    rerun interrupted by a second click cannot lose it.
    """
    done = st.session_state.setdefault("launched", {})
    if key not in done:
        try:
            done[key] = launch(*args, **kwargs)
        except Exception as exc:  # shown on the page: the user must see why nothing started
            return None, f"{type(exc).__name__}: {exc}"
    return done[key], None


def remember_run(run_id: str) -> None:
    """Make `run_id` the session's run and the page's ?run=..., so a reload shows it again."""
    st.session_state["selected_run"] = run_id
    st.query_params["run"] = run_id
