"""How long a run will take, estimated before launch (the pre-flight checklist's "duration").

    estimate_duration(eff, plan, runs_dir) -> DurationEstimate   # the deep model

Measured when earlier runs in the runs folder trained an epoch of the same work (`speed_key`:
same dataset and day plan, model shapes, steps, mode, device, precision and threads): their
logged training throughput (`samples_per_second`, stock-days per second) and validation time
(`val_seconds`) per phase, applied to this run's plan. Otherwise it is a guess, and says so: from
an earlier run of another size on the same device and mode, or from the throughput measured in
docs/benchmarks.md, scaled by the model's width. In safe mode a run that would take long gets
the optimized mode's estimate beside it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from atft_core.config import PHASE_NAMES, RunConfig
from atft_core.paths import run_path
from atft_core.plan import DayPlan
from atft_core.runs.store import query_metrics

GAT_PHASE = PHASE_NAMES.index("gat")
"""First phase with the graph attention (as atft_core.model, which this read-side module does not load)."""
SPEED_METRICS = ("samples_per_second", "val_seconds")
REFERENCE_RATES = {
    ("cpu", "safe"): (5_143, 4_085),
    ("cpu", "optimized"): (23_843, 12_635),
    ("cuda", "safe"): (21_000, 21_000),
    ("cuda", "optimized"): (115_000, 115_000),
}
"""Training stock-days per second at hidden 64 (phases without / with the GAT), docs/benchmarks.md:
a 2-core CPU (bench_train.py, demo, medians of 3) and an H100 (bench_epoch.py, real-data shape)."""
REFERENCE_HIDDEN = 64
CPU_WIDTH_EXPONENT = 1.35
"""On the CPU the rate falls as (hidden / 64) ** -1.35 (benchmarks: 5,143 -> 793 stock-days/s from
hidden 64 to 256, safe mode); on a GPU the width barely matters at these sizes (12.0 vs 13.2 s)."""
FORWARD_SHARE = 1 / 3
"""A validation stock-day (forward pass only) costs about a third of a training one (guesses only)."""
GAT_SLOWDOWN = 0.8
"""Phases with the GAT train at about 0.8x the rate of those without (4,085 / 5,143, benchmarks)."""
SUGGEST_OPTIMIZED_SECONDS = 20 * 60
"""A safe-mode run estimated longer than this gets the optimized mode's estimate beside it."""


@dataclass(frozen=True)
class DurationEstimate:
    """Estimated wall time of the training (start-up not included) and how it was made."""

    seconds: float
    measured: bool
    """False: a guess (another size, or the benchmarks' figures)."""
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def speed_key(eff: RunConfig) -> tuple:
    """What decides the work and speed of an epoch (not how many epochs): the dataset and the day
    plan, the model's shapes, the steps, the training-day sample, mode, device, precision, threads."""
    d, m, t, r = eff.data, eff.model, eff.train, eff.runtime
    data = (str(Path(d.path).expanduser().resolve()), d.start, d.end, d.features, d.lookback, d.horizons,
            d.train_end, d.val_end, d.train_fraction, d.val_fraction, d.purge_days, d.embargo_days,
            d.min_stocks_per_day)
    model = (m.kind, m.hidden_size, m.encoder_layers, m.encoder_heads, m.fan_top_k, m.use_gat, m.gat_layers,
             m.gat_heads, m.graph_top_k, m.graph_corr_window, m.graph_rebuild_interval, m.graph_sector_edges,
             m.graph_max_sector_edges, m.quantiles)
    return data, model, t.days_per_step, t.mode, t.train_eval_days, r.device.split(":")[0], r.precision, r.num_threads


def earlier_runs(runs_dir: Path) -> list[tuple[str, RunConfig]]:
    """(run id, effective config) of every run in `runs_dir` that has trained (config.json); the
    pre-flight compares them with a new run (speed here, memory in atft_core.system)."""
    found = []
    for config_file in sorted(Path(runs_dir).glob("*/config.json")):
        try:
            saved = json.loads(config_file.read_text())
            run_id = config_file.parent.name
            run_path(runs_dir, run_id)   # a bad name or a link out of the runs folder is not a run
            found.append((run_id, RunConfig.from_dict(saved["config"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unsafe name, an older format or a torn file says nothing about this run
    return found


def _phase_rates(runs_dir: Path, run_ids: list[str]) -> dict[int, tuple[float, float | None]]:
    """Per phase: median training stock-days/s and median validation seconds (None if not logged)."""
    rows = query_metrics(runs_dir, run_ids, list(SPEED_METRICS))
    rates: dict[int, tuple[float, float | None]] = {}
    for phase in sorted(set(rows["phase"].to_list()) - {-1}):
        sub = rows.filter((rows["phase"] == phase) & rows["value"].is_not_null())
        train = sub.filter(sub["name"] == "samples_per_second")["value"].to_list()
        val = sub.filter(sub["name"] == "val_seconds")["value"].to_list()
        if train:
            rates[int(phase)] = (statistics.median(train), statistics.median(val) if val else None)
    return rates


def _epoch_seconds(plan: DayPlan, eff: RunConfig, rate: float, val_seconds: float | None) -> float:
    """One epoch: the training days at `rate`, plus validation (measured, or guessed from the rate)."""
    train = plan.stock_days(plan.train_days) / rate
    if val_seconds is None:
        evaluated = plan.stock_days(plan.val_days) + min(eff.train.train_eval_days, len(plan.train_days)) * (
            plan.stock_days(plan.train_days) / max(1, len(plan.train_days)))
        val_seconds = evaluated / (rate / FORWARD_SHARE)
    return train + val_seconds


def _total(eff: RunConfig, plan: DayPlan, per_phase: dict[int, tuple[float, float | None]]) -> float:
    """Every planned epoch plus the final evaluation (about two validation passes)."""
    total, validation = 0.0, 0.0
    for phase, epochs in enumerate(eff.train.phase_epochs):
        if epochs:
            rate, val = per_phase[phase]
            epoch = _epoch_seconds(plan, eff, rate, val)
            validation = epoch - plan.stock_days(plan.train_days) / rate
            total += epochs * epoch
    return total + 2 * validation


def _fill_phases(eff: RunConfig, measured: dict[int, tuple[float, float | None]]) -> tuple[dict, list[str]]:
    """The measured rates for every phase that will run; a phase not measured takes the rate of
    one that was (x or / GAT_SLOWDOWN across the GAT boundary). Returns the names guessed."""
    filled, guessed = dict(measured), []
    for phase, epochs in enumerate(eff.train.phase_epochs):
        if epochs == 0 or phase in filled:
            continue
        source = min(measured, key=lambda p: (p >= GAT_PHASE) != (phase >= GAT_PHASE))
        rate, _ = measured[source]
        if (source >= GAT_PHASE) != (phase >= GAT_PHASE) and eff.model.use_gat:
            rate = rate * GAT_SLOWDOWN if phase >= GAT_PHASE else rate / GAT_SLOWDOWN
        filled[phase] = (rate, measured[source][1])
        guessed.append(PHASE_NAMES[phase])
    return filled, guessed


def _reference_rates(eff: RunConfig, earlier: list[tuple[str, RunConfig]], runs_dir: Path
                     ) -> tuple[dict[int, tuple[float, float | None]], str]:
    """Rates for a guess: an earlier run on the same device and mode (scaled by width), or the
    benchmarks' figures."""
    device, mode = eff.runtime.device.split(":")[0], eff.train.mode
    same = [(rid, cfg) for rid, cfg in earlier
            if cfg.runtime.device.split(":")[0] == device and cfg.train.mode == mode and cfg.model.kind == eff.model.kind]
    for run_id, cfg in reversed(same):
        rates = _phase_rates(runs_dir, [run_id])
        if rates:
            scale = _width_scale(eff, cfg.model.hidden_size)
            return ({p: (r * scale, None) for p, (r, _) in rates.items()},
                    f"run {run_id} (hidden {cfg.model.hidden_size}) scaled to hidden {eff.model.hidden_size}")
    without, with_gat = REFERENCE_RATES[(device if device in ("cpu", "cuda") else "cpu", mode)]
    scale = _width_scale(eff, REFERENCE_HIDDEN)
    rates = {p: ((with_gat if p >= GAT_PHASE and eff.model.use_gat else without) * scale, None)
             for p in range(len(PHASE_NAMES))}
    return rates, f"the throughput in docs/benchmarks.md ({device}, {mode} mode) scaled to hidden {eff.model.hidden_size}"


def _width_scale(eff: RunConfig, hidden: int) -> float:
    if eff.runtime.device.startswith("cuda"):
        return 1.0
    return (hidden / eff.model.hidden_size) ** CPU_WIDTH_EXPONENT


def estimate_duration(eff: RunConfig, plan: DayPlan, runs_dir: Path | str) -> DurationEstimate:
    """The estimated training time of the deep model's `eff` (an effective config) over `plan`;
    see the module doc."""
    runs_dir = Path(runs_dir)
    earlier = earlier_runs(runs_dir)
    key = speed_key(eff)
    same = [rid for rid, cfg in earlier if speed_key(cfg) == key]
    measured = _phase_rates(runs_dir, same) if same else {}
    if measured:
        rates, guessed = _fill_phases(eff, measured)
        seconds = _total(eff, plan, rates)
        source = f"measured by {len(same)} earlier run(s) of this size ({', '.join(same[-3:])})"
        if guessed:
            source += f"; phase(s) {', '.join(guessed)} not measured there, guessed from the others"
        return DurationEstimate(seconds, not guessed, f"about {format_duration(seconds)}: {source}")
    rates, source = _reference_rates(eff, earlier, runs_dir)
    seconds = _total(eff, plan, _fill_phases(eff, rates)[0])
    return DurationEstimate(seconds, False, f"about {format_duration(seconds)}, a guess from {source}; no earlier "
                            "run of this size here (the Run page's ETA measures it from the first steps)")


def optimized_hint(eff: RunConfig, plan: DayPlan, runs_dir: Path | str, safe: DurationEstimate,
                   optimized: RunConfig) -> str:
    """In safe mode, for a run estimated longer than SUGGEST_OPTIMIZED_SECONDS: what optimized mode
    (`optimized`, the same config resolved in that mode) would take, when that is much shorter."""
    if eff.train.mode != "safe" or safe.seconds < SUGGEST_OPTIMIZED_SECONDS:
        return ""
    fast = estimate_duration(optimized, plan, runs_dir)
    if fast.seconds > safe.seconds / 2:
        return ""
    how = "measured" if fast.measured else "a guess"
    return (f"; train.mode=optimized would take about {format_duration(fast.seconds)} ({how}; all cores or the "
            f"GPU, {optimized.train.days_per_step} days per step, not bit-for-bit reproducible)")


def format_duration(seconds: float) -> str:
    """'2 h 05 min', '14 min', '40 s'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{max(1, round(s / 60))} min" if s >= 90 else f"{s} s"
