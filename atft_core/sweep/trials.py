"""Read side of the sweeps: a study's spec, its trials (state, settings, value, run) and progress.

    list_studies(url) -> [StudyBrief]           # every study in a storage
    study_names(url) -> [name]                  # the same, names only (nothing read of the trials)
    read_study(name, url) -> StudyView          # spec + one TrialRow per trial + counts
    importances(name, url) -> {field: share}    # Optuna's default importance evaluator (PED-ANOVA)

Nothing here launches, stops or changes anything (`atft_core.sweep.study` and `.worker` do); the
app's Sweep page watches studies through this module.

Planned trials and retries: a study is created with all its trials waiting (`spec.n_trials` of
them), so workers only ever take trials that exist and the count cannot overshoot. A trial whose
worker died is failed and a copy of it (same settings) queued; a trial's *slot* is the number of
the planned trial it stands for (`TrialRow.slot`), and a slot is done when its newest trial has
ended without a copy after it. The study is finished when every slot is done.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atft_core.sweep.spec import SPEC_ATTR, StudySpec
from atft_core.run_files import read_json
from atft_core.runs.store import process_alive
from atft_core.sweep.storage import SWEEP_DIR, SweepError, open_storage, shown_url, storage_exists

if TYPE_CHECKING:  # pragma: no cover
    import optuna

STOP_ATTR = "atft_stop"
"""The study's user attribute set by `stop` (when and why); workers take no trial while it is set."""
RUN_ATTR, ERROR_ATTR, HOST_ATTR = "run_id", "error", "host"
"""Trial user attributes: its run folder's id, why it failed or was pruned, the worker's machine."""
ORIGIN_ATTR = "atft_slot"
"""Trial system attribute of a copy queued again after a stop: the planned trial it stands for
(Optuna's retry callback copies it into its own copies)."""
MIN_TRIALS_FOR_IMPORTANCE = 4
"""Finished trials needed before parameter importances mean anything."""
TRIAL_STATES = ("waiting", "running", "complete", "pruned", "fail")


@dataclass
class TrialRow:
    """One Optuna trial as the CLI and the Sweep page show it."""

    number: int
    state: str
    """waiting, running, complete, pruned or fail."""
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    run_id: str | None = None
    slot: int = 0
    """The planned trial this one stands for (itself unless it is a retry)."""
    retry_of: int | None = None
    """The trial this one runs again (a worker died, or the study was stopped)."""
    reason: str = ""
    host: str = ""
    started: float | None = None
    ended: float | None = None
    epochs_reported: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudyView:
    """A study and its trials, read at one moment."""

    name: str
    spec: StudySpec
    storage: str
    """The storage URL as it may be shown (password hidden)."""
    trials: list[TrialRow]
    stop_requested: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in TRIAL_STATES}
        for t in self.trials:
            out[t.state] += 1
        return out

    @property
    def slots_done(self) -> int:
        """Planned trials that have ended for good (complete, pruned or failed without a retry)."""
        latest: dict[int, TrialRow] = {}
        for t in self.trials:
            if t.slot not in latest or t.number > latest[t.slot].number:
                latest[t.slot] = t
        return sum(1 for t in latest.values() if t.state in ("complete", "pruned", "fail"))

    @property
    def finished(self) -> bool:
        return self.slots_done >= self.spec.n_trials and not any(t.state in ("waiting", "running") for t in self.trials)

    @property
    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        if not done:
            return None
        sign = 1 if self.spec.direction == "maximize" else -1
        return max(done, key=lambda t: (sign * t.value, -t.number))

    def ranked(self) -> list[TrialRow]:
        """Complete trials, best first (ties: earlier trial first)."""
        sign = 1 if self.spec.direction == "maximize" else -1
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        return sorted(done, key=lambda t: (-sign * t.value, t.number))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "storage": self.storage, "spec": self.spec.to_dict(), "counts": self.counts,
                "planned": self.spec.n_trials, "done": self.slots_done, "finished": self.finished,
                "stop_requested": self.stop_requested, "best": self.best.to_dict() if self.best else None,
                "trials": [t.to_dict() for t in self.trials]}


@dataclass
class StudyBrief:
    """One line of `list`."""

    name: str
    planned: int
    done: int
    running: int
    best_value: float | None
    metric: str
    stopped: bool


def load(name: str, url: str, spec: StudySpec | None = None) -> "optuna.Study":
    """The Optuna study `name` (SweepError naming it and the storage when there is none)."""
    import optuna

    if not storage_exists(url):
        raise SweepError(f"no study {name!r}: the storage {shown_url(url)} does not exist yet")
    storage = open_storage(url, spec)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = ", ".join(s.study_name for s in storage.get_all_studies())
        raise SweepError(f"no study {name!r} in {shown_url(url)} (studies: {known or 'none'})") from None


def spec_of(study: "optuna.Study") -> StudySpec:
    values = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(values, dict):
        raise SweepError(f"study {study.study_name!r} was not made by `python -m atft_core.sweep create` (no spec)")
    return StudySpec.from_dict(values)


def read_study(name: str, url: str) -> StudyView:
    """The study's spec and trials now."""
    study = load(name, url)
    spec = spec_of(study)
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    previous: dict[int, int] = {}
    for row in rows:   # in trial order: a slot's earlier trial is what a later one runs again
        row.retry_of = previous.get(row.slot)
        previous[row.slot] = row.number
    return StudyView(name, spec, shown_url(url), rows, study.user_attrs.get(STOP_ATTR) or None)


def trial_row(trial: "optuna.trial.FrozenTrial") -> TrialRow:
    """A FrozenTrial as a row: field values as the config reads them, times as Unix seconds."""
    attrs, system = trial.user_attrs, trial.system_attrs
    return TrialRow(
        number=trial.number, state=trial.state.name.lower(), params=dict(trial.params),
        value=trial.value if trial.state.name == "COMPLETE" else None, run_id=attrs.get(RUN_ATTR),
        slot=slot_of(trial), reason=str(attrs.get(ERROR_ATTR) or ""),
        host=str(attrs.get(HOST_ATTR) or ""), started=_seconds(trial.datetime_start),
        ended=_seconds(trial.datetime_complete), epochs_reported=len(trial.intermediate_values))


def slot_of(trial: "optuna.trial.FrozenTrial") -> int:
    """The planned trial `trial` stands for: its own number, or the first of the trials it retries
    (Optuna's retry callback records it as ``failed_trial``; a copy queued after a stop as ORIGIN_ATTR)."""
    system = trial.system_attrs
    return int(system.get(ORIGIN_ATTR, system.get("failed_trial", trial.number)))


def _seconds(when: dt.datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def study_names(url: str) -> list[str]:
    """The names of the studies made by this module in the storage (none when a SQLite file does
    not exist yet), without reading their trials."""
    if not storage_exists(url):
        return []
    # get_all_studies, not optuna.get_all_study_summaries: the summaries read every trial of every study.
    return [s.study_name for s in open_storage(url).get_all_studies() if SPEC_ATTR in s.user_attrs]


def list_studies(url: str) -> list[StudyBrief]:
    """Every study in the storage made by this module (none when a SQLite file does not exist yet)."""
    out = []
    for name in study_names(url):
        view = read_study(name, url)
        best = view.best
        out.append(StudyBrief(view.name, view.spec.n_trials, view.slots_done, view.counts["running"],
                              best.value if best else None, view.spec.metric, view.stop_requested is not None))
    return out


def importances(name: str, url: str) -> dict[str, float] | None:
    """Each searched field's importance for the value among the complete trials, as shares that sum
    to 1 (`optuna.importance.get_param_importances` with Optuna's default evaluator, PED-ANOVA: how
    differently a field is distributed among the best trials than among all); None with fewer than
    MIN_TRIALS_FOR_IMPORTANCE complete trials or nothing that varies."""
    import optuna

    study = load(name, url)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    # The evaluator reads the trials several times: read once, evaluate a copy in memory.
    in_memory = optuna.create_study(directions=study.directions)
    in_memory.add_trials(done)
    try:
        found = optuna.importance.get_param_importances(in_memory)
    except (RuntimeError, ValueError):   # e.g. every trial has the same settings
        return None
    return {k: float(v) for k, v in found.items()} or None


def workers_dir(runs_dir: Path | str) -> Path:
    """Where workers on this machine record themselves (one JSON file each, removed at exit)."""
    return Path(runs_dir) / SWEEP_DIR / "workers"


def live_workers(runs_dir: Path | str, study: str | None = None) -> list[dict[str, Any]]:
    """This machine's live workers (of `study`, if given): pid, host, study, parallel, started.
    (Workers on other machines sharing the runs folder cannot be checked from here.)"""
    folder, host = workers_dir(runs_dir), socket.gethostname()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read_json(path) or {}
        if record.get("host") != host or (study is not None and record.get("study") != study):
            continue
        if process_alive(record.get("pid"), record.get("proc_start_time")):
            found.append(record)
    return found
