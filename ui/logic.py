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


def phase_boundaries(metrics: pl.DataFrame) -> list[dict[str, Any]]:
    """First epoch of every phase after the first one: [{'epoch', 'phase'}]."""
    if metrics.is_empty():
        return []
    firsts = (
        metrics.filter(pl.col("epoch") >= 1)
        .group_by("phase").agg(pl.col("epoch").min().alias("epoch"))
        .sort("epoch")
    )
    rows = firsts.to_dicts()
    return rows[1:]


def best_epoch(metrics: pl.DataFrame, name: str = "val/rank_ic") -> int | None:
    """Epoch with the highest value of `name` (None without any)."""
    sub = metrics.filter((pl.col("name") == name) & pl.col("value").is_not_null())
    if sub.is_empty():
        return None
    return int(sub.sort("value", descending=True)["epoch"][0])


def smooth(frame: pl.DataFrame, weight: float, by: str = "series") -> pl.DataFrame:
    """Add a 'smoothed' column: exponential moving average with `weight` in [0, 1) per series."""
    if weight <= 0:
        return frame.with_columns(pl.col("value").alias("smoothed"))
    return frame.with_columns(
        pl.col("value").ewm_mean(alpha=1.0 - weight, adjust=False, ignore_nulls=True).over(by).alias("smoothed")
    )


def best_and_final(metrics: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Per run and metric: best (max; min for losses), final value and the epoch of each."""
    sub = metrics.filter(pl.col("name").is_in(names) & pl.col("value").is_not_null()).sort("wall_time")
    if sub.is_empty():
        return pl.DataFrame()
    rows = []
    for (run_id, name), grp in sub.group_by(["run_id", "name"], maintain_order=True):
        lower_better = "loss" in name
        best = grp.sort("value", descending=not lower_better).row(0, named=True)
        last = grp.row(-1, named=True)
        rows.append({"run": run_id, "metric": name, "best": best["value"], "best_epoch": best["epoch"],
                     "final": last["value"], "final_epoch": last["epoch"]})
    return pl.DataFrame(rows).sort(["metric", "run"])


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
                  labels: dict[str, str] | None = None) -> pl.DataFrame:
    """One metric of several runs: run, epoch, seconds (since the run's first metric), value, smoothed.

    Step-level values are kept when x is wall time; per epoch the last value counts. `labels`
    renames run ids (e.g. to run names) for the legend.
    """
    sub = metrics.filter((pl.col("name") == name) & pl.col("value").is_not_null()).sort("wall_time")
    sub = sub.with_columns((pl.col("wall_time") - pl.col("wall_time").min().over("run_id")).alias("seconds"))
    if x == "epoch":
        sub = sub.group_by(["run_id", "epoch"], maintain_order=True).last()
    sub = sub.rename({"run_id": "run"}).select("run", "epoch", "seconds", "value")
    if labels:
        sub = sub.with_columns(pl.col("run").replace(labels))
    return smooth(sub, weight, by="run")


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
