"""Data: the datasets in the data folder, building one from J-Quants files, or a demo."""

from pathlib import Path

import streamlit as st

from atft_core.data.build import BuildParams, build_dataset
from atft_core.data.demo import make_demo
from ui import data_view, state, views
from ui.form import dataset_paths

st.title("Data")
if flash := st.session_state.pop("data_flash", None):
    st.success(flash)
data_dir = state.data_dir()
paths = dataset_paths(data_dir)
st.caption(f"Data folder: {data_dir}")
views.datasets_table(paths)
for path in paths:
    with st.expander(f"{Path(path).name}: check summary and stocks per day"):
        data_view.dataset_details(path)

st.subheader("Build from J-Quants files")
quotes = data_view.input_file("daily quotes", "quotes")
listed = data_view.input_file("listed info", "listed")
index = data_view.input_file("TOPIX index (optional)", "index", required=False)
cols = st.columns(3)
out_name = cols[0].text_input("Output file", value="jquants.parquet", key="build_name")
start = cols[1].text_input("Start (YYYY-MM-DD, optional)", value=BuildParams().start)
end = cols[2].text_input("End (YYYY-MM-DD, optional)", value=BuildParams().end)
if st.button("Build dataset", disabled=not (quotes and listed)):
    if out := data_view.output_path(data_dir, out_name):
        def work(log):
            params = BuildParams(start=start.strip(), end=end.strip())
            return build_dataset(quotes, listed, out, index or None, params, log=log)
        if data_view.run_with_progress("Building the dataset", work) is not None:
            st.session_state["data_flash"] = f"Wrote {out}"
            st.rerun()

st.subheader("Generate a synthetic demo dataset")
demo = data_view.defaults_of(make_demo)
cols = st.columns(4)
demo_name = cols[0].text_input("Output file", value="demo_custom.parquet", key="demo_name")
stocks = cols[1].number_input("Stocks", min_value=2, value=demo["n_stocks"], step=10, key="demo_stocks")
days = cols[2].number_input("Days", min_value=2, value=demo["n_days"], step=50, key="demo_days")
seed = cols[3].number_input("Seed", value=demo["seed"], step=1, key="demo_seed")
if st.button("Generate demo") and (out := data_view.output_path(data_dir, demo_name)):
    if data_view.run_with_progress("Generating the demo", lambda log: make_demo(out, int(stocks), int(days), int(seed), log=log)) is not None:
        st.session_state["data_flash"] = f"Wrote {out}"
        st.rerun()
