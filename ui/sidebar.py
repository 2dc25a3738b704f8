"""The sidebar every page shares: the runs that are training now, with links to them, the queued
ones with why they wait, the queue's ensemble steps and its recently ended jobs."""

from __future__ import annotations

import streamlit as st

from atft_core.runs.queue import keep_dispatching

from . import live, state
from .logic import format_seconds

REFRESH_SECONDS = 2


def running_runs(refresh: bool = True) -> None:
    """One line and a link per live run: the running ones, then the queued ones with why they
    wait; every REFRESH_SECONDS when `refresh`, else drawn once per page run.

    A page that switches pages from the server (`st.switch_page`: New run, after Launch) must
    pass refresh=False: Streamlit 1.67 runs a refresh that was on its way during the switch with
    the old page's id, and the browser goes blank ("Bad delta path index").
    """
    (_refreshing if refresh else _runs)()


@st.fragment(run_every=REFRESH_SECONDS)
def _refreshing() -> None:
    keep_dispatching(state.runs_dir())   # a killed dispatcher comes back while a page is only watched
    _runs()


def _runs() -> None:
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
