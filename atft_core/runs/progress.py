"""How far a training run is and when it will end, from its status.json (read side).

The trainer writes its plan and its step progress (`atft_core.train`): ``steps_planned``,
``step`` (optimizer steps done), ``epochs_planned``, ``epoch`` (epochs done),
``epoch_steps_done`` / ``epoch_steps_planned`` (inside the current epoch), ``seconds_per_step``
(mean over the current epoch's steps so far) and ``val_seconds`` (the last validation pass).
The time left is then

    (steps_planned - step) x seconds_per_step          the steps still to take
    + (epochs_planned - epoch + 1) x val_seconds       a validation per epoch left + the final evaluation
    - (now - updated)                                  counted down between two status writes

so it counts down as steps are taken (an estimate from elapsed time per finished epoch grows
with the elapsed time and has nothing to say during the first epoch). The rate is the current
epoch's: when a phase with the graph attention starts, the estimate follows its slower steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunProgress:
    """Step progress of a run and the estimated time left (None where not known yet)."""

    step: int | None = None
    steps_planned: int | None = None
    epoch_steps_done: int | None = None
    epoch_steps_planned: int | None = None
    fraction: float | None = None
    """Share of the planned optimizer steps taken."""
    epoch_fraction: float | None = None
    """Share of the current epoch's steps taken (a progress bar inside the epoch)."""
    eta_seconds: float | None = None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _share(done: int | None, planned: int | None) -> float | None:
    return min(1.0, done / planned) if done is not None and planned else None


def time_left(status: dict[str, Any], now: float) -> float | None:
    """Seconds until the run ends, from the step rate (see the module doc); None before the
    first step of this launch or without a plan."""
    step, planned = _int(status.get("step")), _int(status.get("steps_planned"))
    per_step = _float(status.get("seconds_per_step"))
    if step is None or not planned or per_step is None:
        return None
    epochs_left = max(0, (_int(status.get("epochs_planned")) or 0) - (_int(status.get("epoch")) or 0))
    validation = (_float(status.get("val_seconds")) or 0.0) * (epochs_left + 1)
    at_update = max(0, planned - step) * per_step + validation
    since = max(0.0, now - (_float(status.get("updated")) or now))
    return max(0.0, at_update - since)


def run_progress(status: dict[str, Any], now: float, live: bool = True) -> RunProgress:
    """The step progress in `status` and, for a `live` run, the estimated time left."""
    step, planned = _int(status.get("step")), _int(status.get("steps_planned"))
    in_epoch, epoch_planned = _int(status.get("epoch_steps_done")), _int(status.get("epoch_steps_planned"))
    return RunProgress(step=step, steps_planned=planned, epoch_steps_done=in_epoch,
                       epoch_steps_planned=epoch_planned, fraction=_share(step, planned),
                       epoch_fraction=_share(in_epoch, epoch_planned),
                       eta_seconds=time_left(status, now) if live else None)
