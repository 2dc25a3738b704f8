"""The chart builders' Vega-Lite specs: integer epoch/step ticks, units on every axis, time
axes from the run's start, rule legends, log scales that never draw an empty frame, and a
feature-weight chart that labels every bar."""

from __future__ import annotations

import polars as pl

from ui import charts


def _spec(chart) -> dict:
    return chart.to_dict()


def _layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def _frame(rows):
    return pl.DataFrame(rows, schema=["name", "epoch", "step", "value"], orient="row")


def _chart(name: str) -> charts.RunChart:
    return next(c for c in charts.RUN_CHARTS if name in c.names)


def test_one_epoch_gets_an_integer_axis_and_a_real_domain():
    spec = _spec(charts.metric_chart(_frame([("val/rank_ic", 1, 10, 0.02)]), _chart("val/rank_ic"), log=False))
    x = _layers(spec)[0]["encoding"]["x"]
    assert x["axis"]["format"] == "d" and x["axis"]["values"] == [1, 2]  # never "1.000000"
    assert x["scale"]["domain"] == [1, 2]


def test_every_run_chart_has_a_y_title_with_its_unit_and_sharpes_say_if_annualised():
    assert all(c.y_title for c in charts.RUN_CHARTS)
    assert "annualised" in _chart("val/ls_sharpe").y_title and "not annualised" in _chart("val/jpx_sharpe").y_title
    assert charts.metric_unit("val/ls_sharpe_5d") == "Sharpe, annualised (x sqrt 252), 5d horizon"
    assert charts.metric_unit("val/rank_ic").startswith("RankIC")
    assert _chart("train/loss_step").x == "step"


def test_rules_have_a_legend_and_colours_differ_from_the_lines():
    rules = [{"epoch": 2.0, "label": "phase fan starts", "kind": "phase start"},
             {"epoch": 3.0, "label": "best epoch", "kind": "best epoch"}]
    frame = _frame([("train/loss", e, e, 1.0 / e) for e in (1, 2, 3)] + [("val/loss", e, e, 2.0 / e) for e in (1, 2, 3)])
    spec = _spec(charts.metric_chart(frame, _chart("train/loss"), log=False, rules=rules))
    lines, rule = _layers(spec)
    assert rule["encoding"]["color"]["legend"] is not None and "legend" in rule["encoding"]["color"]
    assert rule["encoding"]["color"]["scale"]["domain"] == ["phase start", "best epoch"]
    line_colors = set(lines["encoding"]["color"]["scale"]["range"])
    assert len(line_colors) == 2 and not line_colors & set(rule["encoding"]["color"]["scale"]["range"])
    assert lines["encoding"]["y"]["title"] == "loss (weighted sum of terms)"


def test_log_scale_with_only_zeros_draws_a_linear_chart_not_an_empty_frame():
    frame = _frame([("gat/grad_norm", 1, 10, 0.0)])      # phase 0: the GAT has no gradient yet
    spec = _spec(charts.metric_chart(frame, _chart("gat/grad_norm"), log=True))
    y = _layers(spec)[0]["encoding"]["y"]
    assert "linear" in spec["title"] and y.get("scale", {}).get("type") != "log"
    data = next(iter(spec["datasets"].values()))
    assert len(data) == 1
    frame = _frame([("gat/grad_norm", 1, 10, 0.0), ("gat/grad_norm", 2, 20, 0.5)])
    spec = _spec(charts.metric_chart(frame, _chart("gat/grad_norm"), log=True))
    assert _layers(spec)[0]["encoding"]["y"]["scale"]["type"] == "log"
    assert [r["value"] for r in next(iter(spec["datasets"].values()))] == [0.5]


def test_compare_time_axis_is_rounded_in_a_readable_unit():
    frame = pl.DataFrame({"run": ["a", "a"], "epoch": [1, 2], "step": [1, 2], "seconds": [4492.634276, 12000.0],
                          "value": [0.1, 0.2], "smoothed": [0.1, 0.2]})
    spec = _spec(charts.compare_chart(frame, "seconds", smoothed=False, y_title="RankIC"))
    x = _layers(spec)[0]["encoding"]["x"]
    assert x["title"] == "time since the run started (h)" and x["axis"]["format"] == ",.1~f"
    assert charts.time_unit(100) == (1.0, "s") and charts.time_unit(600) == (60.0, "min")


def test_feature_weight_chart_labels_every_bar_and_shows_the_uniform_line():
    weights = pl.DataFrame({"feature": [f"feat_{i}" for i in range(20)], "mean_weight": [0.05] * 20})
    spec = _spec(charts.feature_weight_chart(weights, 1 / 49, "top 20"))
    bars, rule, text = _layers(spec)
    assert bars["encoding"]["y"]["axis"]["labelOverlap"] is False
    assert spec["height"] == {"step": charts.FEATURE_BAR_STEP}
    assert rule["mark"]["type"] == "rule" and rule["mark"]["strokeWidth"] >= 2
    assert text["mark"]["type"] == "text"


def test_date_axes_show_the_year():
    daily = pl.DataFrame({"Date": pl.date_range(pl.date(2023, 1, 1), pl.date(2023, 3, 1), eager=True)}).with_columns(
        rank_ic=pl.lit(0.01), rank_ic_rolling=pl.lit(0.01), cum_long_short=pl.lit(0.0))
    for chart in (charts.rank_ic_chart(daily, "t"), charts.coverage_chart(daily.with_columns(n_stocks=pl.lit(3)))):
        assert "%Y" in _layers(_spec(chart))[0]["encoding"]["x"]["axis"]["format"]
