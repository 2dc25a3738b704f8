"""Pure helpers behind the pages (no Streamlit here, so they are testable on their own).

Everything takes plain values (dicts, polars frames) and returns plain values; the pages only
render what these return.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from atft_core.config import MODEL_KINDS, SECTIONS

DEEP_KIND = MODEL_KINDS[0]
"""model.kind of the deep model (listed first); every other kind is a baseline."""

_FIELD_RE = re.compile(rf"\b((?:{'|'.join(SECTIONS)})\.[a-z_0-9]+)")


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {'section.name': value} (lists kept as they are)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def config_diff(configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows {'setting', <run>: value, ...} for settings whose values differ between runs."""
    flats = {run: flatten(cfg) for run, cfg in configs.items()}
    keys = sorted({k for flat in flats.values() for k in flat})
    rows = []
    for key in keys:
        values = {run: flat.get(key) for run, flat in flats.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows.append({"setting": key, **{run: _show(v) for run, v in values.items()}})
    return rows


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def requested_vs_effective(requested: dict[str, Any], effective: dict[str, Any]) -> list[dict[str, Any]]:
    """Settings the run changed from what was requested (auto values resolved, for example)."""
    req, eff = flatten(requested or {}), flatten(effective or {})
    return [
        {"setting": k, "requested": _show(req[k]), "effective": _show(eff.get(k))}
        for k in sorted(req)
        if k in eff and repr(req[k]) != repr(eff[k]) and _show(req[k]) != _show(eff[k])
    ]


def errors_by_field(message: str) -> dict[str, list[str]]:
    """Split a ConfigError message into {'section.name' or '': [problems]} for inline display."""
    out: dict[str, list[str]] = {}
    for part in (p.strip() for p in message.split("; ")):
        if not part:
            continue
        match = _FIELD_RE.search(part)
        out.setdefault(match.group(1) if match else "", []).append(part)
    return out


def phase_boundaries(metrics: pl.DataFrame, x: str = "epoch") -> list[dict[str, Any]]:
    """Where every phase after the first one starts on axis `x` (epoch or step): [{'phase', x}]."""
    if metrics.is_empty():
        return []
    firsts = (
        metrics.filter((pl.col("epoch") >= 1) & (pl.col("phase") >= 0))  # phase -1: the final test metrics
        .group_by("phase").agg(pl.col(x).min())
        .sort(x)
    )
    rows = firsts.to_dicts()
    return rows[1:]


def best_epoch(metrics: pl.DataFrame, name: str = "val/rank_ic") -> int | None:
    """Epoch with the highest value of `name` (None without any)."""
    sub = metrics.filter((pl.col("name") == name) & pl.col("value").is_not_null())
    if sub.is_empty():
        return None
    return int(sub.sort("value", descending=True)["epoch"][0])


def chart_rules(metrics: pl.DataFrame, phase_names: tuple[str, ...], x: str = "epoch",
                best_metric: str = "val/rank_ic") -> list[dict[str, Any]]:
    """The dashed rules of the Run page's charts on axis `x` (epoch or step): where each phase
    starts and the best epoch by `best_metric` ({x, 'label', 'kind'})."""
    def phase_label(phase: int) -> str:
        return phase_names[phase] if 0 <= phase < len(phase_names) else str(phase)

    rules = [{x: float(b[x]), "label": f"phase {phase_label(b['phase'])} starts", "kind": "phase start"}
             for b in phase_boundaries(metrics, x)]
    best = best_epoch(metrics, best_metric)
    if best is not None:
        at = metrics.filter((pl.col("name") == best_metric) & (pl.col("epoch") == best))[x].max()
        rules.append({x: float(at), "label": f"best epoch ({best_metric}): {best}", "kind": "best epoch"})
    return rules


def smooth(frame: pl.DataFrame, weight: float, by: str = "series") -> pl.DataFrame:
    """Add a 'smoothed' column: exponential moving average with `weight` in [0, 1) per series."""
    if weight <= 0:
        return frame.with_columns(pl.col("value").alias("smoothed"))
    return frame.with_columns(
        pl.col("value").ewm_mean(alpha=1.0 - weight, adjust=False, ignore_nulls=True).over(by).alias("smoothed")
    )


def best_and_final(metrics: pl.DataFrame, names: list[str], labels: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per metric and kind (best: max, min for losses; final; or one `value` for a metric
    logged once, like the test metrics), one column per run (labelled by `labels`, e.g. run
    names), cells like ``0.0400 (epoch 2)``."""
    sub = metrics.filter(pl.col("name").is_in(names) & pl.col("value").is_not_null()).sort("wall_time")
    if sub.is_empty():
        return pl.DataFrame()
    labels = labels or {}
    runs = list(dict.fromkeys(sub["run_id"].to_list()))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    once = set(sub.group_by("name").agg(pl.col("epoch").n_unique().max().alias("n")).filter(pl.col("n") == 1)["name"])
    for (run_id, name), grp in sub.group_by(["run_id", "name"], maintain_order=True):
        lower_better = "loss" in name
        best = grp.sort("value", descending=not lower_better).row(0, named=True)
        last = grp.row(-1, named=True)
        kinds = (("value", last),) if name in once else (("best", best), ("final", last))
        for kind, row in kinds:
            cell = f"{row['value']:.4g} (epoch {row['epoch']})"
            rows.setdefault((name, kind), {"metric": name, "value": kind})[labels.get(run_id, run_id)] = cell
    columns = ["metric", "value", *(labels.get(r, r) for r in runs)]
    ordered = [rows[key] for key in sorted(rows)]
    return pl.DataFrame([{c: row.get(c) for c in columns} for row in ordered], schema={c: pl.Utf8 for c in columns})


def eta_seconds(epochs_done: int, epochs_planned: int, elapsed: float) -> float | None:
    """Remaining time from the average epoch time so far (None before the first epoch)."""
    if not epochs_done or not epochs_planned or elapsed <= 0:
        return None
    return max(0.0, elapsed / epochs_done * (epochs_planned - epochs_done))


def format_seconds(seconds: float | None) -> str:
    """'1h 02m', '3m 05s', '42s' or '-'."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def filter_runs(runs: list[dict[str, Any]], *, statuses=(), tags=(), datasets=(), text: str = "") -> list[dict[str, Any]]:
    """Runs matching every given filter (empty filter = no restriction); text matches id/name/tags."""
    text = text.strip().lower()

    def keep(run: dict[str, Any]) -> bool:
        if statuses and run.get("status") not in statuses:
            return False
        if tags and not set(tags) & set(run.get("tags") or ()):
            return False
        if datasets and run.get("dataset") not in datasets:
            return False
        hay = " ".join([str(run.get("id", "")), str(run.get("name", "")), *map(str, run.get("tags") or ())]).lower()
        return not text or text in hay

    return [r for r in runs if keep(r)]


def compare_frame(metrics: pl.DataFrame, name: str, x: str, weight: float,
                  labels: dict[str, str] | None = None, starts: dict[str, float] | None = None) -> pl.DataFrame:
    """One metric of several runs: run, epoch, step, seconds (since the run started), value, smoothed.

    `starts` gives each run's start time (status.json ``started``): the first epoch then sits
    at the time it ended, not at 0; a run without one is timed from its first metric.
    Per epoch (x = epoch) the last value counts; per step the last value of the step; on the
    time axis every value is kept. `labels` renames run ids (e.g. to run names) for the legend.
    """
    sub = metrics.filter((pl.col("name") == name) & pl.col("value").is_not_null()).sort("wall_time")
    start = pl.col("run_id").replace_strict(starts or {}, default=None, return_dtype=pl.Float64)
    sub = sub.with_columns(
        (pl.col("wall_time") - pl.coalesce(start, pl.col("wall_time").min().over("run_id"))).alias("seconds"))
    if x in ("epoch", "step"):
        sub = sub.group_by(["run_id", x], maintain_order=True).last()
    sub = sub.rename({"run_id": "run"}).select("run", "epoch", "step", "seconds", "value")
    if labels:
        sub = sub.with_columns(pl.col("run").replace(labels))
    return smooth(sub, weight, by="run")


def run_labels(runs: list[dict[str, Any]]) -> dict[str, str]:
    """{run id: label} for legends and table columns: the run's name, or its id; a name that
    several runs share gets the id added, so every label is unique."""
    names = [r.get("name") or r["id"] for r in runs]
    return {r["id"]: (n if names.count(n) == 1 or n == r["id"] else f"{n} ({r['id']})") for r, n in zip(runs, names)}


FINISHED_STATES = ("completed", "early_stopped")
"""Runs that ended by themselves: what a comparison starts with."""
DEFAULT_COMPARED = 4
"""Finished runs chosen by default on the Compare page (the newest)."""


def default_compared(runs: list[dict[str, Any]]) -> list[str]:
    """The newest finished runs (never crashed, failed, stopped or still training ones)."""
    return [r["id"] for r in runs if r.get("status") in FINISHED_STATES][:DEFAULT_COMPARED]


RESUMABLE_STATES = ("stopped", "pruned", "failed", "crashed")
"""States a run can be resumed from (with a checkpoints/last.pt); a completed or early-stopped
run has nothing left to train. (A pruned sweep trial resumed trains on as an ordinary run; its
trial stays pruned.)"""


def run_actions(status: str, has_last_checkpoint: bool, trains: bool = True) -> tuple[str, ...]:
    """What the Run page offers for a run: ('stop',) while it is live, ('resume',) when resuming
    can work, else nothing; never both, as it is one decision from one read of the state.
    `trains` is false for runs that trained nothing of their own (ensembles)."""
    if status in ("queued", "running"):
        return ("stop",)
    if trains and status in RESUMABLE_STATES and has_last_checkpoint:
        return ("resume",)
    return ()


def queued_note(phase_name: str) -> str:
    """What a queued run is waiting for: the job queue's reason (a slot, memory, the runs before
    it), or, once the queue has started its trainer, the trainer's start (the data is loading)."""
    if phase_name:
        return f"Queued: {phase_name}."
    return "Queued: the trainer is starting (loading the data); training begins in a moment."


_PER_HORIZON = re.compile(r"_\d+d$")


def headline_metrics(names: list[str]) -> list[str]:
    """Validation/test metrics of the first horizon (per-horizon copies left out); all if none."""
    picked = [n for n in names if n.split("/")[0] in ("val", "test") and not _PER_HORIZON.search(n)]
    return picked or list(names)


def paired_choices(configs: dict[str, dict[str, Any]]) -> tuple[list[str], list[int]]:
    """(runs ordered with baselines first, horizons every run predicts) for the paired t table.

    A baseline is the natural reference: the comparison a quant asks first is against a
    one-line factor, so runs whose ``model.kind`` is not the deep model come first.
    """
    def is_baseline(run: str) -> bool:
        return (configs[run].get("model") or {}).get("kind", DEEP_KIND) != DEEP_KIND

    ordered = sorted(configs, key=lambda run: not is_baseline(run))
    horizon_sets = [set((cfg.get("data") or {}).get("horizons") or ()) for cfg in configs.values()]
    return ordered, sorted(set.intersection(*horizon_sets)) if horizon_sets else []


def tag_changes(old: list[str], text: str) -> tuple[list[str], list[str]]:
    """(tags to add, tags to remove) to turn `old` into the comma-separated `text`."""
    new = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    return [t for t in new if t not in old], [t for t in old if t not in new]
