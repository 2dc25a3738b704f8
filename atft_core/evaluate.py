"""Command line of `atft_core.evaluation`: a finished run's evaluation as text or JSON.

    python -m atft_core.evaluate RUN [--runs-dir runs] [--horizon 5] [--costs 0,5,10,20]
                                     [--against OTHER_RUN] [--format text|json]

RUN is a run folder or a run id in --runs-dir. Prints, per split, the mean daily RankIC and the
gross long-short Sharpe with 95% block-bootstrap intervals, the decile book's turnover,
holding period and break-even cost, the net book at each cost level (bp per side), RankIC and
net return by year and by Sector33; with --against, the paired comparison on the days both
runs have. Bad input exits 2 with one line ``error: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from atft_core import costs, evaluation
from atft_core.bootstrap import CONFIDENCE, SEED
from atft_core.entry import run_cli

DEFAULT_RUNS_DIR = "runs"
ROLLING_DAYS = 20
"""Rolling window of the daily RankIC (the CLI prints no chart; kept for the shared code)."""
SECTORS_SHOWN = 5
"""Best and worst sectors printed in text mode (JSON has all)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m atft_core.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("run", help="run folder, or run id in --runs-dir")
    ap.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="where run ids are looked up (default runs)")
    ap.add_argument("--horizon", type=int, default=None, help="horizon in days (default: the run's first)")
    ap.add_argument("--costs", default=",".join(f"{c:g}" for c in costs.DEFAULT_COST_BPS),
                    help="cost levels in basis points per side, comma-separated (default 0,5,10,20)")
    ap.add_argument("--against", default="", help="a reference run (id in --runs-dir) for the paired comparison")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    return ap


def _run_dir(run: str, runs_dir: Path) -> Path:
    for candidate in (Path(run), runs_dir / run):
        if (candidate / "predictions.parquet").is_file():
            return candidate
    raise FileNotFoundError(f"{run}: no finished run with predictions.parquet here or in {runs_dir}")


def _frame_rows(frame: pl.DataFrame | None) -> list[dict[str, Any]] | None:
    return None if frame is None else frame.to_dicts()


def evaluation_dict(ev: evaluation.Evaluation) -> dict[str, Any]:
    """An Evaluation as plain JSON values (no daily series)."""
    c = ev.costs
    return {
        "split": ev.split, "horizon": ev.horizon, "summary": ev.summary,
        "rank_ic": ev.rank_ic.to_dict(), "ls_sharpe": ev.ls_sharpe.to_dict(),
        "costs": {"days": c.days, "turnover": c.turnover, "turnover_per_day": c.turnover_per_day,
                  "holding_days": c.holding_days, "break_even_bps": c.break_even_bps,
                  "levels": [{"cost_bps": lv.cost_bps, "mean_daily": lv.mean_daily, "annual": lv.annual,
                              "sharpe": lv.sharpe.to_dict()} for lv in c.levels]},
        "years": ev.years.to_dicts(), "months": ev.months.to_dicts(),
        "sectors": _frame_rows(ev.sectors), "sector_note": ev.sector_note,
    }


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _text(run_dir: Path, results: dict[str, evaluation.Evaluation]) -> list[str]:
    first = next(iter(results.values()))
    lines = [f"run {run_dir.name}, horizon {first.horizon}d; intervals {CONFIDENCE:.0%}, circular block bootstrap "
             f"over days (block {first.rank_ic.block} days), seed {SEED}"]
    for split, ev in results.items():
        c = ev.costs
        lines += ["", f"{evaluation.SPLIT_LABELS.get(split, split)}: {ev.summary.get('n_days')} days",
                  f"  RankIC {ev.rank_ic.text()}   IC {_num(ev.summary.get('ic'), '.4f')}   "
                  f"long-short Sharpe (gross, {ev.horizon}-day books) {ev.ls_sharpe.text(2)}",
                  f"  turnover {_num(c.turnover_per_day, '.1%')} of the book per day ({_num(c.turnover, '.1%')} per "
                  f"{ev.horizon}-day rebalance), holding {_num(c.holding_days, '.1f')} days, break-even "
                  f"{_num(c.break_even_bps, '.1f')} bp per side",
                  f"  {'cost/side':>10} {'bp/day':>8} {'per year':>9}  net Sharpe [95%]"]
        lines += [f"  {costs.format_bps(lv.cost_bps):>10} {_num(None if lv.mean_daily is None else lv.mean_daily / costs.BPS, '.2f'):>8} "
                  f"{_num(lv.annual, '.1%'):>9}  {lv.sharpe.text(2)}" for lv in c.levels]
        top = max(lv.cost_bps for lv in c.levels)
        lines.append(f"  by year (net at {costs.format_bps(top)}):")
        lines += [f"    {r['period']}: RankIC {_num(r['rank_ic'], '.4f')} [{_num(r['rank_ic_low'], '.4f')}, "
                  f"{_num(r['rank_ic_high'], '.4f')}], net {_num(r['net_bp_per_day'], '.2f')} bp/day, {r['days']} days"
                  for r in ev.years.filter(pl.col("cost_bps") == top).iter_rows(named=True)]
        if ev.sectors is None:
            lines.append(f"  sectors: {ev.sector_note}")
        else:
            ranked = ev.sectors.filter(pl.col("cost_bps") == top)
            lines.append(f"  Sector33, best and worst by RankIC within the sector (net contribution at {costs.format_bps(top)}):")
            shown = ranked.head(SECTORS_SHOWN).vstack(ranked.tail(SECTORS_SHOWN)).unique("sector", maintain_order=True)
            lines += [f"    {r['sector']} {r['name'][:28]:28s} RankIC {_num(r['rank_ic'], '.4f')} "
                      f"({_num(r['stocks'], '.0f')} stocks), {_num(r['net_bp_per_day'], '.2f')} bp/day"
                      for r in shown.iter_rows(named=True)]
    return lines


def _reference(against: str, run_dir: Path) -> str:
    """The reference run's id: a folder beside RUN (paired comparisons read both from one folder)."""
    found = _run_dir(against, run_dir.parent)
    if found.resolve().parent != run_dir.resolve().parent:
        raise ValueError(f"--against {against}: must be a run in the same folder as {run_dir} ({run_dir.parent})")
    return found.name


def _paired(run_dir: Path, reference: str, split: str, horizon: int, levels) -> dict[str, Any]:
    runs_dir = run_dir.parent
    return {"rank_ic": evaluation.paired_comparison(runs_dir, [run_dir.name], reference, split, horizon).to_dicts(),
            "costs": evaluation.paired_costs(runs_dir, run_dir.name, reference, split, horizon, levels).to_dicts()}


def _paired_lines(run_dir: Path, reference: str, horizon: int, levels) -> list[str]:
    lines = []
    for split in evaluation.SPLITS:
        paired = _paired(run_dir, reference, split, horizon, levels)
        ric = paired["rank_ic"][0]
        if not ric["days"]:
            continue
        lines += ["", f"against {reference}, {evaluation.SPLIT_LABELS[split]} ({ric['days']} common days): RankIC "
                  f"difference {_num(ric['difference'], '.4f')} [{_num(ric['difference_low'], '.4f')}, "
                  f"{_num(ric['difference_high'], '.4f')}], paired t {_num(ric['t'], '.2f')}"]
        lines += [f"  {costs.format_bps(r['cost_bps']):>7}: net Sharpe {_num(r['net_sharpe'], '.2f')} vs "
                  f"{_num(r['reference_net_sharpe'], '.2f')}, difference {_num(r['difference_bp_per_day'], '.2f')} "
                  f"[{_num(r['difference_low'], '.2f')}, {_num(r['difference_high'], '.2f')}] bp/day: {r['wins']}"
                  for r in paired["costs"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        levels = costs.parse_cost_bps(args.costs)
        runs_dir = Path(args.runs_dir)
        run_dir = _run_dir(args.run, runs_dir)
        results = evaluation.evaluate_run(run_dir, ROLLING_DAYS, args.horizon, levels)
        if not results:
            raise ValueError(f"{run_dir}: predictions.parquet has no validation or test rows")
        horizon = next(iter(results.values())).horizon
        reference = _reference(args.against, run_dir) if args.against else None
        if args.format == "json":
            out: dict[str, Any] = {"run": run_dir.name, "cost_bps": list(levels),
                                   "splits": {s: evaluation_dict(ev) for s, ev in results.items()}}
            if reference:
                out["against"] = {"run": reference, **{s: _paired(run_dir, reference, s, horizon, levels) for s in results}}
            print(json.dumps(out, indent=1, default=str))
        else:
            lines = _text(run_dir, results)
            if reference:
                lines += _paired_lines(run_dir, reference, horizon, levels)
            print("\n".join(lines))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_cli(main)
