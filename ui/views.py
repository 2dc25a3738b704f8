"""Small render helpers shared by several pages (dataset tables, the pre-flight checklist)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from . import live

VERDICT_ICONS = {"pass": "✔", "warn": "!", "fail": "✘"}


def dataset_rows(paths: list[str]) -> list[dict]:
    """One row per dataset: its check summary, or the error the check gave."""
    rows = []
    for path in paths:
        summary, error = live.dataset_summary(path)
        if summary is None:
            rows.append({"dataset": Path(path).name, "problems": error})
            continue
        rows.append({
            "dataset": Path(path).name, "stocks": summary.n_stocks, "days": summary.n_days,
            "dates": f"{summary.start} .. {summary.end}", "features": summary.n_features,
            "sector coverage": f"{summary.sector_coverage:.0%}",
            "problems": "; ".join(summary.warnings) or "none",
        })
    return rows


def datasets_table(paths: list[str]) -> None:
    if not paths:
        st.warning("No datasets (*.parquet) in the data folder: create one on the Data page.")
        return
    st.dataframe(dataset_rows(paths), hide_index=True)


def checklist(items) -> None:
    """The pre-flight items as a static table (long details wrap instead of being cut)."""
    rows = [{"": VERDICT_ICONS.get(i.verdict, i.verdict), "check": i.name, "verdict": i.verdict, "detail": i.detail}
            for i in items]
    st.table(pl.DataFrame(rows, schema={"": pl.Utf8, "check": pl.Utf8, "verdict": pl.Utf8, "detail": pl.Utf8}),
             hide_index=True)
    technical = [i for i in items if getattr(i, "technical", "")]
    if technical:
        with st.expander("Technical details"):
            for item in technical:
                st.markdown(f"**{item.name}**")
                st.code(item.technical, language=None)
