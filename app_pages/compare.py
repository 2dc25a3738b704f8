"""Compare: several metrics of several runs as a grid (live while one trains), best/final table
with a column per run, config diff, CSV export, the paired difference of daily RankIC against a
reference run (interval and t), the runs side by side after trading costs, and combining the
chosen runs into an ensemble run. `?runs=a,b,...` chooses those runs first (the Sweep page's
"Compare the best K")."""

import streamlit as st

from atft_core import runs
from atft_core.run_files import RunFiles, read_json
from atft_core.runs.ensemble import build_ensemble
from ui import compare_view, evaluation_view, live, logic, state

REFRESH_SECONDS = 2

st.title("Compare runs")
runs_dir = state.runs_dir()
all_runs = [r.to_dict() for r in runs.list_runs(runs_dir)]
if not all_runs:
    st.info("No runs yet.")
    st.stop()

cols = st.columns(4)
statuses = cols[0].multiselect("Status", sorted({r["status"] for r in all_runs}))
tags = cols[1].multiselect("Tag", sorted({t for r in all_runs for t in r["tags"]}))
datasets = cols[2].multiselect("Dataset", sorted({r["dataset"] for r in all_runs if r["dataset"]}))
text = cols[3].text_input("Search id / name / tag")
shown = logic.filter_runs(all_runs, statuses=statuses, tags=tags, datasets=datasets, text=text)
names_by_id = logic.run_labels(all_runs)
status_by_id = {r["id"]: r["status"] for r in all_runs}
asked = [rid for rid in st.query_params.get("runs", "").split(",") if rid in {r["id"] for r in shown}]
chosen = st.multiselect("Runs (finished ones are chosen first)", [r["id"] for r in shown],
                        default=asked or logic.default_compared(shown), key="compare_runs",
                        format_func=lambda rid: f"{names_by_id[rid]} · {status_by_id[rid]} · {rid}")
if not chosen:
    st.info("Choose at least one run.")
    st.stop()

names = sorted(live.metrics(runs_dir, chosen)["name"].unique().to_list())
if not names:
    st.info("The chosen runs have not logged any metrics yet.")
    st.stop()
picked = compare_view.metric_choice(names)
cols = st.columns(2)
x = cols[0].radio("x axis", list(compare_view.X_AXES), format_func=compare_view.X_AXES.get, horizontal=True)
weight = cols[1].slider("Smoothing (EMA weight; raw lines stay visible)", 0.0, 0.95, 0.0, 0.05)
starts = {r["id"]: r["started"] for r in all_runs if r["id"] in chosen and r["started"]}
compare_view.live_section(runs_dir, {rid: status_by_id[rid] for rid in chosen}, x, weight, picked, names_by_id,
                          starts, REFRESH_SECONDS)

st.subheader("Settings that differ")
configs = {rid: (read_json(RunFiles(runs_dir / rid).config) or {}).get("config", {}) for rid in chosen}
diff = logic.config_diff({names_by_id[rid]: cfg for rid, cfg in configs.items()})
if diff:
    st.table(diff)
else:
    st.caption("The chosen runs have identical settings.")

st.subheader("Is the difference real? Daily RankIC against a reference run")
finished = {rid: cfg for rid, cfg in configs.items() if RunFiles(runs_dir / rid).predictions.is_file()}
ordered, horizons = logic.paired_choices(finished)
if len(finished) < 2 or not horizons:
    st.caption("Needs two or more finished runs with predictions for a common horizon.")
else:
    cols = st.columns(3)
    reference = cols[0].selectbox("Reference run (baselines first)", ordered, key="paired_reference",
                                  format_func=lambda rid: names_by_id.get(rid, rid))
    split = cols[1].radio("Split", ["val", "test"], key="paired_split", horizontal=True,
                          format_func={"val": "validation", "test": "test"}.get)
    horizon = cols[2].selectbox("Horizon (days)", horizons, key="paired_horizon")
    try:
        paired = live.paired_comparison(runs_dir, list(finished), reference, split, horizon)
        st.dataframe(evaluation_view.compare_paired_rows(paired, names_by_id), hide_index=True)
        st.caption("Means over the days both runs have; the interval is of the mean daily difference (block "
                   "bootstrap over days); t = mean / standard error of the daily differences, treating days as "
                   "independent. On a year of real data a mean daily RankIC has a standard error of about 0.006, "
                   "so a difference whose interval includes 0 may be chance.")
    except (FileNotFoundError, ValueError) as exc:
        st.info(str(exc))
    st.subheader("After trading costs")
    evaluation_view.compare_costs(runs_dir, list(finished), names_by_id, split, horizon)

st.subheader("Ensemble")
st.caption("A new run whose prediction is, per date, the mean of the chosen runs' z-scored predictions "
           "(finished runs with the same dataset, horizons and validation/test dates; nothing is retrained).")
with st.form("ensemble_form"):
    ensemble_name = st.text_input("Name of the ensemble run", key="ensemble_name")
    combine = st.form_submit_button("Combine the chosen runs into an ensemble run", disabled=len(chosen) < 2)
if combine:
    try:
        ensemble_id = build_ensemble(runs_dir, chosen, name=ensemble_name)
    except (runs.RunError, OSError) as exc:
        st.error(f"No ensemble was built: {exc}")
    else:
        st.success(f"Built ensemble run {ensemble_id} from {len(chosen)} runs.")
        st.page_link(state.RUN_PAGE, label=f"Open {ensemble_id}", query_params={"run": ensemble_id})
