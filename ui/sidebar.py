"""The sidebar every page shares: the runs that are training now, with links to them, the queued
ones with why they wait, the queue's ensemble steps and its recently ended jobs."""

from __future__ import annotations

import streamlit as st

from . import live, state
from .logic import format_seconds

REFRESH_SECONDS = 2


@st.fragment(run_every=REFRESH_SECONDS)
def running_runs() -> None:
    """Refreshes itself; one line and a link per live run: the running ones, then the queued ones
    with why they wait."""
    active = live.running_runs(state.runs_dir())
    running = [r for r in active if r.status == "running"]
    queued = [r for r in active if r.status == "queued"]
    st.caption(f"Running now: {len(running)}" + (f" · queued: {len(queued)}" if queued else ""))
    for run in running:
        epochs = f"epoch {run.epoch or 0}/{run.epochs_planned or '?'}"
        label = f"{run.name or run.id} · {epochs} · {format_seconds(run.duration)}"
        st.page_link(state.RUN_PAGE, label=label, query_params={"run": run.id})
    for run in reversed(queued):   # in submission order
        st.page_link(state.RUN_PAGE, label=f"{run.name or run.id} · queued", query_params={"run": run.id},
                     help=run.phase_name or None)
        if run.phase_name:
            st.caption(run.phase_name)
    steps, ended = live.queue_steps(state.runs_dir())
    for job in steps:
        st.caption(f"{job.name or job.id} · {job.state}: {job.reason or 'queued'}")
    if ended:
        with st.expander("Recently ended jobs"):
            for job in reversed(ended):   # a finished run's job: "done" says it all
                st.caption(f"{job.name or job.run_id or job.id} · {job.state}"
                           + (f": {job.reason}" if job.state != "done" or job.kind != "train" else ""))
