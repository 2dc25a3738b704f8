"""Run: follow one run live (status, charts, log), stop or resume it, evaluate it when done."""

import streamlit as st

from atft_core import runs
from atft_core.runs import ENSEMBLE_KIND, launch
from ui import baseline_view, evaluation_view, live, run_view, state

REFRESH_SECONDS = 2
LOG_LINES = 40
ROLLING_DAYS = 20

st.title("Run")
runs_dir = state.runs_dir()
all_runs = runs.list_runs(runs_dir, compact=False)
if not all_runs:
    st.info("No runs yet.")
    st.page_link(state.NEW_RUN_PAGE, label="Start one on the New run page")
    st.stop()
ids = [r.id for r in all_runs]
wanted = state.selected_run()
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0,
                      format_func=lambda i: next(f"{r.name or r.id} ({r.id}, {r.status})" for r in all_runs if r.id == i))
st.session_state["selected_run"] = run_id
st.query_params["run"] = run_id
opened = runs.run_state(runs_dir, run_id)
page_live = opened.live
if baseline_view.evaluation_only(opened):   # baselines and ensembles
    baseline_view.page(runs_dir, run_id, ROLLING_DAYS, REFRESH_SECONDS, LOG_LINES,
                       stop=lambda: launch.stop_run(runs_dir, run_id))
    st.stop()


@st.fragment(run_every=REFRESH_SECONDS if page_live else None)
def live_part() -> None:
    summary = runs.run_state(runs_dir, run_id)
    if summary.live != page_live:  # started or finished: redraw the page once (evaluation, buttons)
        st.rerun()
    run_view.status(summary)
    cols = st.columns(6)
    if summary.live and cols[0].button("Stop", key="stop"):
        with st.spinner("Stopping (the trainer saves last.pt first)..."):
            launch.stop_run(runs_dir, run_id)
        st.rerun()
    resumable = summary.model_kind != ENSEMBLE_KIND    # an ensemble trained nothing of its own
    if not summary.live and resumable and cols[0].button("Resume", key="resume"):
        try:
            launch.resume_run(runs_dir, run_id)
            st.rerun()
        except runs.RunError as exc:
            st.error(str(exc))
    run_view.live_charts(live.metrics(runs_dir, [run_id]))
    with st.expander("Log tail", expanded=summary.status in ("failed", "crashed")):
        st.code(runs.log_tail(runs_dir, run_id, LOG_LINES) or "(no log yet)", language=None)


live_part()
if not page_live:
    st.subheader("Evaluation of the best checkpoint")
    evaluation_view.evaluation(runs_dir, run_id, ROLLING_DAYS)
    run_view.feature_weights(runs_dir, run_id)
st.subheader("Config as run")
run_view.config_section(runs_dir, run_id)
st.subheader("Checkpoints")
run_view.checkpoints(runs_dir, run_id)
