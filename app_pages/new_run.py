"""New run: pick a dataset, set the config, pass the pre-flight checks, launch one run or a
seed group (queued runs, then an ensemble run of those that finished)."""

import streamlit as st

from atft_core.runs.queue import launch_run
from atft_core.runs.seeds import MAX_SEEDS, launch_seeds
from atft_core.system import preflight, verdict
from ui import form, run_manage, state, views

st.title("New run")
datasets = form.dataset_paths(state.data_dir())
if source := st.query_params.get(run_manage.FROM_PARAM):   # "New run from this one" on the Run page
    del st.query_params[run_manage.FROM_PARAM]   # once: the form keeps the user's edits on every rerun
    said, problem = run_manage.prefill_from(state.runs_dir(), state.data_dir(), source)
    if problem:
        st.error(problem)
    else:
        st.info(said)
with st.expander("Datasets in the data folder", expanded=True):
    views.datasets_table(datasets)

form.restore(datasets)
cols = st.columns([2, 2, 1])
name = cols[0].text_input("Run name", key="run_name")
tags = cols[1].text_input("Tags (comma-separated)", key="run_tags")
seeds = int(cols[2].number_input("Seeds", min_value=1, max_value=MAX_SEEDS, step=1, key="run_seeds",
                                 help="More than one: a seed group: runs with runtime.seed, seed + 1, ..., "
                                      "queued (side by side when the queue has several slots and memory allows), "
                                      "then an ensemble run of those that finished (per-date mean of z-scored "
                                      "predictions)."))
cfg = form.config_form(datasets)

if cfg is not None:
    st.subheader("Pre-flight checks" + (f" (for {seeds} runs: disk for all, memory for one)" if seeds > 1 else ""))
    items = preflight(cfg, state.runs_dir(), n_runs=seeds)
    views.checklist(items)
    result = verdict(items)
    confirmed = True
    if result == "fail":
        st.error("Launch is blocked: fix the failed checks above.")
    elif result == "warn":
        confirmed = st.checkbox("I have read the warnings; launch anyway", key="confirm_warnings")
    tag_list = tuple(t.strip() for t in tags.split(",") if t.strip())
    key = state.submission_key(cfg.to_dict(), name, tag_list, seeds)
    already = state.launched_run(key)
    if already:
        st.info(f"These settings were launched as run {already}; a repeated click starts nothing.")
        st.page_link(state.RUN_PAGE, label=f"Open {already}", query_params={"run": already})
        st.button("Launch another run with the same settings", on_click=state.new_submission)
    blocked = result == "fail" or not confirmed or bool(already)
    if st.button("Launch", type="primary", key="launch", disabled=blocked):
        launch = launch_run if seeds == 1 else (lambda *a, **k: launch_seeds(*a, seeds=seeds, **k)[0])
        run_id, error = state.launch_once(
            key, launch, cfg, state.runs_dir(), name=name, tags=tag_list, force=result == "warn",
            requested=cfg.to_dict(), data_roots=[state.data_dir()],
        )
        if error:
            st.error(f"Launch failed: {error}")
        else:
            state.open_run(run_id)
