"""Altair charts of a finished run's evaluation (no Streamlit here): cumulative net return per
cost level, monthly heatmaps and the Sector33 RankIC with its intervals."""

from __future__ import annotations

import altair as alt
import polars as pl

from atft_core.costs import format_bps

from .charts import CHART_HEIGHT

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HEATMAP_ROW = 32
"""Pixels per year row of a monthly heatmap."""
SECTOR_ROW = 20
"""Pixels per sector bar (with its label)."""
SECTOR_LABEL_PIXELS = 260
"""Room for the longest sector name ('5200 Warehousing & Harbor Transportation')."""
DIVERGING = "redblue"
"""Colour scheme of signed values: red below 0, blue above (0 in the middle)."""


def cumulative_net_chart(cumulative: pl.DataFrame, horizon: int, title: str) -> alt.Chart:
    """Cumulative net return per day (h-day book return / h, summed), one line per cost level.

    cumulative: Date, cost_bps, cum_return.
    """
    labels = {c: format_bps(c) for c in sorted(set(cumulative["cost_bps"].to_list()))}
    frame = cumulative.with_columns(
        pl.col("cost_bps").replace_strict(labels, return_dtype=pl.String).alias("cost per side"))
    order = list(labels.values())
    return alt.Chart(frame).mark_line().encode(
        x=alt.X("Date:T", title=None, axis=alt.Axis(format="%Y-%m")),
        y=alt.Y("cum_return:Q", title=f"net return, {horizon}-day books", axis=alt.Axis(format=".1%")),
        color=alt.Color("cost per side:N", sort=order, scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(orient="bottom", title=None, columns=2)),
        tooltip=["Date:T", "cost per side:N", alt.Tooltip("cum_return:Q", format=".2%")],
    ).properties(title=title, height=CHART_HEIGHT)


def month_heatmap(months: pl.DataFrame, value: str, fmt: str, title: str) -> alt.LayerChart:
    """Year x month grid coloured by `value` (0 white, red below, blue above), value in each cell.

    months: year, month, days and the value column (one cost level's rows of `by_period`).
    """
    frame = months.with_columns(pl.col("month").replace_strict(dict(enumerate(MONTHS, start=1)), return_dtype=pl.String)
                                .alias("month_name"))
    largest = frame[value].abs().max() or 0.0
    base = alt.Chart(frame).encode(
        x=alt.X("month_name:O", title=None, sort=list(MONTHS), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("year:O", title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", legend=None, scale=alt.Scale(scheme=DIVERGING, domainMid=0)),
        tooltip=["year:O", "month_name:N", "days:Q", alt.Tooltip(f"{value}:Q", format=fmt)],
    )
    # light text on the strongest colours, dark elsewhere
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{value}:Q", format=fmt),
        color=alt.condition(f"abs(datum.{value}) > {largest / 2}", alt.value("white"), alt.value("black")))
    return (cells + text).properties(title=title, height=alt.Step(HEATMAP_ROW))


def sector_chart(sectors: pl.DataFrame, title: str) -> alt.LayerChart:
    """Mean within-sector RankIC per sector with its 95% interval, best first.

    sectors: sector, name, rank_ic, rank_ic_low, rank_ic_high, stocks (one cost level's rows).
    """
    frame = sectors.filter(pl.col("rank_ic").is_not_null()).with_columns(
        (pl.col("sector") + " " + pl.col("name")).alias("label"))
    order = frame["label"].to_list()
    y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=SECTOR_LABEL_PIXELS))
    bars = alt.Chart(frame).mark_bar().encode(
        x=alt.X("rank_ic:Q", title="mean daily RankIC within the sector (95% interval)"), y=y,
        color=alt.condition("datum.rank_ic >= 0", alt.value("#4c78a8"), alt.value("#e45756")),
        tooltip=["label:N", alt.Tooltip("rank_ic:Q", format=".4f"), alt.Tooltip("rank_ic_low:Q", format=".4f"),
                 alt.Tooltip("rank_ic_high:Q", format=".4f"), alt.Tooltip("stocks:Q", format=".0f")],
    )
    whiskers = alt.Chart(frame).mark_rule(color="#333333").encode(x="rank_ic_low:Q", x2="rank_ic_high:Q", y=y)
    return (bars + whiskers).properties(title=title, height=alt.Step(SECTOR_ROW))
