"""Predict: rank the stocks of a dataset's latest date (or a chosen date) with a finished run:
score, rank, decile and the quantile heads' interval; CSV download. The latest date of a
dataset has no forward return yet, and needs none."""

import datetime as dt
from pathlib import Path

import streamlit as st

from atft_core import runs
from atft_core.config import ConfigError
from atft_core.data.errors import DataError
from atft_core.run_files import RunFiles, read_json
from ui import form, live, logic, predict_view, state

st.title("Predict")
runs_dir = state.runs_dir()
usable = predict_view.predicting_runs(runs.list_runs(runs_dir), runs_dir)
datasets = form.dataset_paths(state.data_dir())
if not usable or not datasets:
    st.info("Needs a finished run with checkpoints/best.pt and a dataset in the data folder.")
    st.page_link(state.NEW_RUN_PAGE, label="Start a run on the New run page")
    st.stop()

labels = logic.run_labels([r.to_dict() for r in usable])
by_id = {r.id: r for r in usable}
cols = st.columns([2, 2, 1])
run_id = cols[0].selectbox("Run", list(by_id), format_func=lambda i: f"{labels[i]} · {by_id[i].status} · {i}",
                           key="predict_run")
config = (read_json(RunFiles(runs_dir / run_id).config) or {}).get("config") or {}
own = Path(str((config.get("data") or {}).get("path", ""))).name
names = [Path(p).name for p in datasets]
dataset = cols[1].selectbox("Dataset", datasets, index=names.index(own) if own in names else 0,
                            format_func=lambda p: Path(p).name, key="predict_dataset",
                            help="any model-ready dataset with the run's features, e.g. one rebuilt with today's quotes")
horizons = list((config.get("data") or {}).get("horizons") or [])
horizon = cols[2].selectbox("Rank by horizon (days)", horizons, key="predict_horizon") if horizons else None

summary, problem = live.dataset_summary(dataset)
if summary is None:
    st.error(f"error: {problem}")
    st.stop()
first, last = dt.date.fromisoformat(summary.start), dt.date.fromisoformat(summary.end)
cols = st.columns([1, 2])
when = cols[0].radio("Date", ["latest", "a chosen date"], horizontal=True, key="predict_when")
day = cols[1].date_input("Date to rank", value=last, min_value=first, max_value=last, key="predict_day",
                         disabled=when == "latest")
date = "latest" if when == "latest" else day.isoformat()

try:
    with st.spinner("Ranking the stocks (the first time for a run and dataset loads the model)..."):
        ranking = live.ranking(runs_dir, run_id, dataset, date, horizon)
except (DataError, ConfigError, FileNotFoundError) as exc:
    st.error(f"error: {exc}")
    st.stop()

score = f"score_{ranking.horizon}d"
interval = ranking.interval_columns()
latest_note = " (the dataset's last date: its forward returns are not known yet)" \
    if ranking.date == ranking.dataset_last_date else ""
st.markdown(f"**{ranking.table.height} stocks on {ranking.date}**{latest_note}, ranked by `{score}`; decile 10 = "
            "highest scores." + (f" The band is the quantile heads' interval `{interval[0]}` .. `{interval[1]}`."
                                 if interval else " A baseline has no quantile heads, so no interval."))
st.altair_chart(predict_view.ranking_chart(ranking.table, score, interval, f"{labels[run_id]} on {ranking.date}"))
st.dataframe(ranking.table, hide_index=True)
st.download_button("Download the ranking (CSV)", ranking.table.write_csv(),
                   file_name=f"{run_id}-{ranking.date}-ranking.csv", mime="text/csv")
st.caption("The same from a shell: `python -m atft_core.predict --run <run folder> --dataset <parquet> "
           "--date latest --out ranking.csv`. Scores are in the run's target units (see its "
           "loss.target_normalization): compare them within a date, not across dates.")
