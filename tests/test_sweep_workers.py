"""Sweep workers for real: two worker processes on one study of the demo dataset, with the
single-machine SQLite file and with a private PostgreSQL server; one worker is killed with
``kill -9`` mid-trial. Every planned trial ends once, the killed worker's trial fails and is run
again once by the other worker, its run stops instead of training on, and the password of the
storage URL appears nowhere. Also: a pruned trial ends its run `pruned`.

Trials are tiny (hidden 8, lookback 5, two epochs, horizons 1 and 5) on two CPU slots.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from atft_core import runs
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import queue
from atft_core.runs.store import process_alive
from atft_core.sweep.space import parse_param
from atft_core.sweep.spec import StudySpec
from atft_core.sweep.storage import default_url
from atft_core.sweep.study import STORAGE_ENV, create_study
from atft_core.sweep.trials import read_study
from atft_core.sweep.worker import Worker
import postgres

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 420


def tiny_base(dataset: Path) -> dict:
    return {"data": {"path": str(dataset), "lookback": 5, "horizons": [1, 5]}, "model": {"hidden_size": 8, "fan_top_k": 2},
            "train": {"phase_epochs": [1, 1, 0, 0], "mode": "optimized", "early_stopping_patience": 0},
            "runtime": {"heartbeat_seconds": 0.5}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    if reason := postgres.missing_reason():
        pytest.skip(reason)
    with postgres.private_cluster() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_url(tmp_path / "runs")
    return request.getfixturevalue("cluster").url


def start_worker(runs_dir: Path, name: str, url: str, parallel: int) -> subprocess.Popen:
    # The URL goes through the environment, as the app hands it: a password never shows in `ps`.
    return subprocess.Popen([sys.executable, "-m", "atft_core.sweep", "--runs-dir", str(runs_dir), "run", name,
                             "--parallel", str(parallel)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, STORAGE_ENV: url})


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def training_trial(runs_dir: Path, name: str, url: str) -> bool:
    return any(t.state == "running" and t.run_id and runs.run_state(runs_dir, t.run_id).status == "running"
               for t in read_study(name, url).trials)


def test_two_workers_one_killed_mid_trial(demo_dataset: Path, tmp_path: Path, storage: str) -> None:
    runs_dir = tmp_path / "runs"
    queue.set_slots(runs_dir, queue.Slots(cpu=2, threads=1))
    create_study(StudySpec(name="kill", base=tiny_base(demo_dataset), space=(parse_param("train.lr=1e-4..1e-2:log"),),
                           n_trials=2, pruner="none", heartbeat_seconds=1, grace_seconds=5), storage, runs_dir)
    first = start_worker(runs_dir, "kill", storage, parallel=1)
    wait_for(lambda: training_trial(runs_dir, "kill", storage), TIMEOUT, "the first worker's trial to train")
    second = start_worker(runs_dir, "kill", storage, parallel=2)
    os.kill(first.pid, signal.SIGKILL)
    first_out = first.communicate(timeout=30)[0]
    second_out = second.communicate(timeout=TIMEOUT)[0]
    assert second.returncode == 0, second_out

    view = read_study("kill", storage)
    assert view.finished and view.slots_done == 2 and len(view.trials) == 3, second_out
    [killed] = [t for t in view.trials if t.state == "fail"]
    [retry] = [t for t in view.trials if t.retry_of == killed.number]
    assert retry.state == "complete" and retry.params == killed.params and retry.slot == killed.slot
    assert sorted(t.slot for t in view.trials if t.state == "complete") == [0, 1]   # each planned trial once
    assert f"trial {retry.number}: run" in second_out and f"trial {killed.number}: run" not in second_out

    # The killed worker's run was stopped by its queue, not left training beside the retry.
    dead = runs.run_state(runs_dir, killed.run_id)
    assert dead.status == "stopped" and "(sweep worker of kill" in dead.reason and "is gone" in dead.reason
    assert not process_alive(dead.pid)
    run_ids = [t.run_id for t in view.trials]
    assert len(set(run_ids)) == 3 and sorted(r.id for r in runs.list_runs(runs_dir)) == sorted(run_ids)
    for trial in (t for t in view.trials if t.state == "complete"):
        summary = runs.run_state(runs_dir, trial.run_id)
        info = read_json(RunFiles(runs_dir / trial.run_id).run_info)
        assert summary.status == "completed" and {"sweep-kill", f"trial-{trial.number}"} <= set(summary.tags)
        assert info["sweep"]["trial"] == trial.number and info["sweep"]["study"] == "kill"
        assert trial.value == max(v for _, v in _epochs(runs_dir, trial.run_id))
    if "postgresql" in storage:
        assert_no_password(postgres.PASSWORD, [first_out, second_out], runs_dir)


def _epochs(runs_dir: Path, run_id: str) -> list[tuple[int, float]]:
    from atft_core.sweep.objective import epoch_values

    return epoch_values(runs_dir, run_id, "val/rank_ic_1d")


def assert_no_password(password: str, outputs: list[str], folder: Path) -> None:
    from urllib.parse import quote

    forms = {password, quote(password, safe="")}
    for text in outputs:
        assert not any(f in text for f in forms)
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(f.encode() in data for f in forms), path


def test_a_pruned_trial_ends_its_run_pruned(demo_dataset: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    url = default_url(runs_dir)
    queue.set_slots(runs_dir, queue.Slots(cpu=1, threads=1))
    # Many epochs: the pruner decides after epoch 1, and the run must still be training when the
    # worker sees that epoch (with two epochs, a loaded machine could finish it first: complete).
    base = tiny_base(demo_dataset)
    base["train"]["phase_epochs"] = [1, 40, 0, 0]
    spec = create_study(StudySpec(name="prune", base=base, space=(parse_param("train.lr=1e-4..1e-2"),),
                                  n_trials=1, pruner="percentile", pruner_percentile=50.0, pruner_startup_trials=1,
                                  pruner_warmup_epochs=0), url, runs_dir)
    # An earlier trial that no real one can beat: RankIC 1.0 at every epoch.
    study = optuna.load_study(study_name="prune", storage=url)
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2)
    study.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-3}, distributions={"train.lr": lr}, value=1.0,
                                              intermediate_values={1: 1.0, 2: 1.0}))
    report = Worker("prune", url, runs_dir, poll_seconds=0.2, say=lambda _: None).run()
    [(number, outcome, run_id)] = report.trials
    assert (number, outcome) == (0, "pruned") and spec.pruner == "percentile"
    summary = runs.run_state(runs_dir, run_id)
    # Stopped soon after the decision (the worker may see epoch 1 late on a busy machine).
    assert summary.status == "pruned" and 1 <= summary.epoch < 41
    assert summary.reason.startswith("pruned by sweep prune after epoch 1: best val/rank_ic_1d so far ")
    view = read_study("prune", url)
    assert [t.state for t in view.trials] == ["pruned", "complete"] and view.trials[0].reason == summary.reason


def test_confirm_the_best_against_a_baseline(demo_dataset: Path, tmp_path: Path) -> None:
    from atft_core.sweep.confirm import confirm_best, distinct_best, format_confirmation

    runs_dir = tmp_path / "runs"
    url = default_url(runs_dir)
    queue.set_slots(runs_dir, queue.Slots(cpu=2, threads=1))
    create_study(StudySpec(name="conf", base=tiny_base(demo_dataset), space=(parse_param("train.lr=1e-4..1e-2:log"),),
                           n_trials=3), url, runs_dir)
    study = optuna.load_study(study_name="conf", storage=url)
    for lr, value in ((1e-3, 0.05), (3e-3, 0.08), (3e-3, 0.07)):   # the best setting twice (as a retry has it)
        study.add_trial(optuna.trial.create_trial(params={"train.lr": lr}, value=value, distributions={
            "train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}))
    assert [t.params for t in distinct_best(read_study("conf", url).ranked(), 2)] == [{"train.lr": 3e-3},
                                                                                      {"train.lr": 1e-3}]
    result = confirm_best("conf", url, runs_dir, top=1, seeds=2, baselines=("reversal_1d",), say=lambda _: None)
    [setting] = result.settings
    assert (setting.rank, setting.params, setting.sweep_value) == (1, {"train.lr": 3e-3}, 0.08)
    assert result.baseline["kind"] == "reversal_1d" and not result.test
    val = setting.splits["val"]
    assert len(setting.runs) == 2 and len(val.per_seed) == 2 and val.std is not None and val.days > 5
    assert val.t is not None and set(setting.splits) == {"val"}
    assert {runs.run_state(runs_dir, r).name for r in setting.runs} == {"conf best#1 seed 0", "conf best#1 seed 1"}
    text = format_confirmation(result)
    assert "best baseline: reversal_1d" in text and "TEST" not in text
    before = sorted(r.id for r in runs.list_runs(runs_dir))
    again = confirm_best("conf", url, runs_dir, top=1, seeds=2, baselines=("reversal_1d",), test=True, say=lambda _: None)
    assert sorted(r.id for r in runs.list_runs(runs_dir)) == before    # finished runs are reused
    assert "TEST" in format_confirmation(again) and again.settings[0].splits["test"].mean is not None
    assert read_study("conf", url).spec.name == "conf"
