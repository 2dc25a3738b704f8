"""The sidebar every page shares: the runs that are training now, with links to them."""

from __future__ import annotations

import streamlit as st

from . import live, state
from .logic import format_seconds

REFRESH_SECONDS = 2


@st.fragment(run_every=REFRESH_SECONDS)
def running_runs() -> None:
    """Refreshes itself; one line and a link per live run."""
    active = live.running_runs(state.runs_dir())
    st.caption(f"Running now: {len(active)}")
    for run in active:
        epochs = f"epoch {run.epoch or 0}/{run.epochs_planned or '?'}"
        label = f"{run.name or run.id} · {run.status} · {epochs} · {format_seconds(run.duration)}"
        st.page_link(state.RUN_PAGE, label=label, query_params={"run": run.id})
