"""Step progress and the time left of a run (atft_core.runs.progress), by hand and on a real run."""

from __future__ import annotations

import threading
import time

import pytest

from atft_core.config import RunConfig
from atft_core.runs import run_state
from atft_core.runs.progress import run_progress, time_left
from atft_core.train import run_training

NOW = 1_000_000.0


def status(**changes) -> dict:
    """A run 10 steps into the first of 2 epochs of 50 steps, 0.5 s per step, just written."""
    base = {"state": "running", "updated": NOW, "epochs_planned": 2, "epoch": 0, "steps_planned": 100,
            "step": 10, "epoch_steps_done": 10, "epoch_steps_planned": 50, "seconds_per_step": 0.5}
    return {**base, **changes}


def test_time_left_during_the_first_epoch_comes_from_the_step_rate():
    assert time_left(status(), NOW) == pytest.approx(90 * 0.5)
    progress = run_progress(status(), NOW)
    assert progress.fraction == pytest.approx(0.1) and progress.epoch_fraction == pytest.approx(0.2)


def test_it_counts_down_between_writes_and_as_steps_are_taken():
    assert time_left(status(), NOW + 10) == pytest.approx(45 - 10)
    later = status(step=40, epoch_steps_done=40, updated=NOW + 15)
    assert time_left(later, NOW + 15) == pytest.approx(60 * 0.5)
    assert time_left(status(), NOW + 1000) == 0.0       # overdue: never negative


def test_validation_passes_left_are_included_once_one_was_measured():
    # after epoch 1: one more epoch's validation plus the final evaluation
    after_first = status(epoch=1, step=50, epoch_steps_done=0, val_seconds=4.0)
    assert time_left(after_first, NOW) == pytest.approx(50 * 0.5 + 2 * 4.0)


@pytest.mark.parametrize("missing", ["step", "steps_planned", "seconds_per_step"])
def test_unknown_before_the_first_step_or_without_a_plan(missing):
    partial = status()
    del partial[missing]
    assert time_left(partial, NOW) is None
    assert run_progress(status(), NOW, live=False).eta_seconds is None   # a finished run has none


def test_a_real_run_has_a_countdown_and_a_bar_inside_its_first_epoch(demo_dataset, tmp_path):
    """Issue 19: the ETA showed '-' during the first epoch and grew with the elapsed time."""
    cfg = RunConfig().replace(**{"data.path": str(demo_dataset), "data.lookback": 5, "model.fan_top_k": 2,
                                 "model.hidden_size": 8, "model.encoder_heads": 2, "model.gat_heads": 2,
                                 "train.phase_epochs": (1, 0, 0, 0), "train.days_per_step": 1,
                                 "runtime.heartbeat_seconds": 0.05})
    seen, done = [], threading.Event()

    def watch() -> None:   # run_training keeps the main thread (signal handlers)
        while not done.is_set():
            try:
                seen.append(run_state(tmp_path, "run"))
            except Exception:  # noqa: BLE001 - the folder is not there yet
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert run_training(cfg, tmp_path / "run") == "completed"
    finally:
        done.set()
        watcher.join()
    first_epoch = [s for s in seen if s.status == "running" and s.epoch == 0 and (s.epoch_steps_done or 0) > 0]
    assert first_epoch, "no status was read during the first epoch's steps"
    assert all(s.eta_seconds is not None and 0 < s.progress <= 1 for s in first_epoch)
    assert first_epoch[-1].eta_seconds < first_epoch[0].eta_seconds   # counts down
    final = run_state(tmp_path, "run")
    assert final.eta_seconds is None and final.step == final.steps_planned and final.active_seconds > 0
