"""The job queue: per-run lock, slots, memory admission with reasons, and its command line.

The trainers and dispatchers here are real processes; where a test drives the dispatcher's steps
itself (to choose what memory the machine reports), it holds the queue's dispatcher record so
that no other dispatcher starts.
"""

from __future__ import annotations

import os
import subprocess
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from atft_core import runs
from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, RunLock, read_json, write_json_atomic
from atft_core.runs import cli, launch, queue
from atft_core.runs.jobs import ended_jobs, list_jobs, queue_paths
from atft_core.runs.store import process_start_time
from atft_core.system import GiB, Probes
from atft_core.train import run_training

REPO = Path(__file__).resolve().parents[1]


def tiny(dataset: Path, **dotted) -> RunConfig:
    return RunConfig.from_dict({"data": {"path": str(dataset), "lookback": 5},
                                "model": {"hidden_size": 8, "fan_top_k": 2},
                                "train": {"phase_epochs": "1,0,0,0", "mode": "optimized"},
                                "runtime": {"heartbeat_seconds": 0.5}}).replace(**dotted)


def test_two_resumes_at_once_start_one_trainer(demo_dataset: Path, tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({"data": {"path": str(demo_dataset), "lookback": 8}, "model": {"kind": "ridge"}})
    assert run_training(cfg, tmp_path / "r1") == "completed"
    command = [sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path), "resume", "r1"]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = sorted((p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=120)])
    (ok, out, _), (refused, _, error) = results
    assert (ok, refused) == (0, 2) and out.strip() == "queued r1 to resume"
    assert error.startswith("error: run r1 is ") and error.count("\n") == 1, error
    summary = queue.wait_for_runs(tmp_path, ["r1"], timeout=120, poll_seconds=0.2)[0]
    assert summary.status == "completed", runs.log_tail(tmp_path, "r1")
    assert len(read_json(RunFiles(tmp_path / "r1").run_info)["launches"]) == 1   # one trainer was started
    assert [j.run_id for j in [*ended_jobs(tmp_path), *list_jobs(tmp_path)]] == ["r1"]


def test_a_trainer_refuses_a_run_folder_another_holds_and_writes_nothing(demo_dataset: Path, tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "held")
    files.root.mkdir()
    with RunLock(files).acquire() as lock:
        lock.record_holder(os.getpid())
        out = subprocess.run([sys.executable, "-m", "atft_core.train", f"--data.path={demo_dataset}",
                              "--run-dir", str(files.root)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr == f"error: run held is in use by process {os.getpid()} " \
                                                 f"(it holds {files.lock})\n"
    assert sorted(p.name for p in files.root.iterdir()) == [files.lock.name]


@pytest.fixture
def held_queue(tmp_path: Path) -> Path:
    """A runs folder whose queue this test serves itself (its dispatcher record names this process)."""
    paths = queue_paths(tmp_path)
    paths.root.mkdir(parents=True)
    write_json_atomic(paths.dispatcher, {"pid": os.getpid(), "proc_start_time": process_start_time(os.getpid())})
    queue.set_slots(tmp_path, queue.Slots(cpu=2, threads=1))
    return tmp_path


def memory(available: int) -> Probes:
    return Probes(ram=lambda: (64 * GiB, available))


def test_runs_wait_for_memory_beside_the_running_ones_and_say_why(demo_dataset: Path, held_queue: Path) -> None:
    runs_dir = held_queue
    with pytest.raises(launch.LaunchError, match="runtime.num_threads=2 is more than a slot"):
        queue.launch_run(tiny(demo_dataset, **{"runtime.num_threads": 2}), runs_dir, force=True)
    assert [p.name for p in runs_dir.iterdir()] == [".queue"]
    first, second = (queue.launch_run(tiny(demo_dataset), runs_dir, name=n, force=True) for n in ("a", "b"))
    need = list_jobs(runs_dir)[0].need_ram
    assert need > 0 and read_json(runs_dir / first / "launch_config.json")["runtime"]["num_threads"] == 1

    queue.Dispatcher(runs_dir, memory(need - GiB // 10)).step()        # not even the first fits
    waiting = runs.run_state(runs_dir, first)
    assert waiting.status == "queued" and waiting.phase_name.startswith(f"waiting for {need / GiB:.1f} GiB of memory")
    assert "estimated: panel" in waiting.phase_name
    assert runs.run_state(runs_dir, second).phase_name == f"waiting behind run {first} ({waiting.phase_name})"

    dispatcher = queue.Dispatcher(runs_dir, memory(need + need // 2))  # room for one beside nothing
    dispatcher.step()
    try:
        jobs = {j.run_id: j for j in list_jobs(runs_dir)}
        assert (jobs[first].state, jobs[first].slot) == ("running", "cpu0")
        assert jobs[second].state == "queued" and "GiB of memory" in jobs[second].reason
        assert "beside the running jobs" in runs.run_state(runs_dir, second).phase_name
    finally:
        assert launch.stop_run(runs_dir, first, grace_seconds=30) == "stopped"
        assert launch.stop_run(runs_dir, second) == "stopped"
    dispatcher.step()
    ended = {j.run_id: j for j in ended_jobs(runs_dir)}
    assert ended[first].state == "stopped" and (ended[second].state, ended[second].reason) == (
        "stopped", "stopped while queued")
    assert list_jobs(runs_dir) == []


def test_gpu_slots_show_a_trainer_only_its_gpus_one_per_process(demo_dataset: Path, held_queue: Path) -> None:
    runs_dir = held_queue
    queue.set_slots(runs_dir, queue.Slots(gpus=(3, 5), threads=1))
    with pytest.raises(launch.LaunchError, match="runtime.devices=3 needs 3 GPUs at once; this queue has 2"):
        queue.launch_run(tiny(demo_dataset, **{"runtime.devices": 3}), runs_dir, force=True)
    wide = queue.launch_run(tiny(demo_dataset, **{"runtime.devices": 2}), runs_dir, force=True)
    narrow = queue.launch_run(tiny(demo_dataset), runs_dir, force=True)
    queue.Dispatcher(runs_dir, Probes(gpus=lambda: [])).step()
    jobs = {j.run_id: j for j in list_jobs(runs_dir)}
    try:
        assert jobs[wide].slot == "gpu3,gpu5" and jobs[wide].width == 2
        assert psutil.Process(jobs[wide].pid).environ()["CUDA_VISIBLE_DEVICES"] == "3,5"
        assert jobs[narrow].state == "queued" and jobs[narrow].reason == "waiting for a slot (2 of 2 busy)"
    finally:
        launch.stop_run(runs_dir, wide, grace_seconds=30)
        launch.stop_run(runs_dir, narrow)


def test_queue_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--runs-dir", str(tmp_path), "queue"]
    assert cli.main([*base, "slots", "--cpu", "3", "--threads", "1"]) == 0
    assert capsys.readouterr().out == "3 CPU slot(s), 1 thread(s) each\n"
    assert read_json(queue_paths(tmp_path).slots) == {"gpus": [], "per_gpu": 1, "cpu": 3, "threads": 1}
    assert cli.main([*base, "slots", "--cpu", "0"]) == 2
    assert capsys.readouterr().err == "error: slots.cpu must be an integer >= 1, got 0\n"
    assert cli.main([*base, "slots", "--gpus", "0,x"]) == 2
    assert "slots.gpus" in capsys.readouterr().err
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert out.startswith("slots: 3 CPU slot(s), 1 thread(s) each; dispatcher: not running")
    assert cli.main([*base, "cancel", "nope"]) == 2
    assert "no queued or running job 'nope'" in capsys.readouterr().err


def test_a_job_whose_owner_is_gone_has_its_run_stopped_saying_why(demo_dataset: Path, held_queue: Path) -> None:
    runs_dir = held_queue
    queue.set_slots(runs_dir, queue.Slots(cpu=1, threads=1))
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    record = {"pid": owner.pid, "proc_start_time": process_start_time(owner.pid), "what": "test worker"}
    training, waiting = (queue.launch_run(tiny(demo_dataset, **{"train.phase_epochs": (20, 0, 0, 0)}), runs_dir,
                                          force=True, owner=record) for _ in range(2))
    dispatcher = queue.Dispatcher(runs_dir, Probes())

    def until(predicate, what: str) -> None:
        deadline = time.monotonic() + 180
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            dispatcher.step()
            time.sleep(0.2)

    until(lambda: runs.run_state(runs_dir, training).status == "running", "the first run to train")
    owner.kill()
    owner.wait()
    until(lambda: not any(runs.run_state(runs_dir, r).live for r in (training, waiting)), "both runs to stop")
    reason = f"its owner (test worker {owner.pid}) is gone"
    assert (runs.run_state(runs_dir, training).status, runs.run_state(runs_dir, training).reason) == ("stopped", reason)
    assert runs.run_state(runs_dir, waiting).reason == f"{reason}; stopped while queued"
    assert read_json(RunFiles(runs_dir / training).run_info).get("pid") is not None
    assert runs.run_state(runs_dir, waiting).pid is None        # never started
    dispatcher.step()
    assert {j.run_id: j.state for j in ended_jobs(runs_dir)} == {training: "stopped", waiting: "stopped"}


def test_stop_as_pruned_with_a_reason(demo_dataset: Path, held_queue: Path) -> None:
    run_id = queue.launch_run(tiny(demo_dataset), held_queue, force=True)
    with pytest.raises(ValueError, match="outcome must be one of"):
        launch.stop_run(held_queue, run_id, outcome="completed")
    assert launch.stop_run(held_queue, run_id, outcome="pruned", reason="worse than the median") == "pruned"
    summary = runs.run_state(held_queue, run_id)
    assert (summary.status, summary.reason) == ("pruned", "worse than the median; stopped while queued")


def test_a_run_resumed_before_the_dispatcher_saw_its_crash_starts_again(demo_dataset: Path, held_queue: Path) -> None:
    runs_dir = held_queue
    queue.set_slots(runs_dir, queue.Slots(cpu=1, threads=1))
    run_id = queue.launch_run(tiny(demo_dataset, **{"train.phase_epochs": (20, 0, 0, 0)}), runs_dir, force=True)
    dispatcher = queue.Dispatcher(runs_dir, Probes())
    dispatcher.step()
    files = RunFiles(runs_dir / run_id)
    deadline = time.monotonic() + 180
    while not files.last_checkpoint.exists():
        assert time.monotonic() < deadline, "no last.pt"
        time.sleep(0.2)
    [old] = list_jobs(runs_dir)
    os.kill(old.pid, signal.SIGKILL)
    while runs.run_state(runs_dir, run_id).status != "crashed":
        assert time.monotonic() < deadline, "not crashed"
        time.sleep(0.1)
    queue.resume_run(runs_dir, run_id)   # before the dispatcher has looked again
    dispatcher.step()
    try:
        assert [(j.id, j.state) for j in ended_jobs(runs_dir)] == [(old.id, "failed")]
        [new] = list_jobs(runs_dir)
        assert new.state == "running" and new.pid != old.pid
    finally:
        launch.stop_run(runs_dir, run_id, grace_seconds=30)
