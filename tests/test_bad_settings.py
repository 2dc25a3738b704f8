"""The bad-input table for settings (issue 17): each bad value gets one line `error: ...` naming the
field, exit status 2 from every command line that takes settings, and nothing written.

Config-level values are refused by RunConfig itself; dataset-level ones (a horizon the dataset
lacks, dates outside it, no usable day) by the day plan (`atft_core.plan`), which the pre-flight
checklist and the trainer's command line both apply before anything is written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atft_core import system, train
from atft_core.run_files import RunFiles, RunLock, read_json, update_status
from atft_core.runs import cli

REPO = Path(__file__).resolve().parents[1]

BAD = [  # (field named in the error, settings as given on a command line)
    ("train.lr", ["--train.lr=inf"]),
    ("train.lr", ["--train.lr=nan"]),
    ("loss.huber_delta", ["--loss.huber_delta=-inf"]),
    ("runtime.heartbeat_seconds", ["--runtime.heartbeat_seconds=Infinity"]),
    ("train.lr", "json-infinity"),
    ("data.start", ["--data.start=2016-02-30"]),
    ("runtime.num_threads", ["--runtime.num_threads=100000"]),
    ("runtime.devices", ["--runtime.devices=0"]),
    ("data.horizons", ["--data.horizons=1,60"]),
    ("data.start", ["--data.start=2030-01-01"]),
    ("data.end", ["--data.end=2000-01-01"]),
    ("data.lookback", ["--data.lookback=300"]),
    ("data.min_stocks_per_day", ["--data.min_stocks_per_day=61"]),
]
"""The demo dataset has 60 stocks, 260 days (2016) and horizons 1, 5, 10, 20."""


def _settings(given, tmp_path: Path, dataset: Path) -> list[str]:
    if given == "json-infinity":   # Python's json reads Infinity; the config must still refuse it
        path = tmp_path / "bad.json"
        path.write_text('{"train": {"lr": Infinity}, "data": {"path": "%s"}}' % dataset)
        return ["--config", str(path)]
    return [f"--data.path={dataset}", "--model.hidden_size=8", *given]


COMMANDS = {
    "train": lambda tmp, args: train.main([*args, "--run-dir", str(tmp / "runs" / "r1")]),
    "runs launch": lambda tmp, args: cli.main(["--runs-dir", str(tmp / "runs"), "launch", *args]),
    "system": lambda tmp, args: system.main(["--runs-dir", str(tmp / "runs"), *args]),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("field, given", BAD, ids=[f"{f}:{g if isinstance(g, str) else g[0]}" for f, g in BAD])
def test_a_bad_setting_is_one_line_naming_the_field_exit_2_and_nothing_written(command, field, given, demo_dataset,
                                                                               tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    code = COMMANDS[command](tmp_path, _settings(given, tmp_path, demo_dataset))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and field in err[0], err
    assert "Traceback" not in err[0]
    assert list((tmp_path / "runs").iterdir()) == []


def test_the_exit_status_through_python_m(demo_dataset, tmp_path):
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "atft_core.train", f"--data.path={demo_dataset}",
                          "--data.horizons=1,60", "--run-dir", str(run_dir)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: data.horizons=[1, 60]") and "target_60d" in out.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("launched", [True, False], ids=["lock-inherited", "by-hand"])
def test_a_queued_trainer_refused_by_the_dataset_records_why(demo_dataset, tmp_path, launched):
    """The launcher made the folder (status 'queued') and hands its lock to the trainer; if the
    dataset changed since its pre-flight, the trainer's refusal is the run's failure reason, not a
    vanished process. A trainer started by hand on such a folder takes the lock itself first."""
    files = RunFiles(tmp_path / "launched")
    files.root.mkdir()
    update_status(files, state="queued", epoch=0)
    lock = RunLock(files).acquire() if launched else None
    lock_args = ["--lock-fd", str(lock.fd)] if lock else []
    try:
        assert train.main([f"--data.path={demo_dataset}", "--data.lookback=300", "--run-dir", str(files.root),
                           *lock_args]) == 2
    finally:
        if lock:
            lock.release()
    status = read_json(files.status)
    assert status["state"] == "failed" and "data.lookback=300" in status["error"]
    assert sorted(p.name for p in files.root.iterdir()) == [".trainer.lock", "status.json"]


def test_a_refused_trainer_leaves_a_folder_another_trainer_holds_alone(demo_dataset, tmp_path):
    """Without the lock (another process holds it) the refusal writes nothing into the folder."""
    files = RunFiles(tmp_path / "held")
    files.root.mkdir()
    update_status(files, state="queued", epoch=0)
    with RunLock(files).acquire():
        child = subprocess.run([sys.executable, "-m", "atft_core.train", f"--data.path={demo_dataset}",
                                "--data.lookback=300", "--run-dir", str(files.root)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert child.returncode == 2 and "data.lookback=300" in child.stderr
    assert read_json(files.status)["state"] == "queued"
