"""Sections of the Compare page: the metric grid (live while a chosen run trains) and the
best / final table with one column per run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from atft_core import runs

from . import charts, live
from .logic import best_and_final, compare_frame, headline_metrics

X_AXES = {"epoch": "epoch", "step": "step", "seconds": "wall time"}
DEFAULT_METRICS = ("val/rank_ic", "val/ls_sharpe")
GRID_COLUMNS = 2


def metric_choice(names: list[str]) -> list[str]:
    """The metrics to draw (several at once, as a grid)."""
    default = [n for n in DEFAULT_METRICS if n in names] or names[:1]
    return st.multiselect("Metrics", names, default=default, key="compare_metrics")


def grid(metrics: pl.DataFrame, chosen: list[str], x: str, weight: float, labels: dict[str, str],
         starts: dict[str, float]) -> None:
    """One chart per chosen metric, GRID_COLUMNS to a row; y axes titled with the unit."""
    cols = st.columns(GRID_COLUMNS)
    for i, name in enumerate(chosen):
        frame = compare_frame(metrics, name, x, weight, labels, starts)
        with cols[i % GRID_COLUMNS]:
            if frame.is_empty():
                st.caption(f"{name}: not logged by the chosen runs")
            else:
                st.altair_chart(charts.compare_chart(frame, x, weight > 0, charts.metric_unit(name), title=name))


def table(metrics: pl.DataFrame, names: list[str], labels: dict[str, str]) -> None:
    """Best and final value of the headline metrics, one column per run (by name)."""
    st.dataframe(best_and_final(metrics, headline_metrics(names), labels), hide_index=True)
    st.caption("best = highest (lowest for losses) value over the epochs, final = the last one; "
               "the epoch is in brackets.")


def download(metrics: pl.DataFrame, labels: dict[str, str]) -> None:
    named = metrics.with_columns(pl.col("run_id").replace_strict(labels, default=None).alias("run_name"))
    st.download_button("Download the chosen runs' metrics (CSV)", named.write_csv(), file_name="metrics.csv",
                       mime="text/csv")


def live_section(runs_dir: Path, states: dict[str, str], x: str, weight: float, metric_names: list[str],
                 labels: dict[str, str], starts: dict[str, float], refresh: float) -> None:
    """The grid, the table and the CSV of the chosen runs (`states`: {run id: status}), redrawn
    every `refresh` seconds while one of them is live; the whole page is drawn again when one
    of them changes state (its config and status labels change with it)."""
    chosen_runs = list(states)

    @st.fragment(run_every=refresh if any(s in runs.LIVE_STATES for s in states.values()) else None)
    def section() -> None:
        if {rid: runs.run_state(runs_dir, rid).status for rid in chosen_runs} != states:
            st.rerun()
        metrics = live.metrics(runs_dir, chosen_runs)
        grid(metrics, metric_names, x, weight, labels, starts)
        st.subheader("Best and final metrics")
        table(metrics, sorted(metrics["name"].unique().to_list()), labels)
        download(metrics, labels)

    section()
