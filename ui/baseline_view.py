"""The Run page of a run that trains nothing epoch by epoch: a baseline (one closed-form fit or
a signed factor) or an ensemble (combined predictions of other runs). No training charts, no
Resume: what it is, its status, its evaluation with the same costs and breakdowns as a deep
run, its config."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from atft_core import runs

from . import evaluation_view, live, run_view
from .logic import DEEP_KIND, format_seconds


def evaluation_only(summary: runs.RunSummary) -> bool:
    """Whether a run gets this page: a baseline kind or an ensemble (an unknown kind does not)."""
    return summary.model_kind not in ("", DEEP_KIND)


def _kind_text(summary: runs.RunSummary) -> str:
    if summary.model_kind == runs.ENSEMBLE_KIND:
        return "An ensemble: per date, the mean of its members' z-scored predictions; nothing trained of its own."
    return (f"A baseline (`{summary.model_kind}`): fitted in one pass on the training days, then scored like "
            "the deep model; nothing to follow epoch by epoch.")


def _status(summary: runs.RunSummary) -> None:
    cols = st.columns(3)   # the RankIC is in the evaluation below, with its interval
    cols[0].metric("Status", summary.status)
    cols[1].metric("Kind", summary.model_kind)
    cols[2].metric("Duration", format_seconds(summary.duration))
    if summary.reason:
        (st.error if summary.status in ("failed", "crashed") else st.info)(summary.reason)
    for warning in summary.warnings:
        st.warning(warning)


def fitted(runs_dir: Path, run_id: str) -> None:
    """What a baseline fitted: its factor and sign, or the ridge's largest weights."""
    try:
        found = live.fitted_baseline(runs_dir, run_id)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        st.caption(f"What the baseline fitted could not be read from best.pt: {exc}")
        return
    if not found:
        return
    if "feature" in found:
        sign = "-" if found["sign"] < 0 else ""
        flipped = " (flipped: the conventional orientation ranked backwards on the training days)" \
            if found.get("flipped_on_train") else ""
        train = found.get("train_rank_ic")
        st.markdown(f"**Score** = `{sign}{found['feature']}`{flipped}; mean daily RankIC on the "
                    f"{found.get('train_days')} training days {'-' if train is None else f'{train:.4f}'}.")
    else:
        st.markdown(f"**Ridge** on {found.get('n_features')} features (alpha {found.get('alpha')}, targets "
                    f"{found.get('target_normalization')}); largest weights, first horizon:")
        st.dataframe([{"feature": k, "weight": v} for k, v in (found.get("top_weights_first_horizon") or {}).items()],
                     hide_index=True)


def page(runs_dir: Path, run_id: str, window: int, refresh_seconds: float, log_lines: int,
         stop: Callable[[], None] | None = None) -> None:
    """The whole page below the run selector. ``stop``: the page's Stop action (write side)."""
    first = runs.run_state(runs_dir, run_id)
    st.caption(_kind_text(first))

    @st.fragment(run_every=refresh_seconds if first.live else None)
    def status_part() -> None:
        summary = runs.run_state(runs_dir, run_id)
        if summary.live != first.live:  # finished: redraw once, with the evaluation
            st.rerun()
        _status(summary)
        if summary.live and stop is not None and st.button("Stop", key="stop"):
            stop()
            st.rerun()
        if summary.live or summary.status in ("failed", "crashed"):
            with st.expander("Log tail", expanded=not summary.live):
                st.code(runs.log_tail(runs_dir, run_id, log_lines) or "(no log yet)", language=None)

    status_part()
    if not first.live:
        if first.model_kind != runs.ENSEMBLE_KIND:
            fitted(runs_dir, run_id)
        st.subheader("Evaluation")
        evaluation_view.evaluation(runs_dir, run_id, window)
    st.subheader("Config as run")
    run_view.config_section(runs_dir, run_id)
    st.subheader("Checkpoints")
    run_view.checkpoints(runs_dir, run_id)
