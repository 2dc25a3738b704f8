"""New run: pick a dataset, set the config, pass the pre-flight checks, launch."""

import streamlit as st

from atft_core.launcher import launch_run
from atft_core.system import preflight, verdict
from ui import state, views
from ui.form import config_form, dataset_paths

st.title("New run")
datasets = dataset_paths(state.data_dir())
with st.expander("Datasets in the data folder", expanded=True):
    views.datasets_table(datasets)

cols = st.columns(2)
name = cols[0].text_input("Run name", key="run_name")
tags = cols[1].text_input("Tags (comma-separated)", key="run_tags")
cfg = config_form(datasets)

if cfg is not None:
    st.subheader("Pre-flight checks")
    items = preflight(cfg, state.runs_dir())
    views.checklist(items)
    result = verdict(items)
    confirmed = True
    if result == "fail":
        st.error("Launch is blocked: fix the failed checks above.")
    elif result == "warn":
        confirmed = st.checkbox("I have read the warnings; launch anyway", key="confirm_warnings")
    tag_list = tuple(t.strip() for t in tags.split(",") if t.strip())
    key = state.submission_key(cfg.to_dict(), name, tag_list)
    already = state.launched_run(key)
    if already:
        st.info(f"These settings were launched as run {already}; a repeated click starts nothing.")
        st.page_link(state.RUN_PAGE, label=f"Open {already}", query_params={"run": already})
        st.button("Launch another run with the same settings", on_click=state.new_submission)
    blocked = result == "fail" or not confirmed or bool(already)
    if st.button("Launch", type="primary", key="launch", disabled=blocked):
        run_id, error = state.launch_once(
            key, launch_run, cfg, state.runs_dir(), name=name, tags=tag_list, force=result == "warn",
            requested=cfg.to_dict(), data_roots=[state.data_dir()],
        )
        if error:
            st.error(f"Launch failed: {error}")
        else:
            state.open_run(run_id)
