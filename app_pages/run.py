"""Run: follow one run live (status, charts, log, config, checkpoints), stop or resume it,
manage it, evaluate it when done. Baselines and ensembles get a page of their own kind
(`ui.baseline_view`).

While any run is live the page refreshes every REFRESH_SECONDS; when any run's state changes
(one starts, ends, appears or goes) the whole page is drawn again, so the run selector, the
buttons and the evaluation always match the Status shown.
"""

import streamlit as st

from atft_core import runs
from atft_core.runs import launch
from ui import baseline_view, evaluation_view, live, run_manage, run_view, state

REFRESH_SECONDS = 2
LOG_LINES = 40
ROLLING_DAYS = 20

st.title("Run")
runs_dir = state.runs_dir()
all_runs = runs.list_runs(runs_dir, compact=False)
run_manage.flash()
if not all_runs:
    st.info("No runs yet.")
    st.page_link(state.NEW_RUN_PAGE, label="Start one on the New run page")
    st.stop()
run_id = run_view.pick_run(all_runs, state.selected_run(), runs_dir)
if run_id is None:
    st.stop()
state.remember_run(run_id)
states = {r.id: r.status for r in all_runs}
summary = next(r for r in all_runs if r.id == run_id)


@st.fragment(run_every=REFRESH_SECONDS if any(r.live for r in all_runs) else None)
def live_part() -> None:
    now = runs.list_runs(runs_dir, compact=False)
    if {r.id: r.status for r in now} != states:  # a run started, ended, appeared or went
        st.rerun()
    current = next(r for r in now if r.id == run_id)
    run_view.status(current)
    run_view.actions(runs_dir, current)
    run_view.live_charts(live.metrics(runs_dir, [run_id]))
    run_view.log_tail(runs_dir, current, LOG_LINES)
    st.subheader("Config as run")
    run_view.config_section(runs_dir, run_id)
    st.subheader("Checkpoints")
    run_view.checkpoints(runs_dir, run_id)


if baseline_view.evaluation_only(summary):   # baselines and ensembles
    baseline_view.page(runs_dir, run_id, ROLLING_DAYS, REFRESH_SECONDS, LOG_LINES,
                       stop=lambda: launch.stop_run(runs_dir, run_id))
else:
    live_part()
    if not summary.live:
        st.subheader("Evaluation of the best checkpoint")
        evaluation_view.evaluation(runs_dir, run_id, ROLLING_DAYS)
        run_view.feature_weights(runs_dir, run_id)
run_view.predictions_downloads(runs_dir, run_id)
with st.expander("Manage: rename, tag, note, new run from this one, delete"):
    run_manage.manage(runs_dir, summary)
