"""Sections of the Run page: status and progress, live charts, config, checkpoints, feature weights
(the evaluation sections are in ui/evaluation_view.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import streamlit as st

from atft_core import runs
from atft_core.config import PHASE_NAMES
from atft_core.feature_weights import read_feature_weights
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import ENSEMBLE_KIND

from . import charts
from .logic import best_epoch, eta_seconds, format_seconds, phase_boundaries, requested_vs_effective

def _phase_name(phase) -> str:
    if isinstance(phase, int) and 0 <= phase < len(PHASE_NAMES):
        return PHASE_NAMES[phase]
    return "-" if phase is None else str(phase)


def status(summary: runs.RunSummary) -> None:
    """Status, phase, epoch x of y with a progress bar and an ETA, the reason of a failure, and
    what the trainer warned about."""
    done, planned = summary.epoch or 0, summary.epochs_planned or 0
    cols = st.columns([1.2, 1.4, 0.8, 1, 1.2])
    cols[0].metric("Status", summary.status)
    cols[1].metric("Phase", _phase_name(summary.phase), help=f"phase {summary.phase} of {list(PHASE_NAMES)}")
    cols[2].metric("Epoch", f"{done} / {planned or '?'}")
    cols[3].metric("Best val RankIC", "-" if summary.best_rank_ic is None else f"{summary.best_rank_ic:.4f}",
                   help=f"epoch {summary.best_epoch}" if summary.best_epoch is not None else None)
    eta = eta_seconds(done, planned, summary.duration or 0.0) if summary.live else None
    cols[4].metric("Elapsed / ETA", f"{format_seconds(summary.duration)} / {format_seconds(eta)}")
    st.progress(min(1.0, done / planned) if planned else 0.0, text=f"epoch {done} of {planned or '?'}")
    if summary.reason:
        (st.error if summary.status in ("failed", "crashed") else st.info)(summary.reason)
    elif summary.status == "queued" and summary.phase_name:
        st.info(f"Queued, {summary.phase_name}: a seed group trains one run at a time.")
    for warning in summary.warnings:
        st.warning(warning)


def live_charts(metrics: pl.DataFrame) -> None:
    """Every Run-page chart, with phase starts and the best epoch marked."""
    if metrics.is_empty():
        st.info("No metrics yet: the first ones appear after the first epoch.")
        return
    rules = [{"epoch": float(b["epoch"]), "label": f"phase {_phase_name(b['phase'])}", "kind": "phase"}
             for b in phase_boundaries(metrics)]
    best = best_epoch(metrics)
    if best is not None:
        rules.append({"epoch": float(best), "label": "best epoch", "kind": "best"})
    ric = charts.per_epoch(metrics, ("val/rank_ic",))
    if not ric.is_empty():
        st.caption(f"val/rank_ic logged for {ric.height} epoch(s); latest {ric['value'][-1]:.4f}"
                   + (f"; best at epoch {best}" if best is not None else ""))
    cols = st.columns(2)
    for i, (title, names, log) in enumerate(charts.RUN_CHARTS):
        frame = charts.per_epoch(metrics, names)
        with cols[i % 2]:
            if frame.is_empty():
                st.caption(f"{title}: not logged yet")
            else:
                st.altair_chart(charts.metric_chart(frame, title, log, rules))


def config_section(runs_dir: Path, run_id: str) -> None:
    """The effective config as run, and what differs from what was requested."""
    files = RunFiles(Path(runs_dir) / run_id)
    saved = read_json(files.config) or {}
    info = read_json(files.run_info) or {}
    effective = saved.get("config")
    if not effective:
        st.caption("config.json is written when the trainer starts.")
        return
    if saved.get("ensemble"):
        _ensemble_section(saved["ensemble"])
    diff = requested_vs_effective(saved.get("requested") or info.get("requested") or {}, effective)
    if diff:
        st.markdown("**Differences from the requested config** (auto values resolved):")
        st.dataframe(diff, hide_index=True)
    else:
        st.caption("The effective config equals the requested one.")
    with st.expander("Effective config and resolved facts"):
        st.json({"config": effective, "resolved": saved.get("resolved", {})}, expanded=False)


def _ensemble_section(section: dict) -> None:
    """Which runs an ensemble combines, and how; the config shown below is its first member's."""
    st.markdown(f"**Ensemble** of {len(section.get('members', []))} runs ({section.get('method', '')}); "
                f"{section.get('rows', 0)} stock-days, {section.get('rows_dropped', 0)} dropped because a member "
                "had no prediction for them. The settings below are the first member's.")
    st.dataframe([{"member": m, "kind": k, "seed": s} for m, k, s in
                  zip(section.get("members", []), section.get("member_kinds", []), section.get("member_seeds", []))],
                 hide_index=True)


def checkpoints(runs_dir: Path, run_id: str) -> None:
    rows = [{"file": c.name, "size (MB)": round(c.size_bytes / 2**20, 2),
             "saved": datetime.fromtimestamp(c.modified).strftime("%Y-%m-%d %H:%M:%S")}
            for c in runs.list_checkpoints(runs_dir, run_id)]
    if rows:
        st.dataframe(rows, hide_index=True)
    elif (read_json(RunFiles(Path(runs_dir) / run_id).run_info) or {}).get("kind") == ENSEMBLE_KIND:
        st.caption("An ensemble has no checkpoints of its own: its members have them.")
    else:
        st.caption("No checkpoints yet.")


FEATURE_WEIGHTS_SHOWN = 20
"""Inputs drawn in the feature-weight chart (the highest weights; the rest are in the table)."""


def feature_weights(runs_dir: Path, run_id: str) -> None:
    """The encoder's mean variable-selection weight per input (deep runs only)."""
    found = read_feature_weights(RunFiles(Path(runs_dir) / run_id).feature_weights)
    if found is None:
        return
    weights, facts = found
    st.markdown(f"**Inputs the model lets through**: the temporal encoder's variable-selection weight per input, "
                f"averaged over {facts.get('rows', 0):,} {facts.get('split', 'val')} stock-days at the best "
                f"checkpoint (epoch {facts.get('best_epoch')}); the dashed line is uniform selection, "
                f"1/{weights.height} = {facts['uniform']:.4f}. A weight says how much of an input is passed on, "
                "not whether it helps or in which direction.")
    top = weights.head(FEATURE_WEIGHTS_SHOWN)
    st.altair_chart(charts.feature_weight_chart(top, facts["uniform"], f"Top {top.height} of {weights.height} inputs"))
    with st.expander("All inputs"):
        st.dataframe(weights, hide_index=True)
