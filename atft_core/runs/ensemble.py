"""Ensembles of finished runs: one new run whose predictions combine its members'.

    python -m atft_core.runs ensemble RUN_A RUN_B [RUN_C ...] [--name NAME] [--tag TAG]

(or the Compare page's "Combine into an ensemble run"). Each member's prediction is z-scored
per date (and split and horizon) over that date's stocks, and the ensemble's prediction is the
mean of those z-scores: members of different scales count equally, and a date's ranking is all
a per-date metric reads. On the real panel, three seeds of the default config gained +9% mean
RankIC on unseen years and +11% on validation, six seeds +17% and +21%
(bench/quality_analysis.md); a seed ensemble is the cheapest real gain found there.

Checked before anything is written (`EnsembleError` says which member and what differs):
at least two distinct members; each finished with a predictions.parquet; all built from the
same dataset (fingerprint), with the same horizons and execution lag, and predicting the same
validation and test dates. Members may differ in anything else (seed, model, training window),
and since each member's training ends a purge before the shared validation dates, so does the
ensemble's.

The ensemble is a run folder like any other, so Runs, Run and Compare show it: ``run.json``
(kind ``ensemble``, the members), ``config.json`` (the first member's effective config, the
``ensemble`` section and resolved facts), ``status.json`` (completed), ``metrics.jsonl``
(validation metrics at epoch 1, test metrics at phase -1, as a trainer logs them) and
``predictions.parquet``. It has no checkpoints (nothing was trained) and cannot be resumed.
The folder is assembled under a hidden name and renamed into place, so a failure leaves
nothing behind and a reader never sees half of it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl

from atft_core.evaluation import horizons_in, load_predictions, to_arrays
from atft_core.inference import evaluate
from atft_core.paths import check_run_id, check_tag, clean_text
from atft_core.run_files import MetricsWriter, RunFiles, read_json, update_status, write_json_atomic
from atft_core.runs.launch import new_run_id
from atft_core.runs.store import ENSEMBLE_KIND, RunError
METHOD = "per-date mean of the members' z-scored predictions"
KEYS = ("Date", "Code", "split")
FINISHED = ("completed", "early_stopped")
"""Member states whose predictions come from a best checkpoint."""
MIN_MEMBERS = 2


class EnsembleError(RunError):
    """Members that cannot be combined, and why."""


def combine_predictions(frames: Sequence[pl.DataFrame], horizons: Sequence[int]) -> pl.DataFrame:
    """Per date, split and horizon: the mean over `frames` of each one's z-scored prediction.

    Frames are predictions tables (Date, Code, split, pred_<h>d, target_<h>d); the targets come
    from the first. Only rows every frame has are kept (inner join), and the z-scores are taken
    over those, so every member is scaled over the same stocks. A date on which a member
    predicts one value for every stock carries no ranking: its z-score counts as 0.
    """
    joined = frames[0].select(*KEYS, *[f"target_{h}d" for h in horizons])
    for i, frame in enumerate(frames):
        joined = joined.join(frame.select(*KEYS, *[pl.col(f"pred_{h}d").alias(f"p{i}_{h}") for h in horizons]),
                             on=list(KEYS))

    def zscore(column: str) -> pl.Expr:
        pred = pl.col(column)
        std = pred.std().over("Date", "split")
        return pl.when(std > 0).then((pred - pred.mean().over("Date", "split")) / std).otherwise(0.0)

    means = [pl.mean_horizontal(*[zscore(f"p{i}_{h}") for i in range(len(frames))]).alias(f"pred_{h}d")
             for h in horizons]
    columns = [c for h in horizons for c in (f"pred_{h}d", f"target_{h}d")]
    return joined.with_columns(means).select(*KEYS, *columns).sort("split", "Date", "Code")


def split_arrays(frame: pl.DataFrame, split: str, horizons: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(pred [D, N, H], target [D, N, H]) of one split, as `inference.evaluate` takes them."""
    pairs = [to_arrays(frame, split, h)[1:3] for h in horizons]
    return np.stack([p for p, _ in pairs], axis=-1), np.stack([t for _, t in pairs], axis=-1)


def build_ensemble(runs_dir: Path | str, member_ids: Sequence[str], name: str = "",
                   tags: Iterable[str] = ()) -> str:
    """Combine finished runs into a new ensemble run in `runs_dir`; returns its id."""
    runs_dir = Path(runs_dir)
    members = _members(runs_dir, member_ids)
    horizons = _common_horizons(members)
    combined = combine_predictions([m["predictions"] for m in members], horizons)
    name = clean_text(name)
    run_id = new_run_id(name or f"ensemble-{len(members)}")
    staging = runs_dir / f".building-{run_id}"
    staging.mkdir()
    try:
        _write_run(RunFiles(staging), run_id, name, [check_tag(t) for t in tags], members, horizons, combined)
        os.replace(staging, runs_dir / run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_id


# ---------------------------------------------------------------------------------------------
# Checking the members


def _members(runs_dir: Path, member_ids: Sequence[str]) -> list[dict[str, Any]]:
    ids = [check_run_id(i) for i in member_ids]
    if len(set(ids)) < MIN_MEMBERS:
        raise EnsembleError(f"an ensemble needs at least {MIN_MEMBERS} different runs, got {sorted(set(ids))}")
    if len(set(ids)) != len(ids):
        raise EnsembleError(f"a run is listed twice: {ids}")
    members = [_member(runs_dir, run_id) for run_id in ids]
    _check_compatible(members)
    return members


def _member(runs_dir: Path, run_id: str) -> dict[str, Any]:
    files = RunFiles(runs_dir / run_id)
    if not files.root.is_dir():
        raise EnsembleError(f"no run {run_id!r} in {runs_dir.resolve()}")
    state = (read_json(files.status) or {}).get("state")
    if state not in FINISHED:
        raise EnsembleError(f"run {run_id} is {state or 'not started'}; only finished runs "
                            f"({' or '.join(FINISHED)}) have predictions from a best checkpoint")
    saved = read_json(files.config) or {}
    if not isinstance(saved.get("config"), dict):
        raise EnsembleError(f"run {run_id}: {files.config} is missing or has no effective config")
    try:
        predictions = load_predictions(files.predictions)
    except (FileNotFoundError, ValueError) as exc:
        raise EnsembleError(f"run {run_id}: {exc}") from exc
    dates = predictions.group_by("split").agg(pl.col("Date").unique().sort()).sort("split")
    return {"id": run_id, "config": saved["config"], "resolved": saved.get("resolved") or {},
            "kind": (read_json(files.run_info) or {}).get("kind"), "predictions": predictions,
            "dates": {split: tuple(d) for split, d in dates.iter_rows()}}


def _facts(member: dict[str, Any]) -> dict[str, Any]:
    """What must be equal across members for their predictions to be combined."""
    data = member["config"].get("data") or {}
    return {"dataset fingerprint": member["resolved"].get("dataset_fingerprint"),
            "data.horizons": list(data.get("horizons") or []),
            "data.execution_lag": data.get("execution_lag"),
            "predicted splits": sorted(member["dates"])}


def _check_compatible(members: list[dict[str, Any]]) -> None:
    first = members[0]
    for member in members:
        if member["kind"] == ENSEMBLE_KIND:
            raise EnsembleError(f"run {member['id']} is itself an ensemble; combine its members instead")
    for member in members[1:]:
        for key, value in _facts(first).items():
            other = _facts(member)[key]
            if other != value:
                raise EnsembleError(f"run {member['id']} differs from {first['id']} in {key}: "
                                    f"{other!r} vs {value!r}")
        for split, dates in first["dates"].items():
            if member["dates"][split] != dates:
                raise EnsembleError(f"run {member['id']} predicts other {split} dates than {first['id']} "
                                    f"({len(member['dates'][split])} vs {len(dates)}); their splits differ")


def _common_horizons(members: list[dict[str, Any]]) -> list[int]:
    horizons = [h for h in horizons_in(members[0]["predictions"])
                if all(h in horizons_in(m["predictions"]) for m in members[1:])]
    if not horizons:
        raise EnsembleError("the members' predictions share no horizon")
    return horizons


# ---------------------------------------------------------------------------------------------
# Writing the run


def _write_run(files: RunFiles, run_id: str, name: str, tags: list[str], members: list[dict[str, Any]],
               horizons: list[int], combined: pl.DataFrame) -> None:
    now = time.time()
    member_ids = [m["id"] for m in members]
    section = {"members": member_ids, "method": METHOD,
               "member_seeds": [(m["config"].get("runtime") or {}).get("seed") for m in members],
               "member_kinds": [(m["config"].get("model") or {}).get("kind") for m in members],
               "rows": combined.height,
               "rows_dropped": max(m["predictions"].height for m in members) - combined.height}
    resolved = {**members[0]["resolved"], "members": member_ids, "horizons": horizons, "epochs_planned": 1,
                "n_params": sum(int(m["resolved"].get("n_params") or 0) for m in members)}
    write_json_atomic(files.run_info, {"id": run_id, "name": name, "tags": tags, "note": "", "created": now,
                                       "kind": ENSEMBLE_KIND, "members": member_ids,
                                       "requested": {ENSEMBLE_KIND: {"members": member_ids}}})
    write_json_atomic(files.config, {"config": members[0]["config"], "ensemble": section,
                                     "requested": {ENSEMBLE_KIND: {"members": member_ids}}, "resolved": resolved})
    combined.write_parquet(files.predictions)   # the staging folder is renamed into place whole
    with MetricsWriter(files.metrics) as metrics:
        val = _split_metrics(combined, "val", horizons)
        metrics.log(epoch=1, step=0, phase=0, values={**val, "val/best_rank_ic": val.get("val/rank_ic"),
                                                      "ensemble/members": float(len(members))})
        if "test" in set(combined["split"].unique().to_list()):
            metrics.log(epoch=1, step=0, phase=-1, values=_split_metrics(combined, "test", horizons))
    update_status(files, state="completed", started=now, ended=time.time(), epoch=1, epochs_planned=1,
                  pid=None, error=None)


def _split_metrics(frame: pl.DataFrame, split: str, horizons: list[int]) -> dict[str, float | None]:
    pred, target = split_arrays(frame, split, horizons)
    return evaluate(pred, target, tuple(horizons), split)
