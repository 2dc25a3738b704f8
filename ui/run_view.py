"""Sections of the Run page: the run picker, status and progress, Stop / Resume, live charts,
log, config, checkpoints and predictions with downloads, feature weights (the evaluation
sections are in ui/evaluation_view.py).

Each section is one function of the run's current summary or folder, so the page can redraw
all of them on every refresh (nothing shown is older than the state it was drawn from).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

import polars as pl
import streamlit as st

from atft_core import runs
from atft_core.config import PHASE_NAMES
from atft_core.feature_weights import read_feature_weights
from atft_core.paths import UnsafePathError, check_run_id
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import ENSEMBLE_KIND, launch, queue

from . import charts, state
from .logic import (chart_rules, eta_seconds, format_seconds, queued_note, requested_vs_effective, run_actions,
                    run_labels)

Y_SCALES = ("auto", "linear", "log")
"""The Run page's y-axis choice: each chart's own default (log for gradient norm and learning
rate), or every chart linear, or every chart log (values <= 0 left out)."""


PICK_KEY = "run_pick"


def pick_run(all_runs: list[runs.RunSummary], wanted: str | None, runs_dir: Path) -> str | None:
    """The run selector. A `wanted` id (from ?run=...) that names no run is said so, and
    nothing is chosen for the user: another run shown silently would be mistaken for it.

    The selector has a key, so that a label that changes with the run's status updates it in
    place (a widget of a new identity would be drawn beside the old one until the run ends).
    """
    ids = [r.id for r in all_runs]
    labels = run_labels([r.to_dict() for r in all_runs])
    status = {r.id: r.status for r in all_runs}
    if wanted and wanted not in ids:
        try:
            check_run_id(wanted)
            st.error(f"There is no run {wanted!r} in {runs_dir}: it may have been deleted. Choose a run below.")
        except UnsafePathError as exc:
            st.error(f"{exc}. Choose a run below.")
        st.session_state[PICK_KEY] = None
    elif wanted or st.session_state.get(PICK_KEY) not in ids:
        st.session_state[PICK_KEY] = wanted or ids[0]
    return st.selectbox("Run", ids, key=PICK_KEY, placeholder="Choose a run", on_change=_picked,
                        format_func=lambda i: f"{labels[i]} · {status[i]} · {i}")


def _picked() -> None:
    """The user chose a run: it becomes the page's ?run=..., before the page runs again."""
    if chosen := st.session_state.get(PICK_KEY):
        st.query_params["run"] = chosen
        st.session_state["selected_run"] = chosen


def _phase_name(phase) -> str:
    if isinstance(phase, int) and 0 <= phase < len(PHASE_NAMES):
        return PHASE_NAMES[phase]
    return "-" if phase is None else str(phase)


def progress_fraction(summary: runs.RunSummary) -> float:
    """Share of the run done: of the planned optimizer steps when the trainer reports them,
    else of the planned epochs."""
    if summary.progress is not None:
        return max(0.0, min(1.0, summary.progress))
    planned = summary.epochs_planned or 0
    return min(1.0, (summary.epoch or 0) / planned) if planned else 0.0


def progress_text(summary: runs.RunSummary) -> str:
    text = f"epoch {summary.epoch or 0} of {summary.epochs_planned or '?'}"
    if summary.live and summary.epoch_steps_planned:
        text += f" · step {summary.epoch_steps_done or 0} of {summary.epoch_steps_planned} in this epoch"
    return text


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
    trained = summary.active_seconds if summary.active_seconds is not None else summary.duration
    eta = summary.eta_seconds if summary.eta_seconds is not None else (
        eta_seconds(done, planned, trained or 0.0) if summary.live else None)
    cols[4].metric("Training / left", f"{format_seconds(trained)} / {format_seconds(eta if summary.live else None)}",
                   help="time spent training (every launch of the run together) / time left, estimated from "
                        "the current step rate")
    st.progress(progress_fraction(summary), text=progress_text(summary))
    if summary.sweep:
        st.page_link(state.SWEEP_PAGE, label=f"Trial {summary.sweep.get('trial')} of sweep {summary.sweep.get('study')}",
                     query_params={"study": str(summary.sweep.get("study"))}, icon=":material/tune:")
    if summary.reason:
        (st.error if summary.status in ("failed", "crashed") else st.info)(summary.reason)
    elif summary.status == "queued":
        st.info(queued_note(summary.phase_name))
    for warning in summary.warnings:
        st.warning(warning)


ACTION_KEY = "run_action"
ACTION_LABELS = {"stop": "Stop", "resume": "Resume"}
ACTION_NOTE = "run_action_note"


def actions(runs_dir: Path, summary: runs.RunSummary) -> None:
    """Stop while the run is live, Resume when it can work (a stopped, failed or crashed run
    with checkpoints/last.pt), else a line saying why there is nothing to do.

    Stop and Resume are one button (one key): when the offer changes the button changes in
    place. Two buttons would be two widgets, and the browser keeps showing the old one beside
    the new one until the page's run ends. The click runs the action it showed (bound when
    drawn), not whatever the state offers by the time the click arrives.
    """
    has_last = RunFiles(Path(runs_dir) / summary.id).last_checkpoint.is_file()
    offered = run_actions(summary.status, has_last, trains=summary.model_kind != ENSEMBLE_KIND)
    if offered:
        action = offered[0]
        st.button(ACTION_LABELS[action], key=ACTION_KEY, type="primary" if action == "stop" else "secondary",
                  on_click=_act, args=(str(runs_dir), summary.id, action),
                  help="The trainer finishes its step and saves checkpoints/last.pt" if action == "stop"
                  else "Continue from checkpoints/last.pt with the run's saved settings")
    else:
        st.caption(_why_no_action(summary, has_last))
    if note := st.session_state.pop(ACTION_NOTE, None):
        st.error(note)


def _act(runs_dir: str, run_id: str, action: str) -> None:
    """Button callback: stop (waits until the trainer has saved and exited) or resume."""
    try:
        if action == "stop":
            launch.stop_run(runs_dir, run_id)
        else:
            queue.resume_run(runs_dir, run_id)
    except runs.RunError as exc:
        st.session_state[ACTION_NOTE] = str(exc)


def _why_no_action(summary: runs.RunSummary, has_last: bool) -> str:
    if summary.model_kind == ENSEMBLE_KIND:
        return "An ensemble trains nothing of its own: there is nothing to resume."
    if summary.status in ("completed", "early_stopped"):
        return f"The run has {summary.status.replace('_', ' ')}: nothing is left to train."
    if not has_last:
        return "No checkpoints/last.pt to resume from: start a new run from this one (Manage, below)."
    return ""


def live_charts(metrics: pl.DataFrame, key: str = "run_y_scale") -> None:
    """Every Run-page chart, with phase starts and the best epoch marked, on a chosen y scale."""
    if metrics.is_empty():
        st.info("No metrics yet: the first ones appear after the first epoch.")
        return
    ric = charts.per_epoch(metrics, ("val/rank_ic",))
    rules = {x: chart_rules(metrics, PHASE_NAMES, x) for x in ("epoch", "step")}
    cols = st.columns([3, 2])
    if not ric.is_empty():
        best = next((r["label"] for r in rules["epoch"] if r["kind"] == "best epoch"), "")
        cols[0].caption(f"val/rank_ic logged for {ric.height} epoch(s); latest {ric['value'][-1]:.4f}"
                        + (f"; {best}" if best else ""))
    scale = cols[1].radio("y axis", Y_SCALES, key=key, horizontal=True,
                          help="auto: log for the gradient norm and learning rate, linear for the rest")
    cols = st.columns(2)
    drawn = 0
    for chart in charts.RUN_CHARTS:
        frame = (charts.per_step if chart.x == "step" else charts.per_epoch)(metrics, chart.names)
        log = chart.log if scale == "auto" else scale == "log"
        with cols[drawn % 2]:
            if frame.is_empty():
                st.caption(f"{chart.title}: not logged yet")
            else:
                st.altair_chart(charts.metric_chart(frame, chart, log, rules[chart.x]))
        drawn += 1


def log_tail(runs_dir: Path, summary: runs.RunSummary, lines: int) -> None:
    with st.expander("Log tail", expanded=summary.status in ("failed", "crashed")):
        st.code(runs.log_tail(runs_dir, summary.id, lines) or "(no log yet)", language=None)


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
    """The run's checkpoint files, each with a download button (read only when clicked)."""
    found = runs.list_checkpoints(runs_dir, run_id)
    if not found:
        if (read_json(RunFiles(Path(runs_dir) / run_id).run_info) or {}).get("kind") == ENSEMBLE_KIND:
            st.caption("An ensemble has no checkpoints of its own: its members have them.")
        else:
            st.caption("No checkpoints yet: the first is saved at the end of the first epoch.")
        return
    for ckpt in found:
        cols = st.columns([2, 1, 2, 2])
        cols[0].markdown(f"`{ckpt.name}`")
        cols[1].write(f"{ckpt.size_bytes / 2**20:.2f} MB")
        cols[2].write(datetime.fromtimestamp(ckpt.modified).strftime("saved %Y-%m-%d %H:%M:%S"))
        cols[3].download_button(f"Download {ckpt.name}", partial(Path(ckpt.path).read_bytes),
                                file_name=f"{run_id}-{ckpt.name}", mime="application/octet-stream",
                                key=f"download_{ckpt.name}", on_click="ignore")


def predictions_downloads(runs_dir: Path, run_id: str) -> None:
    """predictions.parquet of a finished run, as parquet or CSV (built when clicked)."""
    path = RunFiles(Path(runs_dir) / run_id).predictions
    if not path.is_file():
        return
    cols = st.columns(2)
    cols[0].download_button("Download predictions (parquet)", partial(path.read_bytes),
                            file_name=f"{run_id}-predictions.parquet", mime="application/octet-stream",
                            key="download_predictions_parquet", on_click="ignore")
    cols[1].download_button("Download predictions (CSV)", partial(_csv_of, path),
                            file_name=f"{run_id}-predictions.csv", mime="text/csv",
                            key="download_predictions_csv", on_click="ignore")


def _csv_of(path: Path) -> str:
    return pl.read_parquet(path).write_csv()


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
                f"checkpoint (epoch {facts.get('best_epoch')}); the red dashed line is uniform selection, "
                f"1/{weights.height} = {facts['uniform']:.4f}. A weight says how much of an input is passed on, "
                "not whether it helps or in which direction.")
    top = weights.head(FEATURE_WEIGHTS_SHOWN)
    st.altair_chart(charts.feature_weight_chart(top, facts["uniform"], f"Top {top.height} of {weights.height} inputs"))
    with st.expander("All inputs"):
        st.dataframe(weights, hide_index=True)
