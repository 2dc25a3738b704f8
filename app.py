"""ATFT-GAT-FAN dashboard: `streamlit run app.py` (binds 127.0.0.1; see README to expose it).

The only place that reads the environment: ATFT_DATA_DIR (default data/) and ATFT_RUNS_DIR
(default runs/) choose the folders, e.g. for tests.
"""

import os
from pathlib import Path

import streamlit as st

from atft_core.config import RunConfig
from atft_core.runs.queue import keep_dispatching
from ui import sidebar, state

# A local icon: a ":material/...:" page icon makes the browser fetch it from fonts.gstatic.com,
# and the app must work offline.
st.set_page_config(page_title="ATFT-GAT-FAN", page_icon=str(Path(__file__).parent / "ui" / "favicon.png"),
                   layout="wide")
state.init(os.environ.get("ATFT_DATA_DIR", "data"), os.environ.get("ATFT_RUNS_DIR", "runs"))

demo = state.data_dir() / Path(RunConfig().data.path).name
if not demo.exists():  # a fresh clone has no data: make the demo so New run works at once
    from atft_core.data.demo import make_demo

    with st.spinner(f"Creating the demo dataset {demo} (first start only)..."):
        make_demo(demo)

keep_dispatching(state.runs_dir())   # queued runs go on after their dispatcher was killed

# The pages live in app_pages/, not pages/: with a pages/ folder Streamlit 1.67 serves a fresh
# server's first deep link (/run?run=...) in its legacy mode, without running this script.
new_run = st.Page("app_pages/new_run.py", title="New run", icon=":material/rocket_launch:", default=True)
page = st.navigation([
    new_run,
    st.Page("app_pages/run.py", title="Run", icon=":material/monitoring:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/sweep.py", title="Sweep", icon=":material/tune:"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/format_list_numbered:"),
    st.Page("app_pages/data.py", title="Data", icon=":material/database:"),
    st.Page("app_pages/system.py", title="System", icon=":material/memory:"),
])
with st.sidebar:   # New run switches to Run after Launch: no refresh of its own may be on its way then
    sidebar.running_runs(refresh=page.url_path != new_run.url_path)
page.run()
