"""Sections of the Sweep page: where studies live, defining one (the searched fields, each with a
range or a list, over the base config of the New run form), launching it with a worker, and
watching it live (progress, trials table with run links, optimisation history, parallel
coordinates, parameter importances, the best K on the Compare page)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from atft_core.config import MODEL_KINDS, SECTIONS, ConfigError, RunConfig, field_docs, field_types
from atft_core.sweep import trials as sweep_trials
from atft_core.sweep.space import Param, parse_param
from atft_core.sweep.spec import DEFAULT_METRIC, METRIC_KEYS, PRUNERS, StudySpec
from atft_core.sweep.storage import SweepError, default_url, shown_url

from . import sweep_charts
from .form import CHOICES

STUDY_KEY = "sweep_study"
STORAGE_KEY = "sweep_storage"
COMPARE_PAGE = "app_pages/compare.py"
COMPARE_QUERY = "runs"
"""The Compare page's query parameter: comma-separated run ids to choose first."""
DEFAULT_COMPARED, MAX_COMPARED = 3, 20
"""'Compare the best K': K at first, and at most."""


def storage_url(runs_dir: Path) -> str:
    """The storage the page works with: this machine's SQLite file, or a PostgreSQL URL typed in
    (masked, kept for this session only; it may hold a password)."""
    with st.expander("Study storage: " + ("PostgreSQL" if st.session_state.get(STORAGE_KEY, "").strip()
                                          else "this runs folder's file")):
        typed = st.text_input("A PostgreSQL URL shared by several machines (empty: the file in this runs folder)",
                              key=STORAGE_KEY, type="password",
                              help="postgresql://user@host:port/database; the password is best left to PGPASSWORD "
                                   "or ~/.pgpass. Run folders must then be on a filesystem the machines share.")
        url = typed.strip() or default_url(runs_dir)
        st.caption(f"Studies in {shown_url(url) if typed.strip() else url}")
    return url


def field_names() -> list[str]:
    """Every RunConfig field, as the New run form lists them."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def suggested_values(name: str, value: Any) -> str:
    """A first range or list for a field, from its value in the base config (the user edits it)."""
    hint = field_types(SECTIONS[name.split(".")[0]])[name.split(".")[1]]
    if name == "model.kind":
        return "|".join(MODEL_KINDS)
    if name in CHOICES:
        return "|".join(CHOICES[name])
    if hint is bool:
        return "true|false"
    if hint is float:
        return f"{value / 10:g}..{value * 10:g}:log" if value > 0 else "0..0.1"
    if hint is int:
        if value >= 2:
            return f"{value // 2}..{value * 2}:step={value // 2}"
        return f"{value}..{value + 4}"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def space_editor(base: RunConfig) -> tuple[list[Param], dict[str, str]]:
    """Pick fields and give each a range (low..high, :log, :step=N) or a list (a|b|c); returns the
    parameters that parse and {field: problem} for those that do not."""
    docs = {f"{s}.{n}": d for s, cls in SECTIONS.items() for n, d in field_docs(cls).items()}
    picked = st.multiselect("Fields to search", field_names(), key="sweep_fields",
                            help="Any RunConfig field; the others keep the base config's value.")
    params, problems = [], {}
    for name in picked:
        section, key = name.split(".")
        default = suggested_values(name, getattr(getattr(base, section), key))
        text = st.text_input(f"{name}: range low..high (options :log, :step=N) or list a|b|c", value=default,
                             key=f"sweep_space.{name}", help=docs.get(name))
        try:
            params.append(parse_param(f"{name}={text}"))
        except ConfigError as exc:
            problems[name] = str(exc)
            st.error(str(exc))
    return params, problems


def study_settings(cpu_slots: int) -> dict[str, Any]:
    """Name, size, objective, pruner and the queue's CPU slots."""
    defaults = {f.name: f.default for f in dataclasses.fields(StudySpec) if f.default is not dataclasses.MISSING}
    cols = st.columns(4)
    values = {
        "name": cols[0].text_input("Study name", key="sweep_name", placeholder="e.g. lr-hidden"),
        "n_trials": int(cols[1].number_input("Trials", 1, 2000, int(defaults["n_trials"]), key="sweep_trials")),
        "parallel": int(cols[2].number_input("Trials at once", 1, 64, int(defaults["parallel"]), key="sweep_parallel")),
        "slots": int(cols[3].number_input("CPU slots of this machine's queue", 1, 64, cpu_slots, key="sweep_slots",
                                          help="How many runs train at once here (python -m atft_core.runs queue "
                                               "slots)")),
    }
    cols = st.columns(4)
    metrics = [DEFAULT_METRIC, *(f"val/{k}" for k in METRIC_KEYS), *(f"val/{k}_{h}d" for k in METRIC_KEYS for h in
                                                                      (5, 10, 20)), "val/loss"]
    values["metric"] = cols[0].selectbox("Objective (best epoch of)", list(dict.fromkeys(metrics)), key="sweep_metric",
                                         help="Validation only: the test split never chooses anything.")
    values["direction"] = cols[1].selectbox("Direction", ["maximize", "minimize"], key="sweep_direction")
    values["pruner"] = cols[2].selectbox("Pruner", list(PRUNERS), key="sweep_pruner",
                                         help="median: stop a trial whose best value so far is below the median of "
                                              "the finished trials at the same epoch")
    values["pruner_startup_trials"] = int(cols[3].number_input(
        "Finished trials before pruning", 0, 2000, int(defaults["pruner_startup_trials"]), key="sweep_startup"))
    return values


def make_spec(settings: dict[str, Any], base: dict[str, Any], params: list[Param], force: bool) -> StudySpec:
    """The StudySpec of the form (ConfigError naming what is wrong)."""
    values = {k: v for k, v in settings.items() if k != "slots"}
    return StudySpec(base=base, space=tuple(params), force=force, **values)


def progress(view: sweep_trials.StudyView, workers: list[dict[str, Any]]) -> None:
    """How far the study is, who works on it here, its best trial."""
    counts, spec = view.counts, view.spec
    cols = st.columns(5)
    cols[0].metric("Done", f"{view.slots_done} / {spec.n_trials}")
    cols[1].metric("Running", counts["running"])
    cols[2].metric("Waiting", counts["waiting"])
    cols[3].metric("Pruned / failed", f"{counts['pruned']} / {counts['fail']}")
    best = view.best
    cols[4].metric(f"Best {spec.metric}", "-" if best is None else f"{best.value:.5f}",
                   help=None if best is None else f"trial {best.number}, run {best.run_id}")
    st.progress(min(1.0, view.slots_done / spec.n_trials), text=f"{view.slots_done} of {spec.n_trials} trials done")
    where = ", ".join(f"pid {w['pid']} ({w.get('parallel')} at once)" for w in workers)
    if view.stop_requested:
        st.warning(f"Stopped: {view.stop_requested.get('reason')}. Start a worker to resume it.")
    elif view.finished:
        st.success(f"Finished: every one of the {spec.n_trials} trials has ended.")
    st.caption(f"Workers on this machine: {where or 'none'} · objective: best epoch of {spec.metric} "
               f"({spec.direction}) · pruner: {spec.pruner} · searched: "
               + ", ".join(p.describe() for p in spec.space))


def trials_table(view: sweep_trials.StudyView) -> None:
    frame = sweep_charts.trials_table(view)
    st.dataframe(frame, hide_index=True, column_config={
        "run": st.column_config.LinkColumn("run", display_text=r"run\?run=(.*)"),
        "value": st.column_config.NumberColumn(view.spec.metric, format="%.5f"),
    })


def charts(view: sweep_trials.StudyView, importances: dict[str, float] | None) -> None:
    """Optimisation history and parallel coordinates side by side; importances below."""
    history = sweep_charts.history_frame(view)
    if history.is_empty():
        st.caption("The charts appear with the first complete trial.")
        return
    cols = st.columns(2)
    cols[0].altair_chart(sweep_charts.history_chart(history, view.spec.metric))
    cols[1].altair_chart(sweep_charts.parallel_chart(sweep_charts.parallel_frame(view), view.spec.metric))
    if importances:
        st.altair_chart(sweep_charts.importance_chart(importances))
    else:
        st.caption(f"Parameter importances appear once {sweep_trials.MIN_TRIALS_FOR_IMPORTANCE} trials are complete "
                   "and their settings differ.")


def compare_best(view: sweep_trials.StudyView) -> None:
    """'Compare the best K': the Compare page with the K best trials' runs chosen."""
    ranked = [t for t in view.ranked() if t.run_id]
    if not ranked:
        return
    # A fixed range: a widget whose bounds follow the trial count would forget the K chosen.
    k = int(st.number_input("Best K", 1, MAX_COMPARED, DEFAULT_COMPARED, key="sweep_best_k"))
    ids = [t.run_id for t in ranked[:k]]
    st.page_link(COMPARE_PAGE, label=f"Compare the best {len(ids)}", query_params={COMPARE_QUERY: ",".join(ids)},
                 icon=":material/compare_arrows:")


def read(name: str, url: str) -> tuple[sweep_trials.StudyView | None, str | None]:
    """(the study now, None) or (None, why it cannot be read)."""
    try:
        return sweep_trials.read_study(name, url), None
    except (SweepError, ConfigError) as exc:
        return None, str(exc)
