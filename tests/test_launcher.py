"""Launching, stopping, resuming and deleting runs.

The first part uses small real processes registered as runs; the second part launches the
real trainer (`python -m atft_core.train`) on the tiny demo dataset, through the real queue and
its dispatcher process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import torch

from atft_core import runs
from atft_core.config import ConfigError, RunConfig
from atft_core.run_files import RunFiles, read_json, update_status, write_json_atomic
from atft_core.runs import cli, launch, queue
from atft_core.runs import seeds as seeds_mod
from atft_core.runs.jobs import dispatcher_info, ended_jobs, list_jobs, queue_paths
from atft_core.runs.store import process_start_time

REPO = Path(__file__).resolve().parents[1]

# A stand-in trainer: heartbeats as running; with "polite" it ends as "stopped" on SIGTERM.
FAKE = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from atft_core.run_files import RunFiles, update_status
    files = RunFiles(Path(sys.argv[1]))
    mode = sys.argv[2]
    def on_term(*_):
        if mode == "polite":
            update_status(files, state="stopped", ended=time.time())
            sys.exit(0)
    signal.signal(signal.SIGTERM, on_term if mode != "default" else signal.SIG_DFL)
    update_status(files, state="running")
    while True:
        time.sleep(0.05)
""")


def start_fake(runs_dir: Path, run_id: str, mode: str) -> subprocess.Popen:
    files = RunFiles(runs_dir / run_id)
    files.checkpoints.mkdir(parents=True)
    update_status(files, state="queued")
    proc = subprocess.Popen([sys.executable, "-c", FAKE, str(files.root), mode], cwd=REPO, start_new_session=True)
    write_json_atomic(files.run_info, {"id": run_id, "created": time.time(), "pid": proc.pid,
                                       "proc_start_time": process_start_time(proc.pid)})
    deadline = time.time() + 20
    while (read_json(files.status) or {}).get("state") != "running":
        assert time.time() < deadline and proc.poll() is None, "fake trainer did not start"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("mode, error", [("polite", None), ("default", "without a final status"),
                                         ("stubborn", "killed")])
def test_stop_terminates_then_kills(tmp_path: Path, mode: str, error: str | None) -> None:
    proc = start_fake(tmp_path, "r1", mode)
    try:
        assert runs.run_state(tmp_path, "r1").status == "running"
        with pytest.raises(runs.RunError, match="stop it before"):
            launch.delete_run(tmp_path, "r1")
        with pytest.raises(runs.RunError, match="stop it before"):
            queue.resume_run(tmp_path, "r1")
        assert launch.stop_run(tmp_path, "r1", grace_seconds=1.0) == "stopped"
        proc.wait(timeout=10)
        status = read_json(RunFiles(tmp_path / "r1").status)
        assert status["state"] == "stopped" and (error is None) == (not status.get("error"))
        if error:
            assert error in status["error"]
        assert launch.stop_run(tmp_path, "r1") == "stopped"  # already stopped: no-op
    finally:
        proc.kill()
        proc.wait()


def test_delete_and_resume_rules(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "r1")
    files.checkpoints.mkdir(parents=True)
    update_status(files, state="failed", error="x")
    with pytest.raises(runs.RunError, match="no checkpoints/last.pt"):
        queue.resume_run(tmp_path, "r1")
    assert launch.tag_run(tmp_path, "r1", "keep") == ["keep"]
    assert launch.tag_run(tmp_path, "r1", "keep", remove=True) == []
    assert launch.rename_run(tmp_path, "r1", " better\x07 name ") == "better name"   # control characters go
    assert cli.main(["--runs-dir", str(tmp_path), "rename", "r1", "cli name"]) == 0
    assert runs.run_state(tmp_path, "r1").name == "cli name" and (tmp_path / "r1").is_dir()  # the id stays
    launch.delete_run(tmp_path, "r1")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(runs.RunError, match="no run"):
        launch.delete_run(tmp_path, "r1")


def test_invalid_config_or_failed_preflight_leaves_nothing(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    with pytest.raises(ConfigError, match="hidden_size"):
        cli.launch_from_cli(runs_dir, None, ["--model.hidden_size=-1"])
    with pytest.raises(ConfigError, match="unknown setting"):
        cli.launch_from_cli(runs_dir, None, ["--model.hiden=3"])
    with pytest.raises(launch.LaunchError, match="dataset") as info:
        queue.launch_run(RunConfig.from_dict({"data": {"path": str(tmp_path / "missing.parquet")}}), runs_dir)
    assert any(i.verdict == "fail" for i in info.value.items)
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []
    out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(runs_dir), "launch",
                          "--data.path", str(tmp_path / "missing.parquet")], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "pre-flight check failed" in out.stderr and out.stdout == ""
    assert not runs_dir.exists(), "a refused launch wrote something"


def test_a_launch_that_fails_while_writing_leaves_no_folder(dataset: Path, tmp_path: Path) -> None:
    """The requested config is the user's raw dict: a value JSON cannot hold (Infinity from a JSON
    file) used to crash the write of run.json and leave a folder holding only its temp file."""
    runs_dir = tmp_path / "runs"
    with pytest.raises(launch.LaunchError, match="could not create the run folder"):
        queue.launch_run(tiny(dataset, "1,0,0,0"), runs_dir, force=True, requested={"train": {"lr": float("inf")}})
    assert list(runs_dir.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# With the real trainer


@pytest.fixture
def dataset(demo_dataset: Path) -> Path:
    """The shared demo dataset (conftest)."""
    return demo_dataset


def tiny(dataset: Path, epochs: str = "1,1,1,0") -> RunConfig:
    return RunConfig.from_dict({"data": {"path": str(dataset), "lookback": 5},
                                "model": {"hidden_size": 8, "fan_top_k": 2},
                                "train": {"phase_epochs": epochs, "early_stopping_patience": 0},
                                "runtime": {"heartbeat_seconds": 0.5}})


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def started(runs_dir: Path, run_id: str) -> int:
    """The pid of the run's trainer, once the queue has started it."""
    info = RunFiles(runs_dir / run_id).run_info
    wait_for(lambda: (read_json(info) or {}).get("pid"), 60, f"{run_id} to start")
    return read_json(info)["pid"]


def final(runs_dir: Path, run_id: str, timeout: float = 120) -> runs.RunSummary:
    return queue.wait_for_runs(runs_dir, [run_id], timeout=timeout, poll_seconds=0.1)[0]


def test_two_trainings_side_by_side_with_a_polling_reader(dataset: Path, tmp_path: Path) -> None:
    queue.set_slots(tmp_path, queue.Slots(cpu=2, threads=1))
    ids = [queue.launch_run(tiny(dataset, "1,1,0,0"), tmp_path, name=f"pair {i}", tags=["pair"], force=True)
           for i in range(2)]
    pids = [started(tmp_path, run_id) for run_id in ids]
    info = read_json(tmp_path / ids[0] / "run.json")
    assert info["proc_start_time"] and info["tags"] == ["pair"]
    assert all(psutil.Process(pid).environ().get("MALLOC_MMAP_THRESHOLD_") == "1000000000" for pid in pids)
    errors, polls = [], 0
    while any(runs.run_state(tmp_path, rid).live for rid in ids) or polls < 2:
        try:
            listed = {r.id: r for r in runs.list_runs(tmp_path)}
            assert set(listed) == set(ids) and all(r.status != "crashed" for r in listed.values())
            runs.query_metrics(tmp_path, ids)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))
        polls += 1
        assert polls < 600, "trainings did not finish"
        time.sleep(0.2)
    assert errors == []
    frame = runs.query_metrics(tmp_path, ids)
    for rid in ids:
        s = runs.run_state(tmp_path, rid)
        assert s.status == "completed", runs.log_tail(tmp_path, rid)
        assert s.best_rank_ic is not None and s.best_epoch is not None and s.hidden_size == 8
        effective = read_json(RunFiles(tmp_path / rid).config)["config"]
        assert effective["runtime"]["num_threads"] == 1          # the slot's threads
        lines = [json.loads(x) for x in (tmp_path / rid / "metrics.jsonl").read_text().splitlines()]
        got = frame.filter(pl.col("run_id") == rid).select("epoch", "step", "phase", "name", "value").rows()
        assert sorted(got, key=repr) == sorted(((r["epoch"], r["step"], r["phase"], r["name"], r["value"])
                                                for r in lines), key=repr)
    first, second = (read_json(RunFiles(tmp_path / i).status) for i in ids)
    assert second["started"] < first["ended"], "two slots, yet the runs trained one after another"


def test_kill_9_then_resume(dataset: Path, tmp_path: Path) -> None:
    run_id = queue.launch_run(tiny(dataset, "2,1,0,0"), tmp_path, force=True)
    files = RunFiles(tmp_path / run_id)
    pid = started(tmp_path, run_id)
    wait_for(lambda: files.last_checkpoint.exists() or not runs.run_state(tmp_path, run_id).live, 60, "last.pt")
    assert runs.run_state(tmp_path, run_id).live, "the run finished before it could be killed"
    os.kill(pid, signal.SIGKILL)
    t = time.time()
    wait_for(lambda: runs.run_state(tmp_path, run_id).status == "crashed", 10, "crashed")
    assert time.time() - t < 10
    assert runs.log_tail(tmp_path, run_id, lines=20)
    queue.resume_run(tmp_path, run_id)
    s = final(tmp_path, run_id)
    assert s.status == "completed", runs.log_tail(tmp_path, run_id)
    val = runs.query_metrics(tmp_path, [run_id], names=["val/rank_ic"])
    assert val.height == 3 and val["epoch"].n_unique() == val.height, "duplicated or missing epochs after resume"
    assert len(read_json(files.run_info)["launches"]) == 2


def test_stop_keeps_the_last_finished_epoch_checkpoint(dataset: Path, tmp_path: Path) -> None:
    """Stop mid-epoch: last.pt stays the end of the last finished epoch (a resume repeats the
    stopped epoch whole, issue 17.8), and the trainer ends politely, not killed."""
    run_id = queue.launch_run(tiny(dataset, "3,3,3,0"), tmp_path, force=True)
    files = RunFiles(tmp_path / run_id)
    wait_for(lambda: (read_json(files.status) or {}).get("epoch", 0) >= 1, 60, "the first epoch")
    # A fresh reader process sees the same run, still running.
    out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path), "list", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert [(r["id"], r["status"]) for r in json.loads(out.stdout)] == [(run_id, "running")]
    assert launch.stop_run(tmp_path, run_id, grace_seconds=60) == "stopped"
    status = read_json(files.status)
    assert not status.get("error"), "the trainer was killed instead of stopping"
    state = torch.load(files.last_checkpoint, weights_only=True)
    assert isinstance(state, dict) and "config" in state
    assert state["progress"]["epoch"] == status["epoch"] and state["progress"]["step"] == status["step"]


def ensemble_job(runs_dir: Path):
    return next(j for j in [*ended_jobs(runs_dir), *list_jobs(runs_dir)] if j.kind == "ensemble")


def test_seed_group_queues_its_runs_then_combines_them_and_outlives_its_dispatcher(dataset: Path, tmp_path: Path) -> None:
    ids = seeds_mod.launch_seeds(tiny(dataset, "1,1,0,0"), tmp_path, seeds=2, name="grp", tags=["mine"], force=True)
    started(tmp_path, ids[0])
    # One slot: the second seed waits for it, and says so.
    wait_for(lambda: runs.run_state(tmp_path, ids[1]).phase_name.startswith("waiting for a slot"), 10, "the reason")
    assert runs.run_state(tmp_path, ids[1]).status == "queued"
    # A killed dispatcher: the training run goes on, the queued one says why it waits, and the
    # next dispatcher (here: wait_for_runs starts it) takes the queue over.
    record = read_json(queue_paths(tmp_path).dispatcher)
    os.kill(record["pid"], signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(record["pid"]) or psutil.Process(record["pid"]).status() == "zombie", 10,
             "the dispatcher to die")
    assert "dispatcher is not running" in runs.run_state(tmp_path, ids[1]).phase_name
    assert runs.run_state(tmp_path, ids[0]).live
    assert queue.keep_dispatching(tmp_path)          # as the app does on every page
    wait_for(lambda: dispatcher_info(tmp_path, runs.process_alive).alive, 30, "the new dispatcher")
    second = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path), "queue", "serve"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "another dispatcher serves" in second.stdout   # never two on one queue
    states = [final(tmp_path, run_id) for run_id in ids]
    assert [s.status for s in states] == ["completed", "completed"], runs.log_tail(tmp_path, ids[1])
    first, later = (read_json(RunFiles(tmp_path / i).status) for i in ids)
    assert later["started"] >= first["ended"], "the second seed trained while the first was training"
    assert [read_json(RunFiles(tmp_path / i).config)["config"]["runtime"]["seed"] for i in ids] == [0, 1]
    infos = [read_json(RunFiles(tmp_path / i).run_info) for i in ids]
    group_tag = next(t for t in infos[0]["tags"] if t.startswith("seeds-"))
    assert infos[0]["group"] == infos[1]["group"] and infos[1]["tags"] == ["mine", group_tag]
    wait_for(lambda: ensemble_job(tmp_path).state == "done", 60, "the ensemble")
    ensemble = ensemble_job(tmp_path).run_id
    summary = runs.run_state(tmp_path, ensemble)
    assert (summary.status, summary.model_kind, summary.name) == ("completed", "ensemble", "grp ensemble")
    assert read_json(RunFiles(tmp_path / ensemble).config)["ensemble"]["members"] == ids
    assert group_tag in summary.tags


def test_a_queued_seed_stops_at_once_and_the_group_builds_no_ensemble(dataset: Path, tmp_path: Path) -> None:
    ids = seeds_mod.launch_seeds(tiny(dataset, "1,1,0,0"), tmp_path, seeds=2, force=True)
    assert runs.run_state(tmp_path, ids[1]).status == "queued"
    assert launch.stop_run(tmp_path, ids[1], grace_seconds=30) == "stopped"
    assert "stopped while queued" in read_json(RunFiles(tmp_path / ids[1]).status)["error"]
    started(tmp_path, ids[0])
    assert launch.stop_run(tmp_path, ids[0], grace_seconds=30) == "stopped"
    wait_for(lambda: not ensemble_job(tmp_path).live, 30, "the ensemble step to end")
    job = ensemble_job(tmp_path)
    assert (job.state, job.reason) == ("failed", "0 of 2 runs finished; no ensemble built")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(ids)
    assert len(read_json(RunFiles(tmp_path / ids[1]).run_info).get("launches") or []) == 0


def test_seed_group_bounds_and_a_failed_preflight_start_nothing(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(launch.LaunchError, match="2 to"):
        seeds_mod.launch_seeds(tiny(dataset), tmp_path, seeds=1)
    with pytest.raises(launch.LaunchError, match="--seeds must be >= 1"):
        cli.launch_from_cli(tmp_path, None, [f"--data.path={dataset}"], seeds=0)
    bad = tiny(dataset).replace(**{"runtime.device": "cuda"}) if not torch.cuda.is_available() else None
    if bad is not None:
        with pytest.raises(launch.LaunchError, match="pre-flight"):
            seeds_mod.launch_seeds(bad, tmp_path, seeds=3)
    assert not tmp_path.exists() or not [p for p in tmp_path.iterdir()]
