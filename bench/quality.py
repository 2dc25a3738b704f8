"""Quality report: ATFT-GAT-FAN vs simple baselines on real data -> docs/quality.md + plots.

    python bench/quality.py                          # the whole report (~46 min on 2 CPU cores)
    python bench/quality.py --only default-s0,base-ridge   # train / refresh some rows only
    python bench/quality.py --report-only            # rebuild markdown + plots from the runs
    python bench/quality.py --report-only --costs 0,5,10,20,30   # other cost levels, no retraining
    python bench/quality.py --from-results           # ... from docs/quality/results.json alone
    python bench/quality.py --smoke --runs-dir /tmp/q --out /tmp/q/report   # synthetic, ~30 s
    python bench/quality.py --list                   # the rows and their settings
    python bench/quality.py --device cuda --jobs 6 --threads 2 --phase-epochs 1,1,3,1 --max-train-days 0
                                                     # no cuts, six rows at a time on a GPU machine
                                                     # (add --train-only where altair is missing)

Protocol: the real panel in ../shared/data is built with the project's own `build` into
`<runs-dir>/dataset.parquet` (reused while the raw files and build options are unchanged);
train 2016-05-01..2022-12-31, validation 2023, test 2024 (data.start / train_end / val_end),
purge >= longest horizon + execution lag (config resolution) plus the default embargo.

Rows: every baseline kind; the default config with --seeds seeds, plus their ensemble (the
per-date mean of the seeds' z-scored predictions: a row without training of its own); one-seed
ablations (GAT off, FAN off, fixed gate, large hidden size, RankIC / CS-IC loss weights, a single
phase); then the default model and every baseline again with data.execution_lag=1; then the
financial-statement group (real profile): on a dataset built with --statements
(`<runs-dir>/dataset_statements.parquet`) and a window from STATEMENT_START, the earnings-yield
and book-to-price factors and the default model without (the 49 price features) and with the
statement features, --seeds seeds at lag 0 and seed 0 at lag 1. Every horizon is reported. Each row is a
run `<runs-dir>/<row>` queued in the library's job queue (`atft_core.runs.queue`, --jobs slots);
a row whose run completed with the same requested config and dataset is reused, a stopped or
crashed one resumed. The numbers go to `<out>/quality/results.json`, the page to
`<out>/quality.md`, the plots to `<out>/quality/*.png` (analysis in quality_report.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(Path(__file__).resolve().parent)]  # atft_core; bench/ when imported

import quality_report as report  # noqa: E402
from machine import cpu_model  # noqa: E402
from atft_core import bootstrap, costs, evaluation, metrics, runs  # noqa: E402
from atft_core.config import MODEL_KINDS, LossConfig, RunConfig  # noqa: E402
from atft_core.data.build import BuildParams, build_dataset, fingerprint  # noqa: E402
from atft_core.data.demo import make_demo  # noqa: E402
from atft_core.data.features import ALL_FEATURES as PRICE_FEATURES  # noqa: E402
from atft_core.data.schema import read_metadata  # noqa: E402
from atft_core.data.validate import validate_dataset  # noqa: E402
from atft_core.evaluation import horizons_in, load_predictions, to_arrays  # noqa: E402
from atft_core.run_files import RunFiles, read_json  # noqa: E402
from atft_core.runs import queue  # noqa: E402
from atft_core.runs.ensemble import combine_predictions  # noqa: E402
from atft_core.runs.launch import stop_run  # noqa: E402
from atft_core.system import machine_status  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RAW_FILES = {"quotes": "jquants_daily_quotes_2016_2024.parquet", "listed_info": "jquants_listed_info.csv",
             "index": "jquants_topix_2004_2024.parquet"}
TRAIN_START, TRAIN_END, VAL_END = "2016-05-01", "2022-12-31", "2023-12-31"
"""The protocol: train 2016-05-01..2022-12-31, validation 2023, test 2024 (the rest of the data)."""
REPORT_HORIZONS = (1, 5, 10, 20)
"""Horizons (days) the report collects and shows: every head the deep model trains."""
STATEMENT_START = "2021-06-01"
"""data.start of the financial-statement rows. The shared statements start on 2021-01-25; the
earnings yield needs a full-year filing and book-to-price comes with one, so both are known for
about 85% of stock-days only from June 2021, after the March year-end filings (profit growth,
a year later still). The same window for the rows with and without the statements."""
STATEMENT_FACTORS = (("ey", "feat_fin_ey", "earnings yield"), ("bp", "feat_fin_bp", "book-to-price"))
"""(row suffix, feature, words) of the single statement factors, scored high first (cheap first)."""
STATEMENT_FILE = "jquants_statements_2021_2024.parquet"
DEEP = "atft_gat_fan"
BASELINES = tuple(k for k in MODEL_KINDS if k not in (DEEP, "factor"))
"""Baseline kinds with a row each; `factor` (any input) has rows only where the input is named."""
ABLATION_RANKIC_WEIGHT = 0.2
ABLATION_CS_IC_WEIGHT = 0.3
"""The loss weights the old system argued about (defaults come from LossConfig)."""
SMOKE_STOCKS, SMOKE_DAYS = 40, 300
FINAL_STATES_OK = ("completed", "early_stopped")
COMMAND_FILE = "quality_command.txt"
HEADROOM_ROWS = 5
"""Single input features listed in the headroom section (the best on the test year, in hindsight)."""
"""Written into each row's run folder: the bench/quality.py command that trained it."""


@dataclass(frozen=True)
class Knobs:
    """What an invocation may cut to fit its time; each has a profile default and a CLI option."""

    phase_epochs: tuple[int, ...]
    """train.phase_epochs of the deep rows."""
    hidden: int
    """model.hidden_size of the default rows."""
    hidden_large: int
    """model.hidden_size of the large-width ablation."""
    max_train_days: int
    """Deep rows train on the last this many training days (0 = all); baselines always use all."""
    seeds: int
    """Seeds of the default config."""
    mode: str
    """train.mode of every row."""


@dataclass(frozen=True)
class Profile:
    """One report size: config values of the rows and default knobs."""

    base: dict[str, Any]
    """Dotted config values of every row."""
    deep: dict[str, Any]
    """Extra dotted values of the deep-model rows (tiny model settings for the smoke profile)."""
    knobs: Knobs
    poll_seconds: float
    """How often the rows' states are checked for progress lines."""
    rows: tuple[str, ...] = ()
    """Default rows to train (empty = all)."""
    statements: bool = False
    """Whether the report has the financial-statement row group (a dataset built with them)."""
    jobs: int = 1
    """Rows trained at the same time by default."""


PROFILES = {
    # Knobs sized to fit the 21 rows in well under 2 h on an idle 2-core CPU: two rows at a time,
    # one torch thread each. On a shared 2-core machine two OpenMP threads of one run wait on each
    # other whenever another process takes a core (measured 1.7-2.1k stock-days/s with two threads
    # at load 3, against ~10k per CPU-second single-threaded). 800 training days for the deep rows:
    # better than 400 on validation in two windows (bench/quality_analysis.md, fifth round).
    "real": Profile(base={"data.start": TRAIN_START, "data.train_end": TRAIN_END, "data.val_end": VAL_END,
                          "runtime.num_threads": 1},
                    deep={}, knobs=Knobs(phase_epochs=(1, 1, 1, 1), hidden=64, hidden_large=256,
                                         max_train_days=800, seeds=3, mode="optimized"), poll_seconds=1.0, jobs=2,
                    statements=True),
    "tiny": Profile(base={"data.horizons": (1, 5), "data.lookback": 10, "data.min_stocks_per_day": 10,
                          "runtime.num_threads": 1},
                    deep={"model.encoder_heads": 2, "model.gat_heads": 2, "model.fan_top_k": 2,
                          "model.graph_top_k": 4, "model.graph_corr_window": 10, "model.graph_max_sector_edges": 4},
                    knobs=Knobs(phase_epochs=(0, 0, 1, 0), hidden=8, hidden_large=16, max_train_days=0, seeds=1,
                                mode="optimized"),
                    poll_seconds=0.2, rows=("base-reversal_1d", "default-s0")),
}


@dataclass(frozen=True)
class Settings:
    """The effective settings of one invocation (profile defaults + command line)."""

    profile: str
    dataset: Path
    runs_dir: Path
    out: Path
    knobs: Knobs
    device: str
    poll_seconds: float
    only: tuple[str, ...]
    jobs: int
    """Rows trained at the same time (the profile's, or --jobs: more on a GPU machine with many cores)."""
    threads: int | None
    """runtime.num_threads of every row, if given (else the profile's)."""
    command: str
    """This invocation, as typed (recorded with every row it trains)."""
    cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS
    """Trading-cost levels (bp per side) of the after-costs columns (a report setting: no retraining)."""
    statements_dataset: Path | None = None
    """The dataset of the financial-statement rows (None: the profile has no such rows)."""


@dataclass(frozen=True)
class Row:
    """One line of the report: a run folder name, a table label and its config changes."""

    name: str
    group: str
    """'baseline', 'default', 'ablation' or 'lag1'."""
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.overrides.get("model.kind", DEEP)

    @property
    def lag(self) -> int:
        return int(self.overrides.get("data.execution_lag", 0))

    @property
    def seed(self) -> int:
        return int(self.overrides.get("runtime.seed", 0))


# ---------------------------------------------------------------------------------------------
# Progress


class Clock:
    """Prints progress lines stamped with the time since the start of the invocation."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        seconds = int(self.elapsed())
        print(f"[{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Rows


def ablation_rows(s: Settings) -> list[Row]:
    """One-seed variants of the default config, each changing one thing."""
    loss = LossConfig()
    total = sum(s.knobs.phase_epochs)
    return [
        Row("abl-no_gat", "ablation", "GAT off (model.use_gat=false)", {"model.use_gat": False}),
        Row("abl-no_fan", "ablation", "FAN off (model.fan_top_k=0)", {"model.fan_top_k": 0}),
        Row("abl-gate_fixed", "ablation", "residual gate fixed (model.gate_learnable=false)",
            {"model.gate_learnable": False}),
        Row("abl-hidden_large", "ablation", f"hidden {s.knobs.hidden_large} (default row: {s.knobs.hidden})",
            {"model.hidden_size": s.knobs.hidden_large}),
        Row("abl-rankic_w", "ablation", f"loss.rankic_weight {ABLATION_RANKIC_WEIGHT} (default {loss.rankic_weight})",
            {"loss.rankic_weight": ABLATION_RANKIC_WEIGHT}),
        Row("abl-csic_w", "ablation", f"loss.cs_ic_weight {ABLATION_CS_IC_WEIGHT} (default {loss.cs_ic_weight})",
            {"loss.cs_ic_weight": ABLATION_CS_IC_WEIGHT}),
        Row("abl-single_phase", "ablation", f"single phase: {total} epochs of phase 2 (FAN + GAT on)",
            {"train.phase_epochs": (0, 0, total, 0)}),
    ]


def all_rows(s: Settings) -> list[Row]:
    """Every row of the report, in table order."""
    rows = [Row(f"base-{k}", "baseline", f"baseline {k}", {"model.kind": k}) for k in BASELINES]
    rows += [Row(f"default-s{i}", "default", f"default, seed {i}", {"runtime.seed": i}) for i in range(s.knobs.seeds)]
    rows += ablation_rows(s)
    rows += [Row("lag1-default-s0", "lag1", "default, seed 0, lag 1", {"data.execution_lag": 1})]
    rows += [Row(f"lag1-{k}", "lag1", f"baseline {k}, lag 1", {"model.kind": k, "data.execution_lag": 1})
             for k in BASELINES]
    return rows + statement_rows(s)


def statement_rows(s: Settings) -> list[Row]:
    """The financial-statement group: factors, then the default model without and with them."""
    if s.statements_dataset is None:
        return []
    window = {"data.path": str(s.statements_dataset), "data.start": STATEMENT_START}
    without = {**window, "data.features": PRICE_FEATURES}
    rows = []
    for lag, prefix, suffix, seeds in ((0, "", "", range(s.knobs.seeds)), (1, "lag1-", ", lag 1", range(1))):
        lagged = {"data.execution_lag": lag} if lag else {}
        rows += [Row(f"{prefix}fin-factor-{short}", "fin_factor", f"{words} factor ({feature}, high first){suffix}",
                     {**window, **lagged, "model.kind": "factor", "model.factor": feature, "model.factor_sign": 1})
                 for short, feature, words in STATEMENT_FACTORS]
        for group, extra, words in (("fin_without", without, "without"), ("fin_with", window, "with")):
            rows += [Row(f"{prefix}{group.replace('_', '-')}-s{i}", group, f"default {words} statements, seed {i}{suffix}",
                         {**extra, **lagged, "runtime.seed": i}) for i in seeds]
    return rows


def selected_rows(s: Settings, profile: Profile) -> list[Row]:
    """The rows to train now: --only, else the profile's default rows, else all."""
    rows = all_rows(s)
    wanted = s.only or profile.rows
    if not wanted:
        return rows
    names = {r.name for r in rows}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SystemExit(f"--only: unknown row(s) {', '.join(unknown)}; rows are: {', '.join(sorted(names))}")
    return [r for r in rows if r.name in wanted]


def row_config(row: Row, s: Settings, profile: Profile, deep_start: str) -> RunConfig:
    """The requested config of a row: defaults <- profile <- knobs <- the row's own changes."""
    values: dict[str, Any] = {"data.path": str(s.dataset), "train.mode": s.knobs.mode, "runtime.device": s.device,
                              **profile.base}
    if row.kind == DEEP:
        values.update(profile.deep)
        values.update({"model.hidden_size": s.knobs.hidden, "train.phase_epochs": s.knobs.phase_epochs})
        if deep_start:
            values["data.start"] = deep_start
    if s.threads:
        values["runtime.num_threads"] = s.threads
    values.update(row.overrides)
    return RunConfig().replace(**values)


# ---------------------------------------------------------------------------------------------
# Dataset


def ensure_real_dataset(raw_dir: Path, out: Path, clock: Clock, statements: bool = False) -> Path:
    """Build the real panel with the project's builder (with the financial statements when asked),
    unless `out` already holds the same build."""
    inputs = {role: raw_dir / name for role, name in RAW_FILES.items()}
    if statements:
        inputs["statements"] = raw_dir / STATEMENT_FILE
    missing = [str(p) for p in inputs.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"real data not found: {', '.join(missing)} (use --smoke or --dataset PATH)")
    params = BuildParams()
    wanted, _ = fingerprint(inputs, params)
    if out.is_file() and read_metadata(out).get("fingerprint") == wanted:
        clock.say(f"dataset: reusing {out} (fingerprint {wanted[:12]})")
        return out
    clock.say(f"dataset: building {out} from {raw_dir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    build_dataset(inputs["quotes"], inputs["listed_info"], out, index=inputs["index"], params=params,
                  statements=inputs.get("statements"))
    clock.say("dataset: built")
    return out


def ensure_demo_dataset(out: Path, clock: Clock) -> Path:
    """A small synthetic demo dataset for the smoke profile (reused if present)."""
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        make_demo(out, n_stocks=SMOKE_STOCKS, n_days=SMOKE_DAYS, seed=0)
        clock.say(f"dataset: demo {SMOKE_STOCKS} stocks x {SMOKE_DAYS} days at {out}")
    return out


def deep_train_start(dataset: Path, s: Settings, profile: Profile) -> str:
    """data.start that leaves the deep rows --max-train-days training days ('' = no cut)."""
    train_end = profile.base.get("data.train_end", "")
    if not s.knobs.max_train_days or not train_end:
        return ""
    dates = pl.scan_parquet(dataset).select("Date").unique().collect()["Date"].sort().to_numpy()
    dates = dates.astype("datetime64[D]")
    last = int(np.searchsorted(dates, np.datetime64(train_end), "right")) - 1
    lookback = RunConfig().replace(**{k: v for k, v in profile.base.items() if k.startswith("data.")}).data.lookback
    first = max(0, last - s.knobs.max_train_days - lookback + 2)
    start = str(dates[first])
    return max(start, profile.base.get("data.start", ""))


# ---------------------------------------------------------------------------------------------
# Training the rows (through the library's job queue)


def row_state(run_dir: Path, cfg: RunConfig, dataset_fp: str) -> str:
    """'done' (reuse), 'resume' (same config, stopped or crashed with a checkpoint) or 'fresh'."""
    if not run_dir.is_dir():
        return "fresh"
    summary = runs.run_state(run_dir.parent, run_dir.name)
    if summary.live:
        raise SystemExit(f"{run_dir} is {summary.status} right now; wait for it or stop it "
                         f"(python -m atft_core.runs --runs-dir {run_dir.parent} stop {run_dir.name})")
    files = RunFiles(run_dir)
    saved = read_json(files.config) or {}
    same = (saved.get("requested") == cfg.to_dict()
            and saved.get("resolved", {}).get("dataset_fingerprint") == dataset_fp)
    if same and summary.status in FINAL_STATES_OK and files.predictions.is_file():
        return "done"
    if same and summary.status in ("stopped", "crashed") and files.last_checkpoint.is_file():
        return "resume"
    return "fresh"


def quality_slots(s: Settings) -> queue.Slots:
    """--jobs slots: on GPUs (--device cuda) shared out over the GPUs there are, else CPU slots;
    each with --threads threads (0: the cores shared between the slots)."""
    if s.device.startswith("cuda"):
        gpus = tuple(g.index for g in machine_status(paths=()).gpus) or (0,)
        return queue.Slots(gpus=gpus, per_gpu=max(1, -(-s.jobs // len(gpus))), threads=s.threads or 0)
    return queue.Slots(cpu=s.jobs, threads=s.threads or 0)


def submit_row(row: Row, cfg: RunConfig, state: str, s: Settings) -> None:
    """Queue one row's run in `<runs-dir>/<row>` (a fresh one replaces what was there)."""
    run_dir = s.runs_dir / row.name
    if state == "resume":
        queue.resume_run(s.runs_dir, row.name)
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a different config or a failed run: start clean
    queue.launch_run(cfg, s.runs_dir, name=row.label, tags=("quality",), force=True, run_id=row.name)
    (run_dir / COMMAND_FILE).write_text(s.command)


def follow_rows(names: list[str], s: Settings, clock: Clock) -> None:
    """Wait for the queued rows, printing a line whenever one's state, epoch or phase changes.

    Ctrl-C stops every row (a training one saves last.pt; the next invocation resumes it).
    """
    ended: list[str] = []

    def on_change(r: runs.RunSummary) -> None:
        if r.status == "queued":
            clock.say(f"  {r.id}: queued ({r.phase_name or 'waiting'})")
        elif r.live and r.epoch:
            best = "n/a" if r.best_rank_ic is None else f"{r.best_rank_ic:.4f}"
            clock.say(f"  {r.id}: epoch {r.epoch}/{r.epochs_planned or '?'} phase {r.phase}, best val RankIC {best}")
        elif not r.live:
            ended.append(r.id)
            if r.reason:
                clock.say(f"  {r.id}: {r.status}: {r.reason}")
            train, run = run_times(s.runs_dir / r.id)
            clock.say(f"[{len(ended)}/{len(names)}] {r.id}: {r.status}, training loop {train:.0f} s, run {run or 0:.0f} s")

    try:
        queue.wait_for_runs(s.runs_dir, names, on_change=on_change, poll_seconds=s.poll_seconds)
    except KeyboardInterrupt:
        for name in names:
            stop_run(s.runs_dir, name)
        raise


# ---------------------------------------------------------------------------------------------
# Collecting the numbers of a finished run


def _clean(values) -> list:
    return [round(float(v), 6) if v is not None and np.isfinite(v) else None for v in values]


def _clean_summary(summary: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary.items()}


def run_numbers(run_dir: Path, cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS) -> dict[str, Any]:
    """Per-date metrics of a finished run from its predictions.parquet (val and test, every horizon)."""
    return frame_numbers(load_predictions(RunFiles(run_dir).predictions), cost_bps)


def _cost_numbers(book: evaluation.Book, horizon: int, cost_bps: tuple[float, ...]) -> dict[str, Any]:
    """Turnover, holding period, break-even and the net Sharpe (with its interval) per cost level."""
    c = costs.book_costs(book.gross, book.turnover, horizon, cost_bps)
    return {"days": c.days, "turnover": _round(c.turnover), "turnover_per_day": _round(c.turnover_per_day),
            "holding_days": _round(c.holding_days), "break_even_bps": _round(c.break_even_bps),
            "levels": [{"cost_bps": lv.cost_bps, "mean_daily": _round(lv.mean_daily),
                        "sharpe": _interval(lv.sharpe)} for lv in c.levels]}


def _interval(iv: bootstrap.Interval) -> dict[str, Any]:
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in iv.to_dict().items()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def frame_numbers(frame: pl.DataFrame, cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS) -> dict[str, Any]:
    """Per-date metrics of a predictions frame (Date, Code, split, pred_<h>d, target_<h>d): the
    summary, the intervals of mean RankIC and long-short Sharpe, the decile book after costs and,
    for the test split, the daily series (RankIC, book return, turnover) and the deciles, for
    validation the daily RankIC (paired comparisons on validation)."""
    out: dict[str, Any] = {"summary": {}, "intervals": {}, "costs": {}, "daily": {}, "daily_val": {}, "deciles": {}}
    for h in (h for h in REPORT_HORIZONS if h in horizons_in(frame)):
        key = str(h)
        for part in ("summary", "intervals", "costs"):
            out[part][key] = {}
        for split in ("val", "test"):
            dates, pred, target, mask = to_arrays(frame, split, h)
            book = evaluation.make_book(dates, pred, target, mask, h)
            out["summary"][key][split] = _clean_summary(metrics.summarize(pred, target, mask))
            out["intervals"][key][split] = {"rank_ic": _interval(bootstrap.mean_interval(book.rank_ic, h)),
                                            "ls_sharpe": _interval(bootstrap.sharpe_interval(book.gross, h))}
            out["costs"][key][split] = _cost_numbers(book, h, cost_bps)
            if split == "val":
                out["daily_val"][key] = {"dates": [str(d) for d in dates], "rank_ic": _clean(book.rank_ic)}
            if split == "test":
                out["daily"][key] = {"dates": [str(d) for d in dates], "rank_ic": _clean(book.rank_ic),
                                     "long_short": _clean(book.gross), "turnover": _clean(book.turnover)}
                out["deciles"][key] = _clean(metrics.decile_returns(pred, target, mask))
    return out


def run_times(run_dir: Path) -> tuple[float | None, float | None]:
    """(training-loop seconds = sum of epoch_seconds, whole-run seconds from status.json)."""
    files = RunFiles(run_dir)
    train = 0.0
    if files.metrics.is_file():
        for line in files.metrics.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if item.get("name") == "epoch_seconds" and item.get("value") is not None:
                train += item["value"]
    status = read_json(files.status) or {}
    started, ended = status.get("started"), status.get("ended")
    return train, (ended - started if started and ended else None)


def collect_row(row: Row, run_dir: Path, cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS) -> dict[str, Any]:
    """The report record of a finished row (see quality_report's module docstring)."""
    train, run = run_times(run_dir)
    saved = read_json(RunFiles(run_dir).config) or {}
    record = {"name": row.name, "group": row.group, "label": row.label, "kind": row.kind, "seed": row.seed,
              "lag": row.lag, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in row.overrides.items()},
              "state": (read_json(RunFiles(run_dir).status) or {}).get("state"),
              "train_seconds": train, "run_seconds": run, "resolved": _resolved_facts(saved),
              "command": _read_text(run_dir / COMMAND_FILE)}
    record.update(run_numbers(run_dir, cost_bps))
    return record


def ensemble_record(seeds: list[dict], runs_dir: Path,
                    cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS) -> dict[str, Any]:
    """A report row for the seed ensemble of the default config: per date, split and horizon the
    mean of the seeds' z-scored predictions (no training; the seeds' own runs, combined)."""
    frames = [load_predictions(RunFiles(runs_dir / r["name"]).predictions) for r in seeds]
    mean = combine_predictions(frames, horizons_in(frames[0]))
    first = seeds[0]
    record = {"name": "default-ensemble", "group": "ensemble", "kind": first["kind"], "seed": None, "lag": first["lag"],
              "label": f"default, ensemble of the {len(seeds)} seeds (per-date mean of z-scored predictions)",
              "overrides": {}, "state": "completed", "resolved": first["resolved"], "command": None,
              "train_seconds": sum(r["train_seconds"] or 0.0 for r in seeds),
              "run_seconds": sum(r["run_seconds"] or 0.0 for r in seeds)}
    record.update(frame_numbers(mean, cost_bps))
    return record


def _with_ensemble(records: list[dict], runs_dir: Path,
                   cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS) -> list[dict]:
    """`records` with the default seeds' ensemble row after the last seed (two seeds or more)."""
    seeds = [r for r in records if r["group"] == "default" and r["lag"] == 0]
    if len(seeds) < 2:
        return records
    at = records.index(seeds[-1]) + 1
    return records[:at] + [ensemble_record(seeds, runs_dir, cost_bps)] + records[at:]


def _read_text(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _resolved_facts(saved: dict) -> dict[str, Any]:
    """What the run actually used (effective config and resolved facts), for the report."""
    resolved, cfg = saved.get("resolved", {}), saved.get("config", {})
    model, train = cfg.get("model", {}), cfg.get("train", {})
    return {"device": resolved.get("device"), "device_name": resolved.get("device_name"),
            "splits": resolved.get("splits"), "train_days": resolved.get("train_days"),
            "val_days": resolved.get("val_days"), "test_days": resolved.get("test_days"),
            "n_params": resolved.get("n_params"), "purge_days": cfg.get("data", {}).get("purge_days"),
            "embargo_days": cfg.get("data", {}).get("embargo_days"), "horizons": cfg.get("data", {}).get("horizons"),
            "data_start": cfg.get("data", {}).get("start"), "hidden_size": model.get("hidden_size"),
            "phase_epochs": train.get("phase_epochs"), "mode": train.get("mode"),
            "precision": cfg.get("runtime", {}).get("precision"), "num_threads": cfg.get("runtime", {}).get("num_threads")}


def headroom(dataset: Path, base_run: Path, axis: list[str], horizon: int = 1) -> list[dict]:
    """Every input feature as a one-line factor, on the best baseline's own validation and test rows.

    Read after every choice and never fed back: it says how far any single input could have
    gone on the test year. Returned: the HEADROOM_ROWS best features with the sign that is best
    on the test year (an upper bound for single-input factors), plus the best feature and sign
    chosen on validation (what an honest single-factor pick would have been), each with
    ``feature, sign, picked_by, val_rank_ic, test_rank_ic`` and ``rank_ic`` (daily test
    RankIC aligned with `axis`).
    """
    frame = load_predictions(RunFiles(base_run).predictions).drop(pl.selectors.starts_with("pred_"))
    names = [n for n in pl.read_parquet_schema(dataset) if n.startswith("feat_")]
    joined = frame.join(pl.read_parquet(dataset, columns=["Date", "Code", *names]), on=["Date", "Code"], how="left")
    position = {d: i for i, d in enumerate(axis)}
    scored = []
    for name in names:
        series = {}
        for split in ("val", "test"):
            dates, pred, target, mask = to_arrays(joined.with_columns(pl.col(name).alias(f"pred_{horizon}d")), split, horizon)
            # A date on which the feature is constant (a 0/1 flag) ranks nothing: RankIC 0, not missing.
            series[split] = (dates, np.nan_to_num(metrics.daily_rank_ic(pred, target, mask)))
        val, test = (float(series[k][1].mean()) if len(series[k][1]) else 0.0 for k in ("val", "test"))
        scored.append((name, val, test, series["test"]))

    def entry(name: str, sign: int, picked_by: str, val: float, test: float, daily_test: tuple) -> dict:
        aligned = [None] * len(axis)
        for d, v in zip(daily_test[0], _clean(sign * daily_test[1])):
            aligned[position[str(d)]] = v
        return {"feature": name, "sign": sign, "picked_by": picked_by, "val_rank_ic": round(sign * val, 6),
                "test_rank_ic": round(sign * test, 6), "rank_ic": aligned}

    best_test = sorted(scored, key=lambda x: -abs(x[2]))[:HEADROOM_ROWS]
    out = [entry(n, 1 if t >= 0 else -1, "test (hindsight)", v, t, d) for n, v, t, d in best_test]
    n, v, t, d = max(scored, key=lambda x: abs(x[1]))
    return out + [entry(n, 1 if v >= 0 else -1, "validation", v, t, d)]


DAILY_SERIES = ("rank_ic", "long_short", "turnover")
"""Daily test series of a row, aligned on the report's date axis."""


def align_daily(records: list[dict], part: str = "daily") -> list[str]:
    """Put every row's daily series of `part` ('daily': test, 'daily_val': validation) on one
    shared date axis (in place); returns the axis."""
    axis = sorted({d for r in records for series in r.get(part, {}).values() for d in series["dates"]})
    position = {d: i for i, d in enumerate(axis)}
    for r in records:
        for series in r.get(part, {}).values():
            dates = series.pop("dates")
            for name in [n for n in DAILY_SERIES if n in series]:
                aligned = [None] * len(axis)
                for d, v in zip(dates, series[name]):
                    aligned[position[d]] = v
                series[name] = aligned
    return axis


# ---------------------------------------------------------------------------------------------
# The report


def machine_facts(load_before: tuple) -> dict[str, Any]:
    """CPU, cores, RAM, GPU and versions of this machine (bench/machine.py + psutil + torch)."""
    import psutil
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__,
            "load_before": ", ".join(f"{x:.1f}" for x in load_before),
            "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg())}


def cuts_text(records: list[dict], profile: str) -> str:
    """What the collected runs cut relative to the full protocol, in words (from their configs)."""
    if profile != "real":
        return f"smoke profile ({profile}) on a synthetic demo dataset: tiny model, fraction splits, few rows."
    default = next((r["resolved"] for r in records if r["group"] == "default"), None)
    if default is None:
        return "no default-config row was collected."
    large = next((r["resolved"] for r in records if r["name"] == "abl-hidden_large"), {})
    full = RunConfig().train.phase_epochs
    start = default.get("data_start") or TRAIN_START
    parts = [f"deep-model rows train on {default.get('train_days')} training days from data.start={start}"
             + (" instead of the whole 2016-05-01..2022-12-31 (baselines use all of it)" if start > TRAIN_START else ""),
             f"train.phase_epochs={','.join(map(str, default.get('phase_epochs') or []))} (config default "
             f"{','.join(map(str, full))})",
             f"hidden {default.get('hidden_size')} for the default rows, {large.get('hidden_size', 'n/a')} for the large ablation",
             f"{sum(r['group'] == 'default' for r in records)} seed(s) of the default config; ablations and lag-1 rows one seed",
             f"train.mode={default.get('mode')} (resolved precision {default.get('precision')}, "
             f"{default.get('num_threads')} thread(s) per run)"]
    return "; ".join(parts) + "."


def protocol_facts(s: Settings, records: list[dict]) -> dict[str, Any]:
    """Dataset, split fields, purge/embargo and segments, as the runs resolved them."""
    summary = validate_dataset(s.dataset)
    deep = next((r["resolved"] for r in records if r["kind"] == DEEP and r["lag"] == 0), {})
    base_facts = next((r["resolved"] for r in records if r["kind"] != DEEP and r["lag"] == 0), {})
    facts = base_facts or deep
    lag1 = next((r["resolved"] for r in records if r["lag"] == 1), {})
    base = PROFILES[s.profile].base
    split_fields = (f"data.start={base.get('data.start', '')!r}, data.train_end={base.get('data.train_end', '')!r}, "
                    f"data.val_end={base.get('data.val_end', '')!r}" if "data.train_end" in base
                    else f"fractions train {RunConfig().data.train_fraction} / validation {RunConfig().data.val_fraction} / test the rest")
    return {"dataset": (f"{summary.n_stocks} stocks x {summary.n_days} days ({summary.start}..{summary.end}), "
                        f"{summary.n_features} features, built by `atft_core.data build` (fingerprint "
                        f"{summary.fingerprint[:12]}); path {s.dataset}"),
            "split_fields": split_fields, "purge": facts.get("purge_days"), "embargo": facts.get("embargo_days"),
            "segments": f"baselines: {base_facts.get('splits', 'n/a')}; deep rows: {deep.get('splits', 'n/a')}",
            "horizons": facts.get("horizons"),
            "lag_note": (f"lag 0 labels are Close(t)->Close(t+h); lag 1 labels Close(t+1)->Close(t+1+h) "
                         f"(data.execution_lag=1, as JPX 2022 scored), "
                         + (f"purge {lag1['purge_days']} days." if lag1 else "no lag-1 rows in this report."))}


def statement_facts(s: Settings, records: list[dict]) -> dict[str, Any]:
    """What the financial-statement rows ran on, in words ({} without such rows)."""
    rows = [r for r in records if r["group"] in report.STATEMENT_GROUPS]
    if not rows or s.statements_dataset is None or not s.statements_dataset.is_file():
        return {}
    summary = validate_dataset(s.statements_dataset)
    st = summary.statements
    deep = next((r["resolved"] for r in rows if r["group"] == "fin_with" and r["lag"] == 0), rows[0]["resolved"])
    seeds = sorted({r["seed"] for r in rows if r["group"] == "fin_with" and r["lag"] == 0})
    lag1_seeds = sorted({r["seed"] for r in rows if r["group"] == "fin_with" and r["lag"] == 1})
    lag1 = f"seed {', '.join(map(str, lag1_seeds))} at lag 1" if lag1_seeds else "none at lag 1 on this page"
    return {"lines": [
        f"Dataset: {s.statements_dataset} ({summary.n_features} features: the {len(PRICE_FEATURES)} price features, "
        f"the same values as the main dataset's, and {summary.n_features - len(PRICE_FEATURES)} statement features; "
        f"fingerprint {summary.fingerprint[:12]}), built by `atft_core.data build --statements "
        f"../shared/data/{STATEMENT_FILE}`. The quotes are split-adjusted only: the filings' per-share figures are "
        f"put on the prices' share basis with {st.get('splits_inferred', 'n/a')} splits of {st.get('split_stocks', 'n/a')} "
        "stocks read from their share counts (docs/data.md, *Share basis*). Splits after the statements end (2024-12) "
        "cannot be read and stay in the prices; docs/data.md measures what a year of unseen splits does (most of the "
        "20-day yield leak comes back), so the 20-day yield rows on the test year are an upper bound.",
        f"Window, the same for every row of this section: data.start={STATEMENT_START} (statements start 2021-01-25; "
        "earnings yield and book-to-price are known for about 85% of stock-days from June 2021, after the March "
        f"year-end filings), data.train_end={TRAIN_END}, data.val_end={VAL_END}; segments as trained: "
        f"{deep.get('splits', 'n/a')}. The deep rows train on all {deep.get('train_days', 'n/a')} training days "
        f"of the window (no cut), phases {','.join(map(str, deep.get('phase_epochs') or []))}, hidden "
        f"{deep.get('hidden_size')}; seeds {', '.join(map(str, seeds))} at lag 0, {lag1}.",
        f"*without*: data.features = the {len(PRICE_FEATURES)} price features; *with*: every feature of the dataset. "
        "Same seeds, same window, same days: the difference is the statement features alone.",
        "Factors: `model.kind=factor`, `model.factor_sign=1` (high yield first, as given: no sign chosen on any split).",
        "The best-baseline choice, the verdict and the main tables leave these rows out (another window).",
    ]}


REPORT_KNOBS = ("model.hidden_size", "train.phase_epochs", "train.mode")
"""Deep-row settings the report sets itself (the page's sizes line states them)."""


def stale_defaults(run_dir: Path, profile: Profile) -> list[str]:
    """Model, loss and train settings a finished row was trained with that are no longer the
    config defaults, e.g. "loss.rankic_weight=0.2 (default now 0.5)": a page built from rows
    trained before a default changed says so instead of calling them the default config.
    A key the run's config lacks was added later with a default that changes nothing."""
    requested = (read_json(RunFiles(run_dir).config) or {}).get("requested") or {}
    now = RunConfig().to_dict()
    stale = []
    for section in ("model", "loss", "train"):
        for key, value in now[section].items():
            name = f"{section}.{key}"
            old = (requested.get(section) or {}).get(key, value)
            if old != value and name not in REPORT_KNOBS and name not in profile.deep:
                stale.append(f"{name}={old} (default now {value})")
    return stale


def collect(s: Settings, clock: Clock, load_before: tuple, reused: list[str]) -> dict[str, Any]:
    """The results dict from every catalogue row whose run has finished (not only this invocation's)."""
    records, missing = [], []
    for row in all_rows(s):
        run_dir = s.runs_dir / row.name
        state = (read_json(RunFiles(run_dir).status) or {}).get("state")
        if state in FINAL_STATES_OK and RunFiles(run_dir).predictions.is_file():
            records.append(collect_row(row, run_dir, s.cost_bps))
        else:
            missing.append(f"{row.name}: {state or 'not run'}")
    clock.say(f"collected {len(records)} rows ({len(missing)} without results)")
    records = _with_ensemble(records, s.runs_dir, s.cost_bps)
    axis = align_daily(records)
    val_axis = align_daily(records, "daily_val")
    base = report.best_baseline(records)
    room = headroom(s.dataset, s.runs_dir / base["name"], axis) if base else []
    return {"generated": dt.datetime.now().isoformat(timespec="seconds"),
            "command": s.command, "machine": machine_facts(load_before),
            "protocol": protocol_facts(s, records),
            "settings": {"profile": s.profile, "cuts": cuts_text(records, s.profile), "cost_bps": list(s.cost_bps),
                         "stale_defaults": stale_defaults(s.runs_dir / "default-s0", PROFILES[s.profile])},
            "commands": sorted({r["command"] for r in records if r.get("command")}),
            "rows_run_seconds": sum(r["run_seconds"] or 0.0 for r in records),
            "devices": sorted({f"{r['resolved'].get('device')} ({r['resolved'].get('device_name')})" for r in records}),
            "wall_seconds": clock.elapsed(), "reused": reused, "missing": missing,
            "test_dates": axis, "val_dates": val_axis, "rows": records, "headroom": room,
            "statements": statement_facts(s, records)}


def write_report(results: dict[str, Any], out: Path, clock: Clock) -> Path:
    """results.json, the PNG plots and quality.md under `out`; returns the markdown path."""
    plot_dir = out / "quality"
    plot_dir.mkdir(parents=True, exist_ok=True)
    (plot_dir / "results.json").write_text(json.dumps(results, allow_nan=False))
    report.write_plots(results, plot_dir)
    page = out / "quality.md"
    page.write_text(report.render_markdown(results, "quality"))
    clock.say(f"wrote {page}, {plot_dir}/results.json and the plots")
    return page


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; size knobs default to the profile's values."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="real")
    ap.add_argument("--smoke", action="store_true", help="tiny profile on a synthetic demo dataset built in --runs-dir")
    ap.add_argument("--dataset", default="", help="use this built dataset instead of building one")
    ap.add_argument("--statements-dataset", default="",
                    help="dataset of the statement rows (default <runs-dir>/dataset_statements.parquet, built with "
                         "--statements from --raw-dir)")
    ap.add_argument("--raw-dir", default=str(SHARED_DATA), help="J-Quants files for the real dataset")
    ap.add_argument("--runs-dir", default="", help="run folders (default runs/quality, smoke runs/quality-smoke)")
    ap.add_argument("--out", default="", help="report folder: quality.md + quality/ (default docs, smoke <runs-dir>/report)")
    ap.add_argument("--only", default="", help="comma-separated rows to train now (see --list)")
    ap.add_argument("--list", action="store_true", help="print the rows and exit")
    ap.add_argument("--report-only", action="store_true", help="no training: report from the finished runs")
    ap.add_argument("--from-results", action="store_true", help="no training: report from <out>/quality/results.json")
    ap.add_argument("--train-only", action="store_true",
                    help="train the rows, write no report (on a machine without altair; --report-only later)")
    ap.add_argument("--device", default="auto", help="runtime.device of every row")
    real = PROFILES["real"].knobs
    ap.add_argument("--mode", choices=("safe", "optimized"), default=None, help=f"train.mode of every row ({real.mode})")
    ap.add_argument("--phase-epochs", default=None, help="train.phase_epochs of the deep rows "
                    f"({','.join(map(str, real.phase_epochs))}; the config default is "
                    f"{','.join(map(str, RunConfig().train.phase_epochs))})")
    ap.add_argument("--hidden", type=int, default=None, help=f"model.hidden_size of the default rows ({real.hidden})")
    ap.add_argument("--hidden-large", type=int, default=None,
                    help=f"model.hidden_size of the large ablation ({real.hidden_large})")
    ap.add_argument("--max-train-days", type=int, default=None, help="deep rows train on the last N training days, "
                    f"0 = all ({real.max_train_days}); baselines always use all")
    ap.add_argument("--seeds", type=int, default=None, help=f"seeds of the default config ({real.seeds})")
    ap.add_argument("--jobs", type=int, default=None,
                    help=f"rows trained at the same time ({PROFILES['real'].jobs}: one per core; more on a GPU machine)")
    ap.add_argument("--threads", type=int, default=None, help="runtime.num_threads of every row (1)")
    ap.add_argument("--costs", default=",".join(f"{c:g}" for c in costs.DEFAULT_COST_BPS),
                    help="trading-cost levels in bp per side for the after-costs tables (default 0,5,10,20); "
                         "changing them needs no retraining (--report-only)")
    return ap.parse_args(argv)


def _cost_levels(text: str) -> tuple[float, ...]:
    try:
        return costs.parse_cost_bps(text)
    except costs.CostLevelsError as exc:
        raise SystemExit(f"--{exc}") from None


def make_settings(args: argparse.Namespace, argv: list[str]) -> tuple[Settings, Profile]:
    """Profile defaults overridden by the given options."""
    name = "tiny" if args.smoke else args.profile
    p = PROFILES[name]
    tiny = name == "tiny"  # never writes into runs/quality or docs/ unless told to
    runs_dir = Path(args.runs_dir or REPO_ROOT / ("runs/quality-smoke" if tiny else "runs/quality"))
    dataset = Path(args.dataset) if args.dataset else runs_dir / ("demo.parquet" if tiny else "dataset.parquet")
    fin = Path(args.statements_dataset or runs_dir / "dataset_statements.parquet").resolve() if p.statements else None
    out = Path(args.out) if args.out else (runs_dir / "report" if tiny else REPO_ROOT / "docs")
    given = {"phase_epochs": tuple(int(x) for x in args.phase_epochs.split(",")) if args.phase_epochs else None,
             "hidden": args.hidden, "hidden_large": args.hidden_large, "max_train_days": args.max_train_days,
             "seeds": args.seeds, "mode": args.mode}
    knobs = dataclasses.replace(p.knobs, **{k: v for k, v in given.items() if v is not None})
    settings = Settings(profile=name, dataset=dataset.resolve(), runs_dir=runs_dir.resolve(), out=out, knobs=knobs,
                        device=args.device, poll_seconds=p.poll_seconds,
                        only=tuple(x.strip() for x in args.only.split(",") if x.strip()),
                        jobs=max(1, args.jobs or p.jobs), threads=args.threads,
                        command="python bench/quality.py " + shlex.join(argv), cost_bps=_cost_levels(args.costs),
                        statements_dataset=fin)
    return settings, p


def prepare_dataset(s: Settings, args: argparse.Namespace, clock: Clock) -> Path:
    """The dataset path: given, demo (smoke) or the real panel (built or reused)."""
    if args.dataset:
        return s.dataset
    if s.profile == "tiny":
        return ensure_demo_dataset(s.dataset, clock)
    return ensure_real_dataset(Path(args.raw_dir), s.dataset, clock)


def prepare_statements_dataset(s: Settings, args: argparse.Namespace, rows: list[Row], clock: Clock) -> None:
    """Build (or reuse) the statement rows' dataset when a row to train needs it and it was not given."""
    if s.statements_dataset is None or args.statements_dataset or not any(
            r.group in report.STATEMENT_GROUPS for r in rows):
        return
    ensure_real_dataset(Path(args.raw_dir), s.statements_dataset, clock, statements=True)


def train_rows(rows: list[Row], s: Settings, profile: Profile, deep_start: str, clock: Clock) -> list[str]:
    """Train (or reuse / resume) each row; returns the names reused from earlier invocations."""
    prints: dict[str, str] = {}
    s.runs_dir.mkdir(parents=True, exist_ok=True)
    queue.set_slots(s.runs_dir, quality_slots(s))
    reused, queued = [], []
    for row in rows:
        cfg = row_config(row, s, profile, deep_start)
        if cfg.data.path not in prints:
            prints[cfg.data.path] = read_metadata(cfg.data.path).get("fingerprint", "")
        state = row_state(s.runs_dir / row.name, cfg, prints[cfg.data.path])
        if state == "done":
            reused.append(row.name)
            clock.say(f"{row.name}: reusing the finished run")
            continue
        clock.say(f"{row.name}: {'resuming' if state == 'resume' else 'training'} ({row.label})")
        submit_row(row, cfg, state, s)
        queued.append(row.name)
    follow_rows(queued, s, clock)
    return reused


def main(argv: list[str]) -> int:
    """Train what is missing, collect every finished row, write results.json, plots and markdown."""
    args = parse_args(argv)
    s, profile = make_settings(args, argv)
    clock = Clock()
    load_before = os.getloadavg()
    if args.list:
        for row in all_rows(s):
            shown = {k: f"({len(v)} names)" if isinstance(v, tuple) and len(v) > 4 else v for k, v in row.overrides.items()}
            print(f"{row.name:22s} {row.label}  {shown}")
        return 0
    if args.from_results:
        results = json.loads((s.out / "quality" / "results.json").read_text())
        write_report(results, s.out, clock)
        return 0
    dataset = prepare_dataset(s, args, clock)
    reused: list[str] = []
    if not args.report_only:
        deep_start = deep_train_start(dataset, s, profile)
        rows = selected_rows(s, profile)
        prepare_statements_dataset(s, args, rows, clock)
        clock.say(f"{len(rows)} row(s) to train or reuse in {s.runs_dir}; deep rows from {deep_start or 'the start'}")
        reused = train_rows(rows, s, profile, deep_start, clock)
    if args.train_only:
        return 0
    results = collect(s, clock, load_before, reused)
    write_report(results, s.out, clock)
    for line in report.verdict_lines(report.verdict(results["rows"])):
        clock.say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
