"""Confirm the best: is a study's winner better than the baselines, or a lucky seed?

    confirm_best(name, url, runs_dir, top=3, seeds=3, baselines=BASELINE_KINDS, test=False) -> Confirmation
    python -m atft_core.sweep confirm STUDY --top 3 --seeds 3 [--test]

The `top` best distinct settings of the study are trained again with `seeds` seeds each
(``runtime.seed`` = the base seed, + 1, ...), beside the baselines (ordinary runs of model.kind
reversal_1d, ..., on the study's base config: finished ones with the same data settings are
reused, missing ones run), all through the job queue. Each setting is judged, on VALIDATION, by
the mean ± std over its seeds of the mean daily RankIC (the objective's horizon, else 1 day) and
by the paired t-statistic of its seeds' per-date mean daily RankIC against the best baseline's
(the baseline with the highest validation RankIC), as the quality report judges the default
model. The test split is read only when asked (`test`), and labelled TEST.

Runs carry the tag ``confirm-<study>`` and run.json ``confirm`` (study, setting rank, trial, seed
or baseline); a confirmation run again reuses the finished ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from atft_core.config import MODEL_KINDS, ConfigError, RunConfig
from atft_core.evaluation import daily_rank_ic_frame, load_predictions
from atft_core.metrics import paired_t
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import queue
from atft_core.runs.launch import dataset_path
from atft_core.runs.store import list_runs
from atft_core.sweep.space import field_value, requested_config
from atft_core.sweep.spec import StudySpec
from atft_core.sweep.storage import SweepError
from atft_core.sweep.trials import TrialRow, load, read_study

BASELINE_KINDS = tuple(k for k in MODEL_KINDS if k not in ("atft_gat_fan", "factor"))
"""The baselines a confirmation compares with (those that need no setting of their own)."""
CONFIRM_ATTR = "atft_confirmation"
"""The study's user attribute holding the last confirmation (the Sweep page shows it)."""
FINISHED = ("completed", "early_stopped")
MAX_TOP, MAX_SEEDS = 20, 20


@dataclass
class SplitResult:
    """One setting (or baseline) on one split: mean daily RankIC per seed and what they give."""

    per_seed: list[float]
    mean: float | None
    std: float | None
    t: float | None = None
    """Paired t of the per-date mean over seeds against the best baseline (None for it)."""
    days: int = 0


@dataclass
class SettingResult:
    rank: int
    trial: int
    params: dict[str, Any]
    sweep_value: float | None
    runs: list[str]
    splits: dict[str, SplitResult] = field(default_factory=dict)


@dataclass
class Confirmation:
    study: str
    horizon: int
    seeds: int
    baseline: dict[str, Any] | None
    """The best baseline: kind, run, validation mean daily RankIC."""
    baselines: dict[str, dict[str, Any]]
    settings: list[SettingResult]
    test: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confirm_best(name: str, url: str, runs_dir: Path | str, top: int = 3, seeds: int = 3,
                 baselines: Sequence[str] = BASELINE_KINDS, test: bool = False,
                 say: Callable[[str], None] = print) -> Confirmation:
    """See the module doc. SweepError when the study has no complete trial; ConfigError for a bad
    `top`, `seeds` or baseline kind (before anything runs)."""
    if not 1 <= top <= MAX_TOP or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"confirm: --top 1 to {MAX_TOP} and --seeds 1 to {MAX_SEEDS}, got {top} and {seeds}")
    if unknown := [k for k in baselines if k not in BASELINE_KINDS]:
        raise ConfigError(f"confirm: {unknown[0]!r} is not a baseline; use {', '.join(BASELINE_KINDS)}")
    view = read_study(name, url)
    best = distinct_best(view.ranked(), top)
    if not best:
        raise SweepError(f"study {name!r} has no complete trial to confirm yet")
    spec, runs_dir = view.spec, Path(runs_dir)
    horizon = spec.horizon or 1
    done = _finished_runs(runs_dir, name)
    plan: dict[str, tuple[RunConfig, dict[str, Any], dict[str, Any]]] = {}
    for rank, trial in enumerate(best, start=1):
        for i in range(seeds):
            values = {p.name: field_value(p, trial.params[p.name]) for p in spec.space}
            requested = requested_config(spec.base, values)
            seed = RunConfig.from_dict(requested).runtime.seed + i
            requested = requested_config(requested, {"runtime.seed": seed})
            plan[f"setting-{rank}-seed-{seed}"] = (RunConfig.from_dict(requested), requested,
                                                   {"rank": rank, "trial": trial.number, "seed": seed})
    for kind in baselines:
        requested = requested_config(spec.base, {"model.kind": kind})
        plan[f"baseline-{kind}"] = (RunConfig.from_dict(requested), requested, {"baseline": kind})
    reused = _reusable_baselines(runs_dir, spec, baselines)
    ids = {key: done.get(key) or reused.get(key) or _launch(runs_dir, spec, name, key, *plan[key]) for key in plan}
    say(f"confirm {name}: {len(ids)} runs ({sum(1 for k in ids if k not in done and k not in reused)} new) for the best "
        f"{len(best)} setting(s) x {seeds} seed(s) and {len(baselines)} baseline(s)")
    queue.wait_for_runs(runs_dir, list(ids.values()), on_change=lambda s: say(f"  {s.name or s.id}: {s.status}"))
    result = _judge(runs_dir, name, spec, horizon, seeds, best, ids, baselines, test)
    load(name, url).set_user_attr(CONFIRM_ATTR, json.loads(json.dumps(result.to_dict(), allow_nan=False, default=str)))
    return result


def distinct_best(ranked: list[TrialRow], top: int) -> list[TrialRow]:
    """The `top` best trials with distinct settings (a retried trial repeats its settings)."""
    seen, out = set(), []
    for trial in ranked:
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(trial)
    return out[:top]


def _finished_runs(runs_dir: Path, name: str) -> dict[str, str]:
    """{plan key: run id} of this study's finished confirmation runs."""
    found = {}
    for summary in list_runs(runs_dir, compact=False):
        info = (read_json(RunFiles(runs_dir / summary.id).run_info) or {}).get("confirm") or {}
        if info.get("study") == name and summary.status in FINISHED and info.get("key"):
            found.setdefault(info["key"], summary.id)
    return found


def _reusable_baselines(runs_dir: Path, spec: StudySpec, kinds: Sequence[str]) -> dict[str, str]:
    """{plan key: run id} of finished baseline runs with the study's data settings (any run)."""
    want = _data_key(RunConfig.from_dict(spec.base))
    found: dict[str, str] = {}
    for summary in list_runs(runs_dir, compact=False):
        if summary.model_kind not in kinds or summary.status not in FINISHED:
            continue
        saved = (read_json(RunFiles(runs_dir / summary.id).config) or {}).get("config") or {}
        try:
            key = _data_key(RunConfig.from_dict(saved))
        except ConfigError:   # a run made by an older version: not comparable
            continue
        if key == want and RunFiles(runs_dir / summary.id).predictions.is_file():
            found.setdefault(f"baseline-{summary.model_kind}", summary.id)
    return found


def _data_key(cfg: RunConfig) -> str:
    data = cfg.replace(**{"data.path": str(dataset_path(cfg)),
                          "data.purge_days": cfg.data.purge_days or max(cfg.data.horizons) + cfg.data.execution_lag}).data
    return json.dumps(dataclass_dict(data), sort_keys=True)


def dataclass_dict(value: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items()}


def _launch(runs_dir: Path, spec: StudySpec, name: str, key: str, cfg: RunConfig, requested: dict[str, Any],
            what: dict[str, Any]) -> str:
    label = f"{name} best#{what['rank']} seed {what['seed']}" if "rank" in what else f"{name} {what['baseline']}"
    return queue.launch_run(cfg, runs_dir, name=label, tags=(f"confirm-{name}",), force=spec.force, requested=requested,
                            info={"confirm": {"study": name, "key": key, **what}})


def _daily(runs_dir: Path, run_id: str, split: str, horizon: int) -> pl.DataFrame:
    frame = load_predictions(RunFiles(runs_dir / run_id).predictions)
    return daily_rank_ic_frame(frame, split, horizon)


def _split_result(runs_dir: Path, run_ids: list[str], split: str, horizon: int,
                  reference: pl.DataFrame | None) -> tuple[SplitResult, pl.DataFrame]:
    """Per-seed means, mean ± std, and the paired t of the per-date mean against `reference`."""
    frames = [_daily(runs_dir, r, split, horizon).rename({"rank_ic": f"s{i}"}) for i, r in enumerate(run_ids)]
    per_seed = [float(f[f"s{i}"].mean()) for i, f in enumerate(frames)]
    joined = frames[0]
    for f in frames[1:]:
        joined = joined.join(f, on="Date", how="inner")
    mean_daily = joined.select("Date", pl.mean_horizontal([c for c in joined.columns if c != "Date"]).alias("rank_ic"))
    t, days = None, mean_daily.height
    if reference is not None:
        both = mean_daily.join(reference, on="Date", suffix="_ref")
        t, days = paired_t(both["rank_ic"].to_list(), both["rank_ic_ref"].to_list())
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    return SplitResult(per_seed, float(np.mean(per_seed)) if per_seed else None, std, t, days), mean_daily


def _judge(runs_dir: Path, name: str, spec: StudySpec, horizon: int, seeds: int, best: list[TrialRow],
           ids: dict[str, str], baselines: Sequence[str], test: bool) -> Confirmation:
    states = {s.id: s.status for s in list_runs(runs_dir, compact=False)}
    usable = {k: r for k, r in ids.items() if states.get(r) in FINISHED and RunFiles(runs_dir / r).predictions.is_file()}
    splits = ("val", "test") if test else ("val",)
    base_results: dict[str, dict[str, Any]] = {}
    for kind in baselines:
        run_id = usable.get(f"baseline-{kind}")
        if run_id is not None:
            base_results[kind] = {"run": run_id, **{s: _split_result(runs_dir, [run_id], s, horizon, None)[0].mean
                                                    for s in splits}}
    ranked = [k for k in base_results if base_results[k]["val"] is not None and not math.isnan(base_results[k]["val"])]
    best_kind = max(ranked, key=lambda k: base_results[k]["val"]) if ranked else None   # chosen on validation only
    reference = {s: _daily(runs_dir, base_results[best_kind]["run"], s, horizon) for s in splits} if best_kind else {}
    settings = []
    for rank, trial in enumerate(best, start=1):
        run_ids = [r for k, r in usable.items() if k.startswith(f"setting-{rank}-seed-")]
        result = SettingResult(rank, trial.number, trial.params, trial.value, run_ids)
        if run_ids:
            for split in splits:
                result.splits[split] = _split_result(runs_dir, run_ids, split, horizon, reference.get(split))[0]
        settings.append(result)
    baseline = {"kind": best_kind, **base_results[best_kind]} if best_kind else None
    return Confirmation(name, horizon, seeds, baseline, base_results, settings, test)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_confirmation(result: Confirmation) -> str:
    """The confirmation as text: one line per setting and split, the best baseline first."""
    h = result.horizon
    lines = [f"confirm {result.study}: mean daily RankIC ({h}d) over {result.seeds} seed(s), validation"
             + (" and TEST" if result.test else "") + "; t = paired t of the per-date seed mean against the best "
             "baseline (chosen on validation)"]
    if result.baseline:
        b = result.baseline
        lines.append(f"best baseline: {b['kind']} (run {b['run']}): val {_fmt(b['val'])}"
                     + (f", TEST {_fmt(b.get('test'))}" if result.test else ""))
    else:
        lines.append("best baseline: none finished (no t)")
    for s in result.settings:
        params = ", ".join(f"{k}={v}" for k, v in s.params.items())
        lines.append(f"#{s.rank} trial {s.trial} ({params}; sweep value {_fmt(s.sweep_value, 5)}):")
        if not s.splits:
            lines.append("    no seed run finished")
        for split, r in s.splits.items():
            label = "TEST" if split == "test" else "val"
            spread = f" ± {_fmt(r.std)}" if r.std is not None else ""
            lines.append(f"    {label}: {_fmt(r.mean)}{spread} over {len(r.per_seed)} seed(s); t = {_fmt(r.t, 2)} "
                         f"over {r.days} days")
    return "\n".join(lines)
