"""Data: the datasets in the data folder; fetching from the J-Quants API; building a dataset
from J-Quants files (paths or uploads, with or without statements); a synthetic demo."""

from pathlib import Path

import streamlit as st

from atft_core.data.build import BuildParams
from atft_core.data.demo import make_demo
from atft_core.data.fetch import default_api_url, fetch
from ui import data_view, state, views
from ui.form import dataset_paths

st.title("Data")
data_view.flash_and_prefill()
data_dir = state.data_dir()
paths = dataset_paths(data_dir)
st.caption(f"Data folder: {data_dir}")
views.datasets_table(paths)
for path in paths:
    with st.expander(f"{Path(path).name}: check summary and stocks per day"):
        data_view.dataset_details(path)

st.subheader("Fetch from the J-Quants API")
api_key = st.text_input("API key", type="password", key="jq_key",
                        help="Used for this fetch only: never saved, logged or shown. The CLI reads JQUANTS_API_KEY.")
cols = st.columns(4)
fetch_from = cols[0].text_input("From (YYYY-MM-DD)", key="jq_from")
fetch_to = cols[1].text_input("To (YYYY-MM-DD)", key="jq_to")
folder_name = cols[2].text_input("Folder in the data folder", value="jquants", key="jq_folder")
codes = cols[3].text_input("Only these codes (optional)", key="jq_codes", help="e.g. 72030,67580; empty: every listed issue")
with st.expander("Advanced"):
    api_url = st.text_input("API base URL", value=default_api_url(), key="jq_url", help="a mirror or proxy of the API")
if st.button("Fetch", disabled=not api_key) and (folder := data_view.output_folder(data_dir, folder_name)):
    code_list = tuple(c.strip() for c in codes.split(",") if c.strip())
    if data_view.run_with_progress("Fetching from J-Quants", lambda log: fetch(
            api_key, fetch_from, fetch_to, folder, codes=code_list, base_url=api_url, log=log)) is not None:
        data_view.use_fetched(folder)
        st.rerun()

st.subheader("Build from J-Quants files")
inputs = {
    "quotes": data_view.input_file("daily quotes", "quotes"),
    "listed": data_view.input_file("listed info", "listed"),
    "index": data_view.input_file("TOPIX index (optional)", "index"),
    "statements": data_view.input_file("financial statements (optional)", "statements"),
}
cols = st.columns(3)
out_name = cols[0].text_input("Output file", value="jquants.parquet", key="build_name")
start = cols[1].text_input("Start (YYYY-MM-DD, optional)", value=BuildParams().start, key="build_start")
end = cols[2].text_input("End (YYYY-MM-DD, optional)", value=BuildParams().end, key="build_end")
target = data_view.output_path(data_dir, out_name)
replace_ok = data_view.overwrite_confirmed(target, "build")
if st.button("Build dataset", disabled=not (inputs["quotes"] and inputs["listed"] and replace_ok)) and target:
    if data_view.run_with_progress("Building the dataset", lambda log: data_view.build(inputs, target, start, end, log)):
        st.session_state["data_flash"] = f"Wrote {target}"
        st.rerun()

st.subheader("Generate a synthetic demo dataset")
demo = data_view.defaults_of(make_demo)
cols = st.columns(4)
demo_name = cols[0].text_input("Output file", value="demo_custom.parquet", key="demo_name")
stocks = cols[1].number_input("Stocks", min_value=2, value=demo["n_stocks"], step=10, key="demo_stocks")
days = cols[2].number_input("Days", min_value=2, value=demo["n_days"], step=50, key="demo_days")
seed = cols[3].number_input("Seed", value=demo["seed"], step=1, key="demo_seed")
demo_target = data_view.output_path(data_dir, demo_name)
demo_ok = data_view.overwrite_confirmed(demo_target, "demo")
if st.button("Generate demo", disabled=not demo_ok) and demo_target:
    if data_view.run_with_progress("Generating the demo", lambda log: make_demo(
            demo_target, int(stocks), int(days), int(seed), log=log)) is not None:
        st.session_state["data_flash"] = f"Wrote {demo_target}"
        st.rerun()
