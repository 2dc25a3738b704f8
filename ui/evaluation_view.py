"""Evaluation sections of the Run and Compare pages: intervals, trading costs, breakdowns by
year, month and Sector33, and the paired comparison against a baseline (all computed by
`atft_core.evaluation`, cached through `ui.live`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from atft_core import costs
from atft_core.bootstrap import CONFIDENCE, SEED, Interval
from atft_core.evaluation import SPLIT_LABELS, Evaluation, run_horizons
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import ENSEMBLE_KIND

from . import charts, evaluation_charts, live
from .logic import DEEP_KIND

DEFAULT_BREAKDOWN_COST = 10.0
"""Cost level the breakdowns open on (when it is among the levels; else the highest)."""
COSTS_HELP = ("Basis points paid on each buy and each sell (a round trip costs twice this). "
              f"At most {costs.MAX_LEVELS} levels from 0 to {costs.MAX_COST_BPS:g}.")


def _levels_text(levels) -> str:
    return ", ".join(f"{c:g}" for c in levels)


def cost_levels(key: str, container=st) -> tuple[float, ...]:
    """The cost-levels input (bp per side); a bad entry is explained and the defaults are used."""
    text = container.text_input("Trading costs (bp per side)", _levels_text(costs.DEFAULT_COST_BPS), key=key,
                                help=COSTS_HELP)
    try:
        return costs.parse_cost_bps(text)
    except costs.CostLevelsError as exc:
        st.error(f"{exc}; showing {_levels_text(costs.DEFAULT_COST_BPS)}")
        return costs.DEFAULT_COST_BPS


def _bp(value: float | None) -> float | None:
    return None if value is None else round(value / costs.BPS, 2)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _interval(iv: Interval, digits: int) -> str:
    if iv.low is None or iv.high is None:
        return "-"
    return f"[{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def _days_note(horizon: int) -> str:
    if horizon == 1:
        return ("1-day books: the decile book is rebuilt every day; turnover is the share of its positions "
                "replaced from one day to the next.")
    return (f"{horizon}-day books: the book formed on a day is held {horizon} days (its target) and then replaced; "
            f"every day's book is used, as {horizon} interleaved strategies. Turnover per day = the share of positions "
            f"replaced per rebalance / {horizon}; returns per day = the {horizon}-day return / {horizon}; Sharpe "
            f"annualised with sqrt(252/{horizon}) (the logged ls_sharpe_{horizon}d uses sqrt(252), so it is "
            f"sqrt({horizon}) larger). The first {horizon} days of each split have no earlier book and are left out "
            "of the cost figures.")


# ---------------------------------------------------------------------------------------------
# One split


def headline(ev: Evaluation) -> str:
    """'**Validation** (1d, 245 days): mean daily RankIC 0.0312 [...], ...' for one split."""
    s = ev.summary
    ic, jpx = s.get("ic"), s.get("jpx_sharpe")
    return (f"**{SPLIT_LABELS.get(ev.split, ev.split)}** ({ev.horizon}d, {s.get('n_days')} days): "
            f"mean daily RankIC {ev.rank_ic.text(4)}, IC {'-' if ic is None else f'{ic:.4f}'}, "
            f"long-short Sharpe (gross, {ev.horizon}-day books) {ev.ls_sharpe.text(2)}, "
            f"JPX Sharpe {'-' if jpx is None else f'{jpx:.3f}'}")


def cost_rows(ev: Evaluation) -> list[dict]:
    """The cost table of one split: one row per cost level."""
    return [{"cost per side (bp)": lv.cost_bps, "net return (bp/day)": _bp(lv.mean_daily),
             "net return (per year, %)": None if lv.annual is None else round(100 * lv.annual, 2),
             "net Sharpe": _round(lv.sharpe.value, 2), f"{CONFIDENCE:.0%} interval": _interval(lv.sharpe, 2)}
            for lv in ev.costs.levels]


def _costs(ev: Evaluation) -> None:
    c = ev.costs
    cols = st.columns(3)
    cols[0].metric("Turnover per day", "-" if c.turnover_per_day is None else f"{c.turnover_per_day:.1%}",
                   help=f"Share of the long-short book's positions replaced per day ({c.days} days); "
                        + ("" if ev.horizon == 1 else f"{'-' if c.turnover is None else f'{c.turnover:.1%}'} per "
                           f"{ev.horizon}-day rebalance."))
    cols[1].metric("Mean holding period", "never traded" if c.holding_days is None else f"{c.holding_days:.1f} days")
    be = c.break_even_bps
    cols[2].metric("Break-even cost", "-" if be is None else f"{be:.1f} bp per side",
                   help="The cost per side at which the mean net return, and so the net Sharpe, is zero"
                        + (" (negative: the book loses before costs)." if be is not None and be < 0 else "."))
    st.dataframe(cost_rows(ev), hide_index=True)


def _breakdowns(ev: Evaluation, cost: float) -> None:
    label = SPLIT_LABELS.get(ev.split, ev.split)
    at = costs.format_bps(cost)
    years = ev.years.filter(pl.col("cost_bps") == cost)
    st.markdown(f"**By year** (net return of the decile book at {at} per side)")
    st.dataframe(years.select(
        "period", "days", pl.col("rank_ic").round(4).alias("mean RankIC"),
        pl.format("[{}, {}]", pl.col("rank_ic_low").round(4), pl.col("rank_ic_high").round(4)).alias("95% interval"),
        pl.col("net_bp_per_day").round(2).alias(f"net return at {at} (bp/day)")), hide_index=True)
    months = ev.months.filter(pl.col("cost_bps") == cost)
    cols = st.columns(2)
    cols[0].altair_chart(evaluation_charts.month_heatmap(months, "rank_ic", ".3f",
                                                         f"{label}: mean daily RankIC by month"))
    cols[1].altair_chart(evaluation_charts.month_heatmap(months, "net_bp_per_day", ".1f",
                                                         f"{label}: net return by month at {at} (bp/day)"))
    if ev.sectors is None:
        st.caption(f"No Sector33 breakdown: {ev.sector_note}")
        return
    sectors = ev.sectors.filter(pl.col("cost_bps") == cost)
    st.altair_chart(evaluation_charts.sector_chart(sectors, f"{label}: which sectors the model ranks well"))
    with st.expander("Sector33 table (exposure and contribution to the net return)"):
        st.dataframe(sectors.select(
            "sector", "name", pl.col("stocks").round(1), "days", pl.col("rank_ic").round(4).alias("mean RankIC"),
            pl.format("[{}, {}]", pl.col("rank_ic_low").round(4), pl.col("rank_ic_high").round(4)).alias("95% interval"),
            (100 * pl.col("long_share")).round(1).alias("share of long leg (%)"),
            (100 * pl.col("short_share")).round(1).alias("share of short leg (%)"),
            pl.col("net_bp_per_day").round(3).alias(f"net contribution at {at} (bp/day)")), hide_index=True)
        st.caption("RankIC within a sector ranks its stocks against each other only; contributions add up to the "
                   "whole book's net return per day.")


def split_section(ev: Evaluation, window: int, cost: float) -> None:
    """Headline with intervals, charts, trading costs and breakdowns of one split."""
    label = SPLIT_LABELS.get(ev.split, ev.split)
    st.markdown(headline(ev))
    cols = st.columns(3)
    cols[0].altair_chart(charts.rank_ic_chart(ev.daily, f"{label}: daily RankIC, {window}-day mean"))
    cols[1].altair_chart(evaluation_charts.cumulative_net_chart(ev.cumulative, ev.horizon,
                                                                f"{label}: cumulative long-short, net of costs"))
    cols[2].altair_chart(charts.decile_chart(ev.deciles, f"{label}: mean return by decile"))
    st.markdown("**Trading costs** of the decile long-short book")
    _costs(ev)
    _breakdowns(ev, cost)


# ---------------------------------------------------------------------------------------------
# The Run page's evaluation


def _breakdown_cost(levels: tuple[float, ...], key: str, container) -> float:
    default = levels.index(DEFAULT_BREAKDOWN_COST) if DEFAULT_BREAKDOWN_COST in levels else len(levels) - 1
    return container.selectbox("Cost for the breakdowns", levels, index=default, format_func=costs.format_bps, key=key)


def evaluation(runs_dir: Path, run_id: str, window: int) -> None:
    """Validation and test evaluation of a finished run, one tab each, then the comparison with
    a baseline. window: days in the rolling mean of the daily RankIC."""
    try:
        horizons = run_horizons(Path(runs_dir) / run_id)
    except (FileNotFoundError, ValueError, OSError) as exc:
        st.info(str(exc))
        return
    cols = st.columns([1, 2, 1])
    horizon = cols[0].selectbox("Horizon (days)", horizons, key="eval_horizon")
    levels = cost_levels("eval_costs", cols[1])
    cost = _breakdown_cost(levels, "eval_cost", cols[2])
    try:
        results = live.run_evaluation(runs_dir, run_id, window, horizon, levels)
    except (FileNotFoundError, ValueError) as exc:
        st.info(str(exc))
        return
    if not results:
        st.info("The predictions have no validation or test rows.")
        return
    first = next(iter(results.values()))
    st.caption(f"{_days_note(horizon)} Intervals: {CONFIDENCE:.0%}, circular block bootstrap over days "
               f"({first.rank_ic.block}-day blocks, seed {SEED}).")
    for tab, ev in zip(st.tabs([SPLIT_LABELS.get(s, s) for s in results]), results.values()):
        with tab:
            split_section(ev, window, cost)
    paired_section(runs_dir, run_id, horizon, levels)


# ---------------------------------------------------------------------------------------------
# Against a baseline (Run page)


def comparable_runs(runs_dir: Path, run_id: str, horizon: int) -> tuple[list[str], dict[str, str]]:
    """(run ids with predictions for `horizon` other than run_id, baselines first, then ensembles,
    then deep runs; id -> label). A one-line factor is the comparison a quant asks first."""
    ranks, labels = {}, {}
    for entry in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        files = RunFiles(entry)
        if entry.name == run_id or entry.name.startswith(".") or not files.predictions.is_file():
            continue
        cfg = (read_json(files.config) or {}).get("config") or {}
        if horizon not in ((cfg.get("data") or {}).get("horizons") or ()):
            continue
        info = read_json(files.run_info) or {}
        kind = ENSEMBLE_KIND if info.get("kind") == ENSEMBLE_KIND else (cfg.get("model") or {}).get("kind", DEEP_KIND)
        ranks[entry.name] = 1 if kind == ENSEMBLE_KIND else (2 if kind == DEEP_KIND else 0)
        labels[entry.name] = f"{info.get('name') or entry.name} ({kind})"
    return sorted(ranks, key=ranks.get), labels


def paired_rows(table: pl.DataFrame) -> list[dict]:
    """The RankIC row of `evaluation.paired_comparison` for display."""
    return [{"common days": r["days"], "this run": _round(r["rank_ic"], 4), "baseline": _round(r["reference_rank_ic"], 4),
             "difference": _round(r["difference"], 4),
             f"{CONFIDENCE:.0%} interval": "-" if r["difference_low"] is None
             else f"[{r['difference_low']:.4f}, {r['difference_high']:.4f}]",
             "paired t": _round(r["t"], 2)} for r in table.iter_rows(named=True)]


def paired_cost_rows(table: pl.DataFrame, names: dict[str, str]) -> list[dict]:
    """`evaluation.paired_costs` for display; ``names`` maps run ids to the labels shown as winner."""
    return [{"cost per side (bp)": r["cost_bps"], "net Sharpe, this run": _round(r["net_sharpe"], 2),
             "net Sharpe, baseline": _round(r["reference_net_sharpe"], 2),
             "difference (bp/day)": _round(r["difference_bp_per_day"], 2),
             f"{CONFIDENCE:.0%} interval": "-" if r["difference_low"] is None
             else f"[{r['difference_low']:.2f}, {r['difference_high']:.2f}]",
             "wins": names.get(r["wins"], r["wins"])} for r in table.iter_rows(named=True)]


def paired_section(runs_dir: Path, run_id: str, horizon: int, levels: tuple[float, ...]) -> None:
    """This run against a chosen baseline on the days both have: RankIC, then net of costs."""
    st.subheader("Against a baseline")
    candidates, labels = comparable_runs(runs_dir, run_id, horizon)
    if not candidates:
        st.caption(f"No other finished run has {horizon}-day predictions to compare with.")
        return
    cols = st.columns(2)
    reference = cols[0].selectbox("Baseline run (baselines first)", candidates, format_func=labels.get,
                                  key="eval_reference")
    split = cols[1].radio("Split", list(SPLIT_LABELS), format_func=SPLIT_LABELS.get, horizontal=True, key="eval_split")
    try:
        table = live.paired_comparison(runs_dir, [run_id], reference, split, horizon)
        after = live.paired_costs(runs_dir, run_id, reference, split, horizon, levels)
    except (FileNotFoundError, ValueError) as exc:
        st.info(str(exc))
        return
    if table.is_empty() or not table["days"][0]:
        st.caption(f"The two runs have no {SPLIT_LABELS[split].lower()} days in common.")
        return
    st.dataframe(paired_rows(table), hide_index=True)
    st.caption("Mean daily RankIC over the days both runs have; the interval is of the mean daily difference "
               "(block bootstrap over days); the paired t treats days as independent, so for multi-day "
               "horizons trust the interval.")
    st.dataframe(paired_cost_rows(after, {run_id: "this run", reference: labels.get(reference, reference)}),
                 hide_index=True)
    st.caption("Net of costs on the days both books have a turnover: difference = this run's mean net return per "
               "day minus the baseline's; a side wins only where the interval excludes 0.")


# ---------------------------------------------------------------------------------------------
# Compare page


COMPARE_WINDOW = 20
"""Rolling window of the evaluations the Compare page reads (it draws no rolling mean)."""


def compare_paired_rows(table: pl.DataFrame, names: dict[str, str]) -> list[dict]:
    """`evaluation.paired_comparison` of several runs for display, runs by name."""
    return [{"run": names.get(r["run"], r["run"]), "days": r["days"], "rank_ic": _round(r["rank_ic"], 4),
             "reference_rank_ic": _round(r["reference_rank_ic"], 4), "difference": _round(r["difference"], 4),
             f"{CONFIDENCE:.0%} interval": "-" if r["difference_low"] is None
             else f"[{r['difference_low']:.4f}, {r['difference_high']:.4f}]", "t": _round(r["t"], 2)}
            for r in table.iter_rows(named=True)]


def compare_cost_rows(results: dict[str, Evaluation], names: dict[str, str]) -> list[dict]:
    """One row per run: RankIC and gross Sharpe with intervals, turnover, break-even and the net
    Sharpe (with its interval) at each cost level."""
    rows = []
    for run_id, ev in results.items():
        c = ev.costs
        row = {"run": names.get(run_id, run_id), "mean RankIC": ev.rank_ic.text(4),
               "turnover per day (%)": None if c.turnover_per_day is None else round(100 * c.turnover_per_day, 1),
               "holding (days)": _round(c.holding_days, 1), "break-even (bp per side)": _round(c.break_even_bps, 1)}
        row.update({f"net Sharpe at {costs.format_bps(lv.cost_bps)}": lv.sharpe.text(2) for lv in c.levels})
        rows.append(row)
    return rows


def compare_costs(runs_dir: Path, run_ids: list[str], names: dict[str, str], split: str, horizon: int) -> None:
    """The chosen finished runs side by side after trading costs (Compare page)."""
    levels = cost_levels("compare_costs")
    results = {}
    for run_id in run_ids:
        try:
            found = live.run_evaluation(runs_dir, run_id, COMPARE_WINDOW, horizon, levels, with_sectors=False)
        except (FileNotFoundError, ValueError) as exc:
            st.info(str(exc))
            continue
        if split in found:
            results[run_id] = found[split]
    if not results:
        return
    st.dataframe(compare_cost_rows(results, names), hide_index=True)
    st.caption(f"{SPLIT_LABELS[split]}. {_days_note(horizon)} Values in brackets: "
               f"{CONFIDENCE:.0%} block-bootstrap intervals. Each run over its own days; the paired table above "
               "compares on common days.")
