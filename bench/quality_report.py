"""Analysis and rendering of the quality report (used by bench/quality.py).

Input is the `results` dict that quality.py collects from the run folders and saves as
docs/quality/results.json: protocol facts, settings, machine, the shared test-date axis and one
record per row. A row record has ``name, group, label, kind, seed, lag, state, train_seconds,
run_seconds``, ``summary[h][split]`` (atft_core.metrics.summarize of the run's predictions),
``intervals[h][split]`` = {``rank_ic``, ``ls_sharpe``: bootstrap.Interval.to_dict()},
``costs[h][split]`` = {``turnover``, ``turnover_per_day``, ``holding_days``, ``break_even_bps``,
``days``, ``levels``: [{``cost_bps``, ``mean_daily``, ``sharpe``}]} at ``settings["cost_bps"]``
and, for the test split, ``daily[h]`` = {``rank_ic``, ``long_short``, ``turnover``} aligned with
``results["test_dates"]`` (None where a row has no value) and ``deciles[h]``; for validation
``daily_val[h]`` = {``rank_ic``} aligned with ``results["val_dates"]``. Rows of the groups in
STATEMENT_GROUPS (their own dataset and window, described by ``results["statements"]["lines"]``)
have a section of their own. Records collected before intervals and costs existed render with
"n/a" in those places.

Everything here is a pure function of that dict (no training, no file reading), so the markdown
and the plots can be regenerated from results.json alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atft_core import bootstrap, costs
from atft_core.metrics import paired_t  # noqa: F401  (part of this module's API: the report's t)

DEEP_KIND = "atft_gat_fan"
TARGET_RATIO = 1.25
"""The issue's target: default test RankIC (1d) >= this x the best baseline's ..."""
TARGET_T = 2.0
"""... and a paired t-statistic against it of at least this."""
ROLLING_WINDOW = 20
"""Days in the rolling mean of the daily RankIC plot."""
PNG_SCALE = 1.25
"""Pixel scale of the PNG export (readable, and small enough to commit)."""
VERDICT_HORIZON = "1"
"""Horizon (days, as a results key) on which the best baseline is chosen and the target judged."""
TABLE_METRICS = (("ic", "IC", 4), ("rank_ic", "RankIC", 4), ("rank_icir", "RankICIR", 3),
                 ("ls_sharpe", "LS Sharpe", 2), ("jpx_sharpe", "JPX Sharpe", 3))
"""(summary key, column title, decimals) for each split's block of columns."""
INTERVAL_METRICS = ("rank_ic", "ls_sharpe")
"""Columns shown with their 95% block-bootstrap interval, [low, high] after the value."""
STATEMENT_GROUPS = ("fin_without", "fin_with", "fin_factor")
"""Row groups of the financial-statement comparison: its own dataset and training window, so
these rows never enter the main tables, the best-baseline choice or the verdict."""
STATEMENT_HORIZONS = ("1", "20")
"""Horizons of the statement comparison's tables (issue 16: 1-day and 20-day)."""
STATEMENT_COST_BPS = 10.0
"""The cost level (bp per side) of the statement tables' net Sharpe column."""


# ---------------------------------------------------------------------------------------------
# Statistics


def report_horizons(rows: list[dict]) -> list[str]:
    """Every horizon the rows have numbers for, as results keys, shortest first."""
    return sorted({h for r in rows for h in r.get("summary", {})}, key=int)


def main_rows(rows: list[dict]) -> list[dict]:
    """The rows of the main comparison (the statement group has its own window and section)."""
    return [r for r in rows if r["group"] not in STATEMENT_GROUPS]


def metric(row: dict, split: str, key: str, horizon: str = VERDICT_HORIZON) -> float | None:
    """One summary value of a row (None when missing)."""
    return row.get("summary", {}).get(horizon, {}).get(split, {}).get(key)


def best_baseline(rows: list[dict], lag: int = 0) -> dict | None:
    """The baseline row (of this execution lag) with the highest VALIDATION RankIC (1d).

    The test year never enters the choice. None when no baseline row has a validation RankIC.
    """
    candidates = [r for r in main_rows(rows) if r["kind"] != DEEP_KIND and r["lag"] == lag
                  and metric(r, "val", "rank_ic") is not None]
    return max(candidates, key=lambda r: metric(r, "val", "rank_ic")) if candidates else None


def daily(row: dict, horizon: str, series: str = "rank_ic", split: str = "test") -> list:
    """A row's daily series for a horizon: test ones aligned with results['test_dates'], the
    validation RankIC (split 'val') with results['val_dates']."""
    return row.get("daily" if split == "test" else "daily_val", {}).get(horizon, {}).get(series, [])


def mean_daily(rows: list[dict], horizon: str, split: str = "test") -> list:
    """Per-date mean of the rows' daily RankIC (None where any row lacks the date)."""
    arrays = [np.array([np.nan if v is None else v for v in daily(r, horizon, split=split)], dtype=float) for r in rows]
    if not arrays:
        return []
    mean = np.mean(np.stack(arrays), axis=0)
    return [float(v) if np.isfinite(v) else None for v in mean]


def t_against(series: list, base: dict | None, horizon: str) -> tuple[float | None, int]:
    """Paired t of a daily test RankIC series minus the baseline row's (None without a baseline)."""
    if base is None or not series:
        return None, 0
    return paired_t(series, daily(base, horizon))


def seed_stats(rows: list[dict], split: str, key: str, horizon: str) -> tuple[float | None, float | None]:
    """Mean and std (ddof=1; None for one seed) of a metric over seed rows."""
    values = [v for v in (metric(r, split, key, horizon) for r in rows) if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _difference(a: list, b: list) -> np.ndarray:
    """a - b per date (NaN where either is missing); [] when the series are not aligned."""
    x, y = (np.array([np.nan if v is None else v for v in z], dtype=float) for z in (a, b))
    return x - y if x.shape == y.shape else np.array([])


def default_rows(rows: list[dict], lag: int = 0) -> list[dict]:
    """The default-configuration seed rows of one execution lag."""
    return [r for r in rows if r["group"] == "default" and r["lag"] == lag]


def verdict(rows: list[dict]) -> dict[str, Any]:
    """Judge the issue's target on the test year, 1d: ratio of mean RankICs and paired t.

    The model side is the mean over the default-config seeds; its t-statistic uses the per-date
    mean of the seeds' daily RankIC. Returns the numbers and ``met`` (None if undecidable).
    """
    seeds = default_rows(rows)
    base = best_baseline(rows)
    out: dict[str, Any] = {"met": None, "n_seeds": len(seeds), "baseline": base["name"] if base else None}
    if not seeds or base is None:
        out["reason"] = "no default-config run" if not seeds else "no baseline run"
        return out
    model_ric, model_std = seed_stats(seeds, "test", "rank_ic", VERDICT_HORIZON)
    base_ric = metric(base, "test", "rank_ic")
    t, n = t_against(mean_daily(seeds, VERDICT_HORIZON), base, VERDICT_HORIZON)
    seed_ts = [t_against(daily(r, VERDICT_HORIZON), base, VERDICT_HORIZON)[0] for r in seeds]
    ratio_ok = model_ric is not None and base_ric is not None and model_ric >= TARGET_RATIO * base_ric
    t_ok = t is not None and t >= TARGET_T
    seed_mean = bootstrap.mean_interval(mean_daily(seeds, VERDICT_HORIZON), int(VERDICT_HORIZON))
    difference = bootstrap.mean_interval(_difference(mean_daily(seeds, VERDICT_HORIZON), daily(base, VERDICT_HORIZON)),
                                         int(VERDICT_HORIZON))
    out.update(model_rank_ic=model_ric, model_std=model_std, baseline_rank_ic=base_ric,
               model_interval=seed_mean, baseline_interval=interval(base, "test", "rank_ic"),
               difference_interval=difference, baseline_val_rank_ic=metric(base, "val", "rank_ic"),
               ratio=(model_ric / base_ric) if model_ric is not None and base_ric else None,
               t=t, n_days=n, seed_t=seed_ts, ratio_ok=ratio_ok, t_ok=t_ok, met=ratio_ok and t_ok)
    return out


# ---------------------------------------------------------------------------------------------
# After trading costs


def cost_levels(results: dict[str, Any]) -> tuple[float, ...]:
    """The report's cost levels (bp per side), as collected."""
    return tuple((results.get("settings") or {}).get("cost_bps") or costs.DEFAULT_COST_BPS)


def book(row: dict, split: str, horizon: str) -> dict:
    """A row's decile book after costs (turnover, holding, break-even, levels); {} if not recorded."""
    return row.get("costs", {}).get(horizon, {}).get(split) or {}


def level(row: dict, split: str, horizon: str, cost: float) -> dict:
    """A row's net book at one cost level ({} if not recorded)."""
    return next((lv for lv in book(row, split, horizon).get("levels", []) if lv["cost_bps"] == cost), {})


def net_daily(row: dict, horizon: str, cost: float) -> np.ndarray:
    """A row's daily test net h-day book return at `cost` bp per side (NaN where unknown)."""
    series = row.get("daily", {}).get(horizon, {})
    gross, tau = (np.array([np.nan if v is None else v for v in series.get(k, [])], dtype=float)
                  for k in ("long_short", "turnover"))
    if not len(tau):
        return np.full(len(gross), np.nan)
    return costs.net_returns(gross, tau, cost)


def mean_net_daily(rows: list[dict], horizon: str, cost: float) -> np.ndarray:
    """Per-date mean of the rows' daily net returns (NaN where any row lacks the date)."""
    arrays = [net_daily(r, horizon, cost) for r in rows]
    return np.mean(np.stack(arrays), axis=0) if arrays else np.array([])


def after_costs(rows: list[dict], horizon: str, lag: int, levels: tuple[float, ...]) -> list[dict[str, Any]]:
    """The default model (mean of its seeds' daily net returns) against the best baseline on the
    test days both have, at each cost: net Sharpe of each, the daily difference's 95% interval
    (bp per day) and who wins (only when the interval excludes 0). [] without both sides."""
    seeds, base = default_rows(rows, lag), best_baseline(rows, lag)
    if not seeds or base is None:
        return []
    h = int(horizon)
    out = []
    for cost in levels:
        model, ref = mean_net_daily(seeds, horizon, cost), net_daily(base, horizon, cost)
        if len(model) != len(ref):
            return []
        both = np.isfinite(model) & np.isfinite(ref)
        if both.sum() < bootstrap.MIN_DAYS:  # rows collected before turnover was recorded
            return []
        diff = bootstrap.mean_interval((model[both] - ref[both]) / h / costs.BPS, h)
        winner = ("the default model" if diff.low is not None and diff.low > 0 else
                  f"`{base['name']}`" if diff.high is not None and diff.high < 0 else None)
        leader = "the default model" if (diff.value or 0) > 0 else f"`{base['name']}`"
        out.append({"cost_bps": cost, "days": int(both.sum()), "model_sharpe": bootstrap.sharpe_value(model[both], h),
                    "baseline_sharpe": bootstrap.sharpe_value(ref[both], h), "difference": diff,
                    "winner": winner, "leader": leader, "baseline": base["name"]})
    return out


def _best_net_row(rows: list[dict], horizon: str, lag: int, cost: float) -> tuple[str, float] | None:
    scored = [(r["label"], level(r, "test", horizon, cost).get("sharpe", {}).get("value")) for r in rows
              if r["lag"] == lag]
    scored = [(label, v) for label, v in scored if v is not None]
    return max(scored, key=lambda x: x[1]) if scored else None


def after_costs_lines(results: dict[str, Any]) -> list[str]:
    """Who wins after costs, per reported horizon (test year, execution lag 0), in words and a table."""
    rows, levels = main_rows(results["rows"]), cost_levels(results)
    lines = []
    for horizon in report_horizons(rows):
        found = after_costs(rows, horizon, 0, levels)
        if not found:
            continue
        base = found[0]["baseline"]
        lines += [f"**After trading costs, {horizon}-day horizon** (test year, lag 0; the default model = the mean "
                  f"of its seeds' daily net returns, against the best baseline `{base}`, on the "
                  f"{found[0]['days']} test days both have a turnover):", "",
                  "| cost per side | default net Sharpe | baseline net Sharpe | difference, bp/day [95% interval] "
                  "| wins | highest net Sharpe of any row |", "|---|---|---|---|---|---|"]
        for f in found:
            d = f["difference"]
            best = _best_net_row(rows, horizon, 0, f["cost_bps"])
            wins = f["winner"] or f"undecided (ahead: {f['leader']}; the interval includes 0)"
            lines.append(f"| {costs.format_bps(f['cost_bps'])} | {_fmt(f['model_sharpe'], 2)} | "
                         f"{_fmt(f['baseline_sharpe'], 2)} | {d.text(2)} | {wins} | "
                         + ("n/a" if best is None else f"{best[0]} ({best[1]:.2f})") + " |")
        lines += ["", _after_costs_sentence(found, horizon), ""]
    return lines


def _after_costs_sentence(found: list[dict], horizon: str) -> str:
    settled = [f for f in found if f["winner"]]
    if not settled:
        return (f"Which wins after costs ({horizon}-day): neither, at any of these costs: every interval of the "
                "difference includes 0.")
    parts = [f"{f['winner']} at {costs.format_bps(f['cost_bps'])}" for f in settled]
    return f"Which wins after costs ({horizon}-day): " + "; ".join(parts) + (
        "; undecided at the other levels." if len(settled) < len(found) else ".")


def cost_table(rows: list[dict], horizon: str, lag: int, levels: tuple[float, ...]) -> list[str]:
    """Markdown lines: every row's decile book after costs (turnover, holding, break-even, net
    Sharpe with its interval at each cost level) on the test year; [] without cost records."""
    subset = [r for r in rows if r["lag"] == lag and book(r, "test", horizon)]
    if not subset:
        return []
    header = (["row", "test turnover/day", "holding (days)", "break-even valid (bp/side)", "break-even test (bp/side)"]
              + [f"test net Sharpe at {costs.format_bps(c)}" for c in levels])
    lines = [f"After trading costs ({horizon}-day books, lag {lag}):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in subset:
        test, val = book(r, "test", horizon), book(r, "val", horizon)
        tau = test.get("turnover_per_day")
        cells = ["n/a" if tau is None else f"{100 * tau:.1f}%", _fmt(test.get("holding_days"), 1),
                 _fmt(val.get("break_even_bps"), 1), _fmt(test.get("break_even_bps"), 1)]
        for c in levels:
            sharpe = level(r, "test", horizon, c).get("sharpe") or {}
            cells.append(bootstrap.Interval(sharpe.get("value"), sharpe.get("low"), sharpe.get("high"),
                                            sharpe.get("days", 0), sharpe.get("block", 0)).text(2))
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def interval(row: dict, split: str, key: str, horizon: str = VERDICT_HORIZON) -> dict:
    """A row's bootstrap interval of ``rank_ic`` or ``ls_sharpe`` ({} when not recorded)."""
    return row.get("intervals", {}).get(horizon, {}).get(split, {}).get(key) or {}


def table_value(row: dict, split: str, key: str, horizon: str) -> float | None:
    """The value a table cell shows: the long-short Sharpe of h-day books (sqrt(252 / h)) from
    the interval record; other metrics from the summary. Rows collected before intervals existed
    show the logged 1-day Sharpe (the same definition) and no multi-day one."""
    if key in INTERVAL_METRICS:
        found = interval(row, split, key, horizon)
        if found:
            return found.get("value")
        if key == "ls_sharpe" and horizon != "1":
            return None
    return metric(row, split, key, horizon)


def _cell(row: dict, split: str, key: str, horizon: str, decimals: int) -> str:
    text = _fmt(table_value(row, split, key, horizon), decimals)
    found = interval(row, split, key, horizon) if key in INTERVAL_METRICS else {}
    if found.get("low") is None or found.get("high") is None:
        return text
    return f"{text} [{found['low']:.{decimals}f}, {found['high']:.{decimals}f}]"


def _cells(row: dict, horizon: str) -> list[str]:
    return [_cell(row, split, key, horizon, d) for split in ("val", "test") for key, _, d in TABLE_METRICS]


def _seed_cells(seeds: list[dict], horizon: str) -> list[str]:
    cells = []
    for split in ("val", "test"):
        for key, _, d in TABLE_METRICS:
            values = [v for v in (table_value(r, split, key, horizon) for r in seeds) if v is not None]
            mean = float(np.mean(values)) if values else None
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            cells.append(_fmt(mean, d) + ("" if std is None else f" ± {_fmt(std, d)}"))
    return cells


def _seconds(row: dict) -> str:
    train, run = row.get("train_seconds"), row.get("run_seconds")
    return f"{_fmt(train, 0)} / {_fmt(run, 0)}"


def _t_cell(series: list, base: dict | None, horizon: str, is_base: bool = False) -> str:
    if is_base:
        return "(best)"
    t, n = t_against(series, base, horizon)
    return "n/a" if t is None else f"{t:.2f} (n={n})"


def _seed_line(seeds: list[dict], base: dict | None, horizon: str) -> str:
    """Table line of the default config over its seeds: mean ± std per cell."""
    train = np.mean([s.get("train_seconds") or 0.0 for s in seeds])
    cells = _seed_cells(seeds, horizon) + [_t_cell(mean_daily(seeds, horizon), base, horizon), f"{train:.0f} (mean)"]
    return f"| **default, mean ± std of {len(seeds)} seeds** | " + " | ".join(cells) + " |"


def table(rows: list[dict], horizon: str, lag: int) -> list[str]:
    """Markdown table lines for one horizon and execution lag (baselines, default, ablations)."""
    header = (["row"] + [f"{s} {title}" for s in ("valid", "test") for _, title, _ in TABLE_METRICS]
              + ["t vs best (test RankIC)", "train / run s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = best_baseline(rows, lag)
    subset = [r for r in rows if r["lag"] == lag]
    seeds = default_rows(rows, lag)
    for r in subset:
        if len(seeds) > 1 and r is seeds[0]:
            lines.append(_seed_line(seeds, base, horizon))
        is_base = base is not None and r["name"] == base["name"]
        cells = _cells(r, horizon) + [_t_cell(daily(r, horizon), base, horizon, is_base), _seconds(r)]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return lines


def headroom_lines(results: dict[str, Any]) -> list[str]:
    """Single input features as factors against the best baseline (results['headroom'])."""
    room, base = results.get("headroom") or [], best_baseline(results["rows"])
    if not room or base is None:
        return []
    base_ric = metric(base, "test", "rank_ic")
    lines = [
        "## Headroom: single inputs as one-line factors", "",
        "Every input feature used as a factor on its own (sign as stated), scored on the best baseline's "
        "validation and test rows (1-day horizon, lag 0). It is computed after the rows are trained and "
        "feeds back into nothing: the rows picked by the test year are an upper bound on what any single "
        "input could have reached there, in hindsight; the row picked by validation is the honest "
        "single-factor choice.", "",
        "| input factor | picked by | valid RankIC | test RankIC | x best baseline (test) | t vs best (test RankIC) |",
        "|---|---|---|---|---|---|",
    ]
    for e in room:
        ratio = f"{e['test_rank_ic'] / base_ric:.2f}x" if base_ric else "n/a"
        name = ("-" if e["sign"] < 0 else "") + e["feature"].removeprefix("feat_")
        lines.append(f"| {name} | {e['picked_by']} | {_fmt(e['val_rank_ic'], 4)} | {_fmt(e['test_rank_ic'], 4)} "
                     f"| {ratio} | {_t_cell(e['rank_ic'], base, VERDICT_HORIZON)} |")
    top = room[0]
    t, _ = t_against(top["rank_ic"], base, VERDICT_HORIZON)
    reach = "would" if base_ric and top["test_rank_ic"] >= TARGET_RATIO * base_ric and t is not None and t >= TARGET_T \
        else "would not"
    lines += ["", f"The best single input on the test year, picked on the test year itself, {reach} meet the "
              f"target (>= {TARGET_RATIO}x and t >= {TARGET_T}).", ""]
    return lines


STATEMENT_METRICS = (("rank_ic", "RankIC", 4), ("rank_icir", "RankICIR", 3), ("ls_sharpe", "LS Sharpe", 2))
"""(summary key, column title, decimals) per split in the statement tables."""


def _book_cells(rows: list[dict], horizon: str) -> list[str]:
    """Test break-even cost and net Sharpe at STATEMENT_COST_BPS (mean over the rows)."""
    even = [v for v in (book(r, "test", horizon).get("break_even_bps") for r in rows) if v is not None]
    net = [v for v in (level(r, "test", horizon, STATEMENT_COST_BPS).get("sharpe", {}).get("value") for r in rows)
           if v is not None]
    return [_fmt(float(np.mean(even)) if even else None, 1), _fmt(float(np.mean(net)) if net else None, 2)]


def _statement_row(label: str, rows: list[dict], horizon: str) -> str:
    """One table line: a single row with its intervals, or several seeds as mean ± std."""
    if len(rows) == 1:
        cells = [_cell(rows[0], split, key, horizon, d) for split in ("val", "test") for key, _, d in STATEMENT_METRICS]
    else:
        cells = []
        for split in ("val", "test"):
            for key, _, d in STATEMENT_METRICS:
                values = [v for v in (table_value(r, split, key, horizon) for r in rows) if v is not None]
                cells.append(_fmt(float(np.mean(values)) if values else None, d)
                             + (f" ± {_fmt(float(np.std(values, ddof=1)), d)}" if len(values) > 1 else ""))
    seconds = _seconds(rows[0]) if len(rows) == 1 else f"{np.mean([r.get('train_seconds') or 0.0 for r in rows]):.0f} (mean)"
    return f"| {label} | " + " | ".join(cells + _book_cells(rows, horizon) + [seconds]) + " |"


def statement_comparison(rows: list[dict], horizon: str, lag: int) -> dict[str, Any]:
    """With minus without the statement features, per split: the difference of the seeds' mean
    daily RankIC paired over days (value, t, n) and each seed's own paired t ({} without both)."""
    with_, without = ([r for r in rows if r["group"] == g and r["lag"] == lag] for g in ("fin_with", "fin_without"))
    if not with_ or not without:
        return {}
    out: dict[str, Any] = {"seeds": len(with_)}
    by_seed = {r["seed"]: r for r in without}
    for split in ("val", "test"):
        diff = _difference(mean_daily(with_, horizon, split), mean_daily(without, horizon, split))
        t, n = paired_t(mean_daily(with_, horizon, split), mean_daily(without, horizon, split))
        seed_t = [paired_t(daily(r, horizon, split=split), daily(by_seed[r["seed"]], horizon, split=split))[0]
                  for r in with_ if r["seed"] in by_seed]
        out[split] = {"difference": float(np.nanmean(diff)) if len(diff) and np.isfinite(diff).any() else None,
                      "t": t, "n": n, "seed_t": seed_t}
    return out


def _comparison_line(c: dict[str, Any], horizon: str) -> str:
    parts = []
    for split, name in (("val", "validation"), ("test", "test")):
        x = c[split]
        seeds = ", ".join("n/a" if t is None else f"{t:.2f}" for t in x["seed_t"])
        parts.append(f"{name} {_fmt(x['difference'], 4)} (paired t {_fmt(x['t'], 2)} over {x['n']} days; "
                     f"per seed {seeds})")
    overlap = "" if horizon == "1" else f" ({horizon}-day targets overlap: these t overstate significance)"
    return (f"With minus without, {horizon}-day (mean of the {c['seeds']} seeds' daily RankIC, paired over days)"
            f"{overlap}: " + "; ".join(parts) + ".")


def statement_lines(results: dict[str, Any]) -> list[str]:
    """The financial-statement section: its window, then per horizon and lag the factors, the
    default model without and with the statement features, and their paired difference."""
    rows = [r for r in results["rows"] if r["group"] in STATEMENT_GROUPS]
    facts = results.get("statements") or {}
    if not rows:
        return []
    lines = ["## Financial statements: the default model with and without them (issue 16)", "",
             *[f"- {line}" for line in facts.get("lines", [])], ""]
    header = (["row"] + [f"{s} {title}" for s in ("valid", "test") for _, title, _ in STATEMENT_METRICS]
              + ["test break-even (bp/side)", f"test net Sharpe at {costs.format_bps(STATEMENT_COST_BPS)}",
                 "train / run s"])
    for horizon in STATEMENT_HORIZONS:
        for lag in (0, 1):
            subset = [r for r in rows if r["lag"] == lag and horizon in r.get("summary", {})]
            if not subset:
                continue
            lines += [f"### {horizon}-day horizon, execution lag {lag}", "",
                      "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += [_statement_row(r["label"], [r], horizon) for r in subset if r["group"] == "fin_factor"]
            for group in ("fin_without", "fin_with"):
                seeds = [r for r in subset if r["group"] == group]
                if len(seeds) > 1:
                    lines.append(_statement_row(f"**{seeds[0]['label'].rsplit(', seed', 1)[0]}, mean ± std of "
                                                f"{len(seeds)} seeds**", seeds, horizon))
                lines += [_statement_row(r["label"], [r], horizon) for r in seeds]
            found = statement_comparison(subset, horizon, lag)
            lines += ["", _comparison_line(found, horizon), ""] if found else [""]
    return lines


def verdict_lines(v: dict[str, Any]) -> list[str]:
    """The plain-language verdict paragraph."""
    if v["met"] is None:
        return [f"**Target undecided:** {v['reason']} in the results, so the comparison cannot be made."]
    spread = "" if v["model_std"] is None else f" ± {v['model_std']:.4f} (std over seeds)"
    head = "**Target met.**" if v["met"] else "**Target not met.**"
    ratio = "n/a" if v["ratio"] is None else f"{v['ratio']:.2f}x"
    t = "n/a" if v["t"] is None else f"{v['t']:.2f}"
    seed_t = ", ".join("n/a" if s is None else f"{s:.2f}" for s in v["seed_t"])
    base_iv = v.get("baseline_interval") or {}
    base_ci = "" if base_iv.get("low") is None else f" [{base_iv['low']:.4f}, {base_iv['high']:.4f}]"
    model_ci, diff = v.get("model_interval"), v.get("difference_interval")
    model_ci_text = "" if model_ci is None or model_ci.low is None else \
        f" (the seed-mean daily series: {model_ci.text(4)})"
    diff_text = "" if diff is None or diff.low is None else \
        f"; the mean daily difference is {diff.text(4)} (95% block-bootstrap interval)"
    return [
        f"{head} The default configuration's mean test RankIC (1d) over {v['n_seeds']} seed(s) is "
        f"{v['model_rank_ic']:.4f}{spread}{model_ci_text}; the best baseline, `{v['baseline']}` (chosen by "
        f"validation RankIC 1d = {_fmt(v['baseline_val_rank_ic'], 4)}), has {_fmt(v['baseline_rank_ic'], 4)}"
        f"{base_ci} on test. "
        f"Ratio {ratio} (target >= {TARGET_RATIO}x: {'yes' if v['ratio_ok'] else 'no'}); paired t of the "
        f"seed-mean daily RankIC minus the baseline's = {t} over {v['n_days']} test days (target >= "
        f"{TARGET_T}: {'yes' if v['t_ok'] else 'no'}){diff_text}; per seed t = {seed_t}.",
    ]


def _protocol_lines(results: dict[str, Any]) -> list[str]:
    p = results["protocol"]
    return [
        "## Protocol", "",
        f"- Data: {p['dataset']}",
        f"- Splits (config fields): {p['split_fields']}. Purge {p['purge']} days (>= the longest "
        f"horizon + execution lag, enforced by config resolution) + embargo {p['embargo']} days between "
        f"segments. Segments as trained: {p['segments']}",
        f"- Horizons trained and reported: {p['horizons']} (days). Every metric is computed per "
        "date over that date's stocks (`atft_core.metrics`), then averaged over dates; RankICIR = mean / "
        "std of the daily RankIC; long-short = top minus bottom decile, held h days (the h-day target), "
        "Sharpe annualised with sqrt(252 / h) (an h-day column is sqrt(h) smaller than the trainer's "
        "logged `ls_sharpe_<h>d`, which uses sqrt(252) for every horizon); JPX spread Sharpe as the JPX 2022 "
        "competition scored it (not annualised).",
        "- [low, high] after RankIC and LS Sharpe: 95% interval from a circular block bootstrap over days "
        "(blocks of max(10, 2h) days, 2,000 resamples, seed 0; `atft_core.bootstrap`). The default row's "
        "± is the spread over seeds.",
        "- After costs (`atft_core.costs`): the decile book pays the cost on each buy and each sell; "
        "turnover = share of the book's positions replaced per rebalance, per day = / h; holding period "
        "= h / turnover; net h-day return = return - 4 x turnover x cost; break-even = the cost per side at "
        "which the mean net return (and Sharpe) is 0. The first h days of a split have no earlier book and "
        "are left out of the cost figures.",
        "- Best baseline: the baseline row with the highest *validation* RankIC (1d), separately for "
        "execution lag 0 and 1; the test year never enters any choice.",
        "- t vs best: paired t-statistic over the test dates both rows have, of (row's daily RankIC - best "
        "baseline's daily RankIC): t = mean(d) / (std(d, ddof=1) / sqrt(n)). Targets longer than a day "
        "overlap, so the 5-, 10- and 20-day daily differences are autocorrelated and their t overstates "
        "significance (roughly by sqrt(h) at most); their intervals use blocks of 2h days.",
        f"- Execution lag: {p['lag_note']}",
        "- train / run s: the training loop (sum of the run's `epoch_seconds`; for a baseline, its fit "
        "and validation) / the whole run from status.json (loading, validation, final predictions).",
        "",
    ]


def _settings_lines(results: dict[str, Any]) -> list[str]:
    s, m = results["settings"], results["machine"]
    commands = results.get("commands") or ["(not recorded)"]
    return [
        "## How it was run", "",
        "The rows were trained by:", "", *[f"    {c}" for c in commands], "",
        "and this page was generated by:", "", f"    {results['command']}", "",
        f"- Generated {results['generated']}; machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
        f"{m['gpu']}; Python {m['python']}, torch {m['torch']}; load average {m['load_before']} before, "
        f"{m['load_after']} after. Devices used by the rows: {', '.join(results['devices']) or 'n/a'}.",
        f"- Compute: the rows' whole-run times add up to {results['rows_run_seconds']:.0f} s "
        f"({results['rows_run_seconds'] / 3600:.2f} h); the invocation that generated this page took "
        f"{results['wall_seconds']:.0f} s and reused {len(results['reused'])} finished row(s).",
        f"- Sizes of the rows (the CPU report cuts them to fit about 2 hours on 2 cores): {s['cuts']}",
        *([f"- The default rows were trained before a config default changed: {'; '.join(s['stale_defaults'])}. "
           "They are the default configuration of their day."] if s.get("stale_defaults") else []),
        "",
    ]


def render_markdown(results: dict[str, Any], plot_dir: str) -> str:
    """The whole docs/quality.md text."""
    rows = main_rows(results["rows"])
    v = verdict(rows)
    lines = ["# Quality report: does ATFT-GAT-FAN beat simple baselines?", "",
             "Regenerate with `python bench/quality.py` (see `--help` for the cuts; "
             "`--report-only` rebuilds this page from the runs, `--from-results` from results.json).", "",
             "## Verdict", "", *verdict_lines(v), "", *missing_note(results), *after_costs_lines(results)]
    lines += _protocol_lines(results) + _settings_lines(results)
    for horizon in report_horizons(rows):
        for lag in (0, 1):
            subset = [r for r in rows if r["lag"] == lag]
            if not subset:
                continue
            base = best_baseline(rows, lag)
            lines += [f"## {horizon}-day horizon, execution lag {lag}", "",
                      f"Best baseline (validation RankIC 1d): `{base['name'] if base else 'n/a'}`.", ""]
            lines += table(rows, horizon, lag) + [""]
            lines += cost_table(rows, horizon, lag, cost_levels(results)) + [""]
    lines += headroom_lines(results)
    lines += statement_lines(results)
    lines += missing_lines(results)
    lines += ["## Plots (test year, 1-day horizon, default seed 0 vs the best baseline)", ""]
    lines += [f"![{title}]({plot_dir}/{name})" for name, title in PLOTS.items()] + [""]
    if ANALYSIS.is_file():  # hand-written reading of the numbers; kept across regenerations
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)


def missing_note(results: dict[str, Any]) -> list[str]:
    """One line under the verdict when catalogue rows have no results on the page."""
    missing = results.get("missing", [])
    if not missing:
        return []
    return [f"*{len(missing)} of the catalogue's rows have no finished run and are not on this page "
            "(see [Rows without results](#rows-without-results)).*", ""]


def missing_lines(results: dict[str, Any]) -> list[str]:
    """The catalogue rows without a finished run, with their state, and how to add them."""
    missing = results.get("missing", [])
    if not missing:
        return []
    return ["## Rows without results", "",
            "These rows of the catalogue (`python bench/quality.py --list`) had no finished run in the runs "
            "folder when this page was generated, so every table and comparison above leaves them out. "
            "`python bench/quality.py --only ROW,...` trains them; `--report-only` then adds them.", "",
            *[f"- {m}" for m in missing], ""]


ANALYSIS = Path(__file__).with_name("quality_analysis.md")
"""Hand-written analysis appended to the report (re-read it whenever the numbers change)."""


# ---------------------------------------------------------------------------------------------
# Plots

PLOTS = {"cum_long_short.png": "cumulative long-short return",
         "daily_rank_ic.png": "daily RankIC and 20-day rolling mean",
         "deciles.png": "mean return by prediction decile"}
"""File name -> title of each plot."""


def plot_rows(results: dict[str, Any]) -> list[dict]:
    """Rows the plots compare: the default model's first seed and the best baseline (lag 0)."""
    seeds = default_rows(results["rows"])
    base = best_baseline(results["rows"])
    return [r for r in (seeds[0] if seeds else None, base) if r is not None]


def _series_frame(results: dict[str, Any], rows: list[dict]):
    import polars as pl

    frames = []
    for r in rows:
        ric = np.array([np.nan if v is None else v for v in daily(r, VERDICT_HORIZON)], dtype=float)
        ls = np.array([np.nan if v is None else v for v in daily(r, VERDICT_HORIZON, "long_short")], dtype=float)
        keep = np.isfinite(ric) | np.isfinite(ls)
        frame = pl.DataFrame({"Date": np.asarray(results["test_dates"])[keep], "rank_ic": ric[keep],
                              "cum_long_short": np.cumsum(np.nan_to_num(ls))[keep]}, nan_to_null=True)
        frames.append(frame.with_columns(
            pl.col("rank_ic").rolling_mean(ROLLING_WINDOW, min_samples=1).alias("rolling"),
            pl.lit(r["label"]).alias("model")))
    return pl.concat(frames).with_columns(pl.col("Date").str.to_date())


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the three PNG plots (altair + vl-convert); returns their paths ([] without rows)."""
    import altair as alt
    import polars as pl

    rows = plot_rows(results)
    if not rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = _series_frame(results, rows)
    color = alt.Color("model:N", title=None, legend=alt.Legend(orient="top"))
    date = alt.X("Date:T", title=None, axis=alt.Axis(format="%Y-%m-%d"))
    cum = alt.Chart(frame).mark_line().encode(
        x=date, y=alt.Y("cum_long_short:Q", title="cumulative long-short return (sum)"), color=color)
    raw = alt.Chart(frame).mark_line(opacity=0.25, strokeWidth=1).encode(
        x=date, y=alt.Y("rank_ic:Q", title=f"daily RankIC (bold: {ROLLING_WINDOW}-day mean)"), color=color)
    rolling = alt.Chart(frame).mark_line(strokeWidth=2.5).encode(x=date, y="rolling:Q", color=color)
    deciles = pl.DataFrame([{"model": r["label"], "decile": i + 1, "mean_return": v}
                            for r in rows for i, v in enumerate(r.get("deciles", {}).get(VERDICT_HORIZON, []))])
    bars = alt.Chart(deciles).mark_bar().encode(
        x=alt.X("decile:O", title="prediction decile (1 = lowest)"), xOffset="model:N",
        y=alt.Y("mean_return:Q", title="mean 1-day return"), color=color)
    charts = {"cum_long_short.png": cum, "daily_rank_ic.png": raw + rolling, "deciles.png": bars}
    paths = []
    for name, chart in charts.items():
        path = out_dir / name
        chart.properties(width=640, height=260, title=PLOTS[name]).save(str(path), scale_factor=PNG_SCALE)
        paths.append(path)
    return paths
