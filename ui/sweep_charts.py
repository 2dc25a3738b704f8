"""Altair charts and tables of a study (no Streamlit here): the trials table, the optimisation
history, parallel coordinates of the settings against the value, parameter importances."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import polars as pl

from atft_core.sweep.trials import StudyView

from .charts import CHART_HEIGHT, FEATURE_BAR_STEP, FIT_WIDTH, metric_unit

STATE_COLORS = {"complete": "#1f77b4", "pruned": "#ff7f0e", "fail": "#d62728", "running": "#2ca02c",
                "waiting": "#9e9e9e"}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(view: StudyView) -> pl.DataFrame:
    """One row per trial: number, state, value, each searched field, the run (a link to its page), why."""
    names = [p.name for p in view.spec.space]
    rows = []
    for t in view.trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state, "value": t.value}
        row.update({n: _text(t.params.get(n)) for n in names})
        row.update({"epochs": t.epochs_reported, "run": f"run?run={t.run_id}" if t.run_id else None,
                    "note": t.reason or (f"runs trial {t.retry_of} again" if t.retry_of is not None else "")})
        rows.append(row)
    schema = {"trial": pl.Int64, "state": pl.String, "value": pl.Float64, **{n: pl.String for n in names},
              "epochs": pl.Int64, "run": pl.String, "note": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def history_frame(view: StudyView) -> pl.DataFrame:
    """trial, value, best (so far), state: the finished trials with a value, in trial order."""
    better = max if view.spec.direction == "maximize" else min
    rows, best = [], None
    for t in sorted(view.trials, key=lambda t: t.number):
        if t.state != "complete" or t.value is None:
            continue
        best = t.value if best is None else better(best, t.value)
        rows.append({"trial": t.number, "value": t.value, "best": best, "state": t.state})
    return pl.DataFrame(rows, schema={"trial": pl.Int64, "value": pl.Float64, "best": pl.Float64, "state": pl.String})


def history_chart(frame: pl.DataFrame, metric: str) -> alt.LayerChart:
    """Each complete trial's value (points) and the best so far (a step line), against the trial number."""
    x = alt.X("trial:Q", title="trial", axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("value:Q", title=f"{metric_unit(metric)}, best epoch", scale=alt.Scale(zero=False))
    points = alt.Chart(frame).mark_circle(size=50).encode(
        x=x, y=y, tooltip=["trial", alt.Tooltip("value:Q", format=".5f", title=metric)])
    best = alt.Chart(frame).mark_line(interpolate="step-after", color="#ff7f0e").encode(
        x=x, y=alt.Y("best:Q", scale=alt.Scale(zero=False)),
        tooltip=["trial", alt.Tooltip("best:Q", format=".5f", title="best so far")])
    return alt.layer(points, best).properties(height=CHART_HEIGHT, title="Optimisation history (line: best so far)",
                                              autosize=FIT_WIDTH)


def parallel_frame(view: StudyView) -> pl.DataFrame:
    """Long frame for parallel coordinates: per complete trial and axis (each searched field, then
    the value), its position in [0, 1] along that axis (log fields on a log scale, choices evenly
    spaced), the shown text, and the trial's value (the colour)."""
    done = [t for t in view.trials if t.state == "complete" and t.value is not None]
    axes = [p.name for p in view.spec.space] + ["value"]
    rows = []
    for order, param in enumerate(view.spec.space):
        positions = _positions(param, [t.params.get(param.name) for t in done])
        for t, pos in zip(done, positions):
            rows.append({"trial": t.number, "axis": param.name, "order": order, "position": pos,
                         "shown": _text(t.params.get(param.name)), "value": t.value})
    values = [t.value for t in done]
    for t, pos in zip(done, _scale(values)):
        rows.append({"trial": t.number, "axis": "value", "order": len(axes) - 1, "position": pos,
                     "shown": _text(t.value), "value": t.value})
    return pl.DataFrame(rows, schema={"trial": pl.Int64, "axis": pl.String, "order": pl.Int64, "position": pl.Float64,
                                      "shown": pl.String, "value": pl.Float64})


def _positions(param: Any, values: list[Any]) -> list[float]:
    if param.choices:
        keys = [_text(c) if not isinstance(c, tuple) else ",".join(map(str, c)) for c in param.choices]
        index = {k: i for i, k in enumerate(keys)}
        span = max(1, len(keys) - 1)
        return [index.get(_choice_key(v), 0) / span for v in values]
    low, high = float(param.low), float(param.high)
    if param.log:
        low, high = math.log(low), math.log(high)
        values = [math.log(float(v)) for v in values]
    return [(float(v) - low) / (high - low) for v in values]


def _choice_key(value: Any) -> str:
    return _text(value) if not isinstance(value, (list, tuple)) else ",".join(map(str, value))


def _scale(values: list[float]) -> list[float]:
    if not values:
        return []
    low, high = min(values), max(values)
    return [0.5 if high == low else (v - low) / (high - low) for v in values]


def parallel_chart(frame: pl.DataFrame, metric: str) -> alt.Chart:
    """One line per complete trial across the searched fields and the value, coloured by the value."""
    axis_order = frame.select("axis", "order").unique().sort("order")["axis"].to_list()
    return alt.Chart(frame).mark_line(opacity=0.6, point=True).encode(
        x=alt.X("axis:N", sort=axis_order, title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("position:Q", title="place in the range", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".0%")),
        detail="trial:N",
        color=alt.Color("value:Q", title=metric, scale=alt.Scale(scheme="viridis")),
        tooltip=["trial", "axis", "shown", alt.Tooltip("value:Q", format=".5f")],
    ).properties(height=CHART_HEIGHT, title="Parallel coordinates (log fields on a log scale)", autosize=FIT_WIDTH)


def importance_chart(importances: dict[str, float]) -> alt.Chart:
    """Each searched field's importance (Optuna's PED-ANOVA, shares summing to 1), largest first."""
    frame = pl.DataFrame({"field": list(importances), "importance": list(importances.values())})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("importance:Q", title="share of the importance (PED-ANOVA)", axis=alt.Axis(format=".0%")),
        y=alt.Y("field:N", sort="-x", title=None, axis=alt.Axis(labelLimit=360)),
        tooltip=["field", alt.Tooltip("importance:Q", format=".1%")],
    ).properties(height=alt.Step(FEATURE_BAR_STEP), title="Parameter importances", autosize=FIT_WIDTH)
