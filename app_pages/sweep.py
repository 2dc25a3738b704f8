"""Sweep: define a study over RunConfig fields (a range or a list each, over the base config of the
New run form), launch it with a worker, watch its trials arrive live, compare the best ones."""

import streamlit as st

from atft_core.config import ConfigError, RunConfig
from atft_core.runs import queue
from atft_core.runs.launch import LaunchError
from atft_core.sweep import trials
from atft_core.sweep.storage import SweepError
from atft_core.sweep.study import create_study, request_stop, start_worker
from atft_core.system import preflight, verdict
from ui import form, live, state, sweep_view, views

REFRESH_SECONDS = 2
WATCH, NEW = "Watch a study", "New study"
FRESH_VIEW_KEY = "_sweep_fresh_view"

st.title("Sweep")
runs_dir = state.runs_dir()
url = sweep_view.storage_url(runs_dir)
try:
    names = trials.study_names(url)
except (SweepError, ConfigError) as exc:
    st.error(str(exc))
    st.stop()
if created := st.session_state.pop("sweep_created", None):   # set before the widgets that show it
    st.session_state["sweep_mode"], st.session_state[sweep_view.STUDY_KEY] = WATCH, created
elif (asked := st.query_params.get("study")) in names and sweep_view.STUDY_KEY not in st.session_state:
    st.session_state[sweep_view.STUDY_KEY] = asked
mode = st.radio("Sweep page", [WATCH, NEW], index=0 if names else 1, horizontal=True, key="sweep_mode",
                label_visibility="collapsed")

if mode == NEW:
    datasets = form.dataset_paths(state.data_dir())
    form.restore(datasets, page="sweep")
    st.subheader("Base config")
    st.caption("The New run form: its values are the base of every trial (and are kept between the two pages).")
    cfg = form.config_form(datasets)
    st.subheader("Search space")
    params, problems = sweep_view.space_editor(cfg or RunConfig())
    st.subheader("Study")
    slots = queue.read_slots(runs_dir)
    settings = sweep_view.study_settings(slots.cpu)
    spec, force = None, False
    if cfg is not None and params and not problems and settings["name"]:
        items = preflight(cfg, runs_dir, n_runs=settings["n_trials"])
        with st.expander(f"Pre-flight checks of the base config ({verdict(items)})"):
            views.checklist(items)
        force = verdict(items) == "warn" and st.checkbox("Launch the trials despite the warnings", key="sweep_force")
        try:
            spec = sweep_view.make_spec(settings, cfg.to_dict(), params, force)
        except ConfigError as exc:
            st.error(str(exc))
    elif cfg is not None:
        st.info("Name the study and pick at least one field to search.")
    if st.button("Create and start a worker", type="primary", disabled=spec is None, key="sweep_create"):
        try:
            if settings["slots"] != slots.cpu and not slots.gpus:
                queue.set_slots(runs_dir, queue.Slots(cpu=settings["slots"], threads=slots.threads))
            create_study(spec, url, runs_dir)
            start_worker(spec.name, url, runs_dir, spec.parallel)
        except (SweepError, ConfigError, LaunchError, OSError) as exc:
            st.error(f"Not created: {exc}")
        else:
            st.session_state["sweep_created"] = spec.name
            st.rerun()
    st.stop()

if not names:
    st.info("No study yet: define one under *New study*.")
    st.stop()
name = st.selectbox("Study", names, key=sweep_view.STUDY_KEY)
st.query_params["study"] = name
first, error = sweep_view.read(name, url)
if first is None:
    st.error(error)
    st.stop()


@st.fragment(run_every=None if first.finished else REFRESH_SECONDS)
def watch() -> None:
    # A whole-page run has just read the study (`first`, handed over below); only the fragment's
    # own timed reruns read it again.
    view, problem = st.session_state.pop(FRESH_VIEW_KEY, None), None
    if view is None:
        view, problem = sweep_view.read(name, url)
    if view is None:
        st.error(problem)
        return
    if view.finished != first.finished:   # finished (or resumed): redraw without the timer, or with it
        st.rerun()
    workers = trials.live_workers(runs_dir, name)
    sweep_view.progress(view, workers)
    cols = st.columns(3)
    cols[0].button("Start a worker", disabled=view.finished, key="sweep_start", on_click=start_worker,
                   args=(name, url, runs_dir), help="One more worker on this machine (it resumes a stopped study)")
    cols[1].button("Stop the study", disabled=view.finished or bool(view.stop_requested), key="sweep_stop",
                   on_click=request_stop, args=(name, url, "stopped on the Sweep page"),
                   help="Running trials are stopped and queued again; a worker started later resumes the study")
    with cols[2]:
        sweep_view.compare_best(view)
    sweep_view.trials_table(view)
    sweep_view.charts(view, live.importances(view, url))


st.session_state[FRESH_VIEW_KEY] = first
watch()
