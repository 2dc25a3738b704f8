"""Altair chart builders (no Streamlit here): metric lines with phase and best-epoch rules,
run comparisons, machine history and the evaluation charts of a finished run.

Every axis has a title with its unit and an explicit number format: Vega's default format of
a one-point domain prints the raw value (``1.000000`` on an epoch axis, ``4,492.634276`` on a
seconds axis), so epochs and steps are integers and time axes are rounded in a chosen unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import altair as alt
import polars as pl

from atft_core.system import PEAK_GPU_METRIC, PEAK_RSS_METRIC


@dataclass(frozen=True)
class RunChart:
    """One chart of the Run page: which metrics, the y-axis title (with unit), the default
    scale and the x axis (`epoch`, or `step` for step-level logs)."""

    title: str
    names: tuple[str, ...]
    y_title: str
    log: bool = False
    x: str = "epoch"


RUN_CHARTS: tuple[RunChart, ...] = (
    RunChart("Validation RankIC and IC", ("val/rank_ic", "val/ic"), "correlation (mean of daily values)"),
    RunChart("Long-short Sharpe (top - bottom decile)", ("val/ls_sharpe",), "Sharpe, annualised (x sqrt 252)"),
    RunChart("JPX spread Sharpe", ("val/jpx_sharpe",), "Sharpe, daily (not annualised)"),
    RunChart("Train / validation loss", ("train/loss", "val/loss"), "loss (weighted sum of terms)"),
    RunChart("Train loss per step", ("train/loss_step",), "loss (weighted sum of terms)", x="step"),
    RunChart("Loss terms", ("loss/huber", "loss/pinball", "loss/rankic", "loss/cs_ic", "loss/sharpe"),
             "term value (before weighting)"),
    RunChart("GAT gradient norm", ("gat/grad_norm",), "L2 norm (mean over steps)", log=True),
    RunChart("Residual gate alpha", ("gat/alpha",), "alpha (0 = no GAT, 1 = GAT only)"),
    RunChart("Prediction std (validation)", ("val/pred_std",), "cross-sectional std (mean of days)"),
    RunChart("Throughput", ("samples_per_second",), "stock-days per second"),
    RunChart("Learning rate", ("lr",), "learning rate (end of epoch)", log=True),
    RunChart("Peak memory", (PEAK_RSS_METRIC, PEAK_GPU_METRIC), "GiB"),
)
"""Every chart on the Run page, in page order."""

METRIC_UNITS: dict[str, str] = {
    "rank_ic": "RankIC (mean of daily values)", "ic": "IC (mean of daily values)",
    "icir": "ICIR (mean / std of daily IC)", "rank_icir": "RankICIR (mean / std of daily RankIC)",
    "ls_sharpe": "Sharpe, annualised (x sqrt 252)", "jpx_sharpe": "Sharpe, daily (not annualised)",
    "hit_rate": "hit rate (share of stocks)", "pred_std": "cross-sectional std", "loss": "loss",
    "loss_step": "loss", "best_rank_ic": "RankIC (best so far)", "grad_norm": "L2 norm", "alpha": "alpha",
    "samples_per_second": "stock-days per second", "epoch_seconds": "seconds", "lr": "learning rate",
    "peak_rss_gib": "GiB", "peak_gpu_gib": "GiB",
}
"""The y-axis title of a metric, by the last part of its name (per-horizon suffix removed)."""

CHART_HEIGHT = 220
LINE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22",
               "#17BECF", "#1F1F1F")
"""Distinct line colours (Okabe-Ito first, then Tableau's), none of them the rules' colours."""
LEGEND_COLUMNS = 3
RULE_KINDS = ("phase start", "best epoch")
RULE_COLORS = ("#555555", "#D62728")
RULE_DASH = [5, 3]
SHORT_DATE_SPAN_DAYS = 120
"""Up to this many days a date axis names the day; beyond, the month (always with the year)."""
VALUE_FORMAT = ",.4~r"
"""Metric values on an axis: 4 significant digits, no trailing zeros (0.091, 4,493, 0)."""
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
"""Charts fill their column's width; the height is the plot's own (with the default 'fit' a long
rotated y title or a legend squeezes the plot to nothing)."""
TIME_UNITS = ((180.0, 1.0, "s"), (3 * 3600.0, 60.0, "min"), (float("inf"), 3600.0, "h"))
"""(longest span shown in the unit, seconds per unit, unit) for time-since-start axes."""


def metric_unit(name: str) -> str:
    """The y-axis title of a logged metric, e.g. ``val/ls_sharpe_5d`` -> annualised Sharpe (5d)."""
    last = name.split("/")[-1]
    base, _, horizon = last.rpartition("_")
    if horizon.endswith("d") and horizon[:-1].isdigit() and base in METRIC_UNITS:
        return f"{METRIC_UNITS[base]}, {horizon} horizon"
    return METRIC_UNITS.get(last, name)


def time_unit(max_seconds: float) -> tuple[float, str]:
    """(seconds per unit, unit name) that keeps a time axis readable: s, min or h."""
    for limit, per_unit, unit in TIME_UNITS:
        if max_seconds <= limit:
            return per_unit, unit
    return TIME_UNITS[-1][1], TIME_UNITS[-1][2]  # pragma: no cover - the last limit is infinite


def date_axis(dates: pl.Series) -> alt.Axis:
    """A date axis that always shows the year (Vega's default drops it inside a year)."""
    span = (dates.max() - dates.min()).days if len(dates) else 0
    return alt.Axis(format="%d %b %Y" if span <= SHORT_DATE_SPAN_DAYS else "%b %Y", labelOverlap=True, title=None)


def per_epoch(metrics: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Last value of each metric per epoch (step-level logs collapse onto their epoch)."""
    sub = metrics.filter(pl.col("name").is_in(list(names)) & pl.col("value").is_not_null())
    if sub.is_empty():
        return sub
    return sub.sort("wall_time").group_by(["name", "epoch"], maintain_order=True).last().sort(["name", "epoch"])


def per_step(metrics: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Every logged value of the metrics, by step (for step-level logs such as train/loss_step)."""
    sub = metrics.filter(pl.col("name").is_in(list(names)) & pl.col("value").is_not_null())
    return sub.sort("wall_time").unique(["name", "step"], keep="last", maintain_order=True).sort(["name", "step"])


def integer_axis(values: pl.Series, title: str) -> alt.X:
    """An x axis of whole numbers (epochs, steps): integer ticks, never a one-point domain."""
    lo, hi = (int(values.min()), int(values.max())) if len(values) else (0, 1)
    hi = max(hi, lo + 1)
    ticks = {"values": list(range(lo, hi + 1))} if hi - lo <= 12 else {}
    return alt.X(f"{values.name}:Q", title=title, scale=alt.Scale(domain=[lo, hi], nice=False),
                 axis=alt.Axis(format="d", tickMinStep=1, **ticks))


def _line_colors(names: list[str], title: str | None = None) -> alt.Color:
    return alt.Color("name:N", title=title, scale=alt.Scale(domain=names, range=list(LINE_COLORS[:len(names)])),
                     legend=alt.Legend(orient="bottom", columns=LEGEND_COLUMNS, labelLimit=320))


def _rules(rules: list[dict[str, Any]], x: str) -> alt.Chart | None:
    """Dashed vertical rules with a legend (phase starts grey, the best epoch red)."""
    if not rules:
        return None
    frame = pl.DataFrame(rules, schema={x: pl.Float64, "label": pl.Utf8, "kind": pl.Utf8})
    return alt.Chart(frame).mark_rule(strokeDash=RULE_DASH, strokeWidth=1.5).encode(
        x=f"{x}:Q",
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=list(RULE_KINDS), range=list(RULE_COLORS)),
                        legend=alt.Legend(orient="top", symbolType="stroke", symbolDash=RULE_DASH)),
        tooltip=["label:N", alt.Tooltip(f"{x}:Q", format="d")],
    )


def positive_for_log(frame: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """(rows drawable on a log axis, whether a log axis is possible): values <= 0 cannot be."""
    positive = frame.filter(pl.col("value") > 0)
    return (positive, True) if not positive.is_empty() else (frame, False)


def metric_chart(frame: pl.DataFrame, chart: RunChart, log: bool, rules: list[dict[str, Any]] | None = None,
                 x: str | None = None) -> alt.LayerChart:
    """Lines of value vs epoch (or step), one colour per metric, with the phase / best-epoch rules.

    On a log axis values <= 0 are left out (the GAT's gradient norm is 0 before the GAT
    phase); when none is left the chart is drawn linear and says so in its title.
    """
    x = x or chart.x
    title = chart.title
    if log:
        frame, log = positive_for_log(frame)
        if not log:
            title += " (linear: no value > 0 yet)"
    names = [n for n in chart.names if n in set(frame["name"].to_list())]
    y = alt.Y("value:Q", title=chart.y_title + (" (log)" if log else ""), axis=alt.Axis(format=VALUE_FORMAT),
              scale=alt.Scale(type="log") if log else alt.Scale(zero=False))
    lines = alt.Chart(frame).mark_line(point=frame.height <= 2 * len(names) * 60).encode(
        x=integer_axis(frame[x], x), y=y, color=_line_colors(names),
        tooltip=["name:N", alt.Tooltip(f"{x}:Q", format="d"), alt.Tooltip("value:Q", format=".4g")],
    )
    layers: list[alt.Chart] = [lines]
    rule_layer = _rules(rules or [], x)
    if rule_layer is not None:
        layers.append(rule_layer)
    return alt.layer(*layers).properties(title=title, height=CHART_HEIGHT, autosize=FIT_WIDTH).resolve_scale(
        color="independent")


def compare_chart(frame: pl.DataFrame, x: str, smoothed: bool, y_title: str, title: str = "") -> alt.LayerChart:
    """One line per run; raw values always drawn, the smoothed line on top when asked for.

    frame: run, x column (epoch, step or seconds since the run started), value, smoothed.
    """
    if x == "seconds":
        per_unit, unit = time_unit(float(frame["seconds"].max() or 0.0))
        frame = frame.with_columns((pl.col("seconds") / per_unit).alias("time"))
        x_enc = alt.X("time:Q", title=f"time since the run started ({unit})",
                      axis=alt.Axis(format=",.0f" if unit == "s" else ",.1~f"))
        x_field, x_format = "time", ".3~f"
    else:
        x_enc, x_field, x_format = integer_axis(frame[x], x), x, "d"
    runs = list(dict.fromkeys(frame["run"].to_list()))
    colors = alt.Color("run:N", title=None, scale=alt.Scale(domain=runs, range=list(LINE_COLORS[:len(runs)])),
                       legend=alt.Legend(orient="bottom", labelLimit=320))
    base = alt.Chart(frame).encode(
        x=x_enc, color=colors,
        tooltip=["run:N", alt.Tooltip(f"{x_field}:Q", format=x_format), alt.Tooltip("value:Q", format=".4g")],
    )
    y = alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False), axis=alt.Axis(format=VALUE_FORMAT))
    raw = base.mark_line(point=frame.height <= 200, opacity=0.35 if smoothed else 1.0).encode(y=y)
    layers = [raw, base.mark_line(strokeWidth=2.5).encode(y=alt.Y("smoothed:Q", title=y_title))] if smoothed else [raw]
    return alt.layer(*layers).properties(title=title, height=CHART_HEIGHT + 40, autosize=FIT_WIDTH)


def history_chart(frame: pl.DataFrame, title: str, y_title: str, domain: tuple[float, float] | None = None) -> alt.Chart:
    """Machine history: one line per series against the time of day (frame: time, series, value)."""
    series = list(dict.fromkeys(frame["series"].to_list()))
    scale = alt.Scale(domain=list(domain)) if domain else alt.Scale(zero=True)
    return alt.Chart(frame).mark_line().encode(
        x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S", labelOverlap=True)),
        y=alt.Y("value:Q", title=y_title, scale=scale),
        color=alt.Color("series:N", title=None, scale=alt.Scale(domain=series, range=list(LINE_COLORS[:len(series)])),
                        legend=alt.Legend(orient="bottom", labelLimit=320)),
        tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", alt.Tooltip("value:Q", format=".1f")],
    ).properties(title=title, height=CHART_HEIGHT - 40, autosize=FIT_WIDTH)


def rank_ic_chart(daily: pl.DataFrame, title: str) -> alt.LayerChart:
    """Daily RankIC (thin) and its rolling mean (thick)."""
    base = alt.Chart(daily).encode(x=alt.X("Date:T", axis=date_axis(daily["Date"])))
    return alt.layer(
        base.mark_line(opacity=0.4, color=LINE_COLORS[0]).encode(y=alt.Y("rank_ic:Q", title="RankIC (per day)")),
        base.mark_line(strokeWidth=2.5, color=LINE_COLORS[1]).encode(y="rank_ic_rolling:Q"),
    ).properties(title=title, height=CHART_HEIGHT, autosize=FIT_WIDTH)


def decile_chart(deciles: pl.DataFrame, title: str) -> alt.Chart:
    """Mean forward return by prediction decile (1 = lowest predictions)."""
    return alt.Chart(deciles).mark_bar().encode(
        x=alt.X("decile:O", title="prediction decile (1 = lowest)"),
        y=alt.Y("mean_return:Q", title="mean forward return", axis=alt.Axis(format=".2%")),
        tooltip=["decile:O", alt.Tooltip("mean_return:Q", format=".4%")],
    ).properties(title=title, height=CHART_HEIGHT, autosize=FIT_WIDTH)


FEATURE_BAR_STEP = 18
"""Pixels per bar of the feature-weight chart: room for every label."""


def feature_weight_chart(weights: pl.DataFrame, uniform: float, title: str) -> alt.LayerChart:
    """Horizontal bars of mean variable-selection weights (frame: feature, mean_weight, in the
    order to draw), every bar labelled, with a labelled rule at the uniform weight 1/F."""
    order = weights["feature"].to_list()
    bars = alt.Chart(weights).mark_bar(color=LINE_COLORS[0]).encode(
        x=alt.X("mean_weight:Q", title="mean selection weight", scale=alt.Scale(domainMin=0)),
        y=alt.Y("feature:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=360)),
        tooltip=["feature:N", alt.Tooltip("mean_weight:Q", format=".4f")],
    )
    line = pl.DataFrame({"uniform": [uniform], "label": [f"uniform 1/{round(1 / uniform)} = {uniform:.4f}"]})
    rule = alt.Chart(line).mark_rule(strokeDash=RULE_DASH, strokeWidth=2, color=RULE_COLORS[1]).encode(
        x="uniform:Q", tooltip=["label:N"])
    text = alt.Chart(line).mark_text(align="left", dx=4, dy=-6, color=RULE_COLORS[1]).encode(
        x="uniform:Q", y=alt.value(0), text="label:N")
    return alt.layer(bars, rule, text).properties(title=title, height=alt.Step(FEATURE_BAR_STEP), autosize=FIT_WIDTH)


def coverage_chart(per_day: pl.DataFrame) -> alt.Chart:
    """Stocks per day of a dataset (frame: Date, n_stocks)."""
    return alt.Chart(per_day).mark_area(opacity=0.6).encode(
        x=alt.X("Date:T", axis=date_axis(per_day["Date"])), y=alt.Y("n_stocks:Q", title="stocks"),
    ).properties(height=160, autosize=FIT_WIDTH)
