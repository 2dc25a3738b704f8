"""Altair chart builders (no Streamlit here): metric lines with phase and best-epoch rules,
run comparisons and the evaluation charts of a finished run."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from atft_core.system import PEAK_GPU_METRIC, PEAK_RSS_METRIC

RUN_CHARTS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("Validation RankIC and IC", ("val/rank_ic", "val/ic"), False),
    ("Long-short and JPX Sharpe", ("val/ls_sharpe", "val/jpx_sharpe"), False),
    ("Train / validation loss", ("train/loss", "val/loss"), False),
    ("Loss terms", ("loss/huber", "loss/pinball", "loss/rankic", "loss/cs_ic", "loss/sharpe"), False),
    ("GAT gradient norm (log)", ("gat/grad_norm",), True),
    ("Residual gate alpha", ("gat/alpha",), False),
    ("Prediction std (validation)", ("val/pred_std",), False),
    ("Throughput (samples/s)", ("samples_per_second",), False),
    ("Peak memory (GiB)", (PEAK_RSS_METRIC, PEAK_GPU_METRIC), False),
)
"""(title, metric names, log scale) of every chart on the Run page."""

CHART_HEIGHT = 220


def per_epoch(metrics: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Last value of each metric per epoch (step-level logs collapse onto their epoch)."""
    sub = metrics.filter(pl.col("name").is_in(list(names)) & pl.col("value").is_not_null())
    if sub.is_empty():
        return sub
    return sub.sort("wall_time").group_by(["name", "epoch"], maintain_order=True).last().sort(["name", "epoch"])


def _rules(rules: list[dict[str, Any]]) -> alt.Chart | None:
    if not rules:
        return None
    frame = pl.DataFrame(rules, schema={"epoch": pl.Float64, "label": pl.Utf8, "kind": pl.Utf8})
    return alt.Chart(frame).mark_rule(strokeDash=[4, 3]).encode(
        x="epoch:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["phase", "best"], range=["#888888", "#2ca02c"]), legend=None),
        tooltip=["label:N", "epoch:Q"],
    )


def metric_chart(frame: pl.DataFrame, title: str, log: bool = False, rules: list[dict[str, Any]] | None = None) -> alt.LayerChart:
    """Lines of value vs epoch, one per metric name, with vertical rules (phase starts, best)."""
    y = alt.Y("value:Q", title=None, scale=alt.Scale(type="log") if log else alt.Scale(zero=False))
    data = frame.filter(pl.col("value") > 0) if log else frame
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=y,
        color=alt.Color("name:N", title=None),
        tooltip=["name:N", "epoch:Q", alt.Tooltip("value:Q", format=".4g")],
    )
    layers = [lines]
    rule_layer = _rules(rules or [])
    if rule_layer is not None:
        layers.append(rule_layer)
    return alt.layer(*layers).properties(title=title, height=CHART_HEIGHT).resolve_scale(color="independent")


def compare_chart(frame: pl.DataFrame, x: str, smoothed: bool) -> alt.LayerChart:
    """One line per run; raw values always drawn, the smoothed line on top when asked for.

    frame: run, x column (epoch or seconds), value, smoothed.
    """
    x_title = "epoch" if x == "epoch" else "seconds since start"
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(tickMinStep=1) if x == "epoch" else alt.Axis()),
        color=alt.Color("run:N"),
        tooltip=["run:N", f"{x}:Q", alt.Tooltip("value:Q", format=".4g")],
    )
    raw = base.mark_line(point=True, opacity=0.35 if smoothed else 1.0).encode(y=alt.Y("value:Q", scale=alt.Scale(zero=False)))
    if not smoothed:
        return alt.layer(raw).properties(height=320)
    return alt.layer(raw, base.mark_line(strokeWidth=2.5).encode(y="smoothed:Q")).properties(height=320)


def rank_ic_chart(daily: pl.DataFrame, title: str) -> alt.LayerChart:
    """Daily RankIC (thin) and its rolling mean (thick)."""
    base = alt.Chart(daily).encode(x=alt.X("Date:T", title=None))
    return alt.layer(
        base.mark_line(opacity=0.4).encode(y=alt.Y("rank_ic:Q", title="RankIC")),
        base.mark_line(strokeWidth=2.5, color="#d62728").encode(y="rank_ic_rolling:Q"),
    ).properties(title=title, height=CHART_HEIGHT)


def decile_chart(deciles: pl.DataFrame, title: str) -> alt.Chart:
    """Mean forward return by prediction decile (1 = lowest predictions)."""
    return alt.Chart(deciles).mark_bar().encode(
        x=alt.X("decile:O"), y=alt.Y("mean_return:Q", title="mean return"),
        tooltip=["decile:O", alt.Tooltip("mean_return:Q", format=".4%")],
    ).properties(title=title, height=CHART_HEIGHT)


def feature_weight_chart(weights: pl.DataFrame, uniform: float, title: str) -> alt.LayerChart:
    """Horizontal bars of mean variable-selection weights (frame: feature, mean_weight, in the
    order to draw), with a rule at the uniform weight 1/F."""
    order = weights["feature"].to_list()
    bars = alt.Chart(weights).mark_bar().encode(
        x=alt.X("mean_weight:Q", title="mean selection weight"), y=alt.Y("feature:N", sort=order, title=None),
        tooltip=["feature:N", alt.Tooltip("mean_weight:Q", format=".4f")],
    )
    rule = alt.Chart(pl.DataFrame({"uniform": [uniform]})).mark_rule(strokeDash=[4, 3], color="gray").encode(x="uniform:Q")
    return (bars + rule).properties(title=title, height=max(CHART_HEIGHT, 14 * len(order)))


def coverage_chart(per_day: pl.DataFrame) -> alt.Chart:
    """Stocks per day of a dataset (frame: Date, n_stocks)."""
    return alt.Chart(per_day).mark_area(opacity=0.6).encode(
        x=alt.X("Date:T", title=None, axis=alt.Axis(format="%b %Y")), y=alt.Y("n_stocks:Q", title="stocks"),
    ).properties(height=160)
