"""Data-parallel training on the CPU (gloo): one run over two processes (runtime.devices=2).

A step's days are split over the processes and their loss terms weighted so that the update is
one process's update: the loss curve and validation metrics match a one-process run with the
same global batch (safe mode, no dropout, a fixed seed). One run folder, written by rank 0.
A killed rank ends the run as failed, naming the rank, within seconds; a killed rank 0 takes
the others with it; Stop and Resume work for the whole group (through the launcher).
Kept small: ~100 training days of the demo, hidden 8, two horizons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from atft_core import runs
from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import launch, queue
from atft_core.train import run_training

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.days_per_step": 4,
    "model.encoder_dropout": 0.0, "model.gat_dropout": 0.0, "runtime.heartbeat_seconds": 0.5,
    "data.horizons": (1, 5), "data.end": "2016-07-29",     # ~100 training days: 25 steps an epoch
}
COMPARED = ("train/loss", "loss/huber", "loss/pinball", "loss/rankic", "loss/cs_ic", "loss/sharpe",
            "gat/grad_norm", "val/loss", "val/rank_ic", "val/ic", "val/pred_std")


def config(dataset: Path, **changes) -> RunConfig:
    return RunConfig().replace(**{"data.path": str(dataset), **TINY, **changes})


def curve(run_dir: Path) -> dict[tuple[int, str], float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {(r["epoch"], r["name"]): r["value"] for r in rows if r["name"] in COMPARED}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_processes_train_the_run_one_process_trains(demo_dataset, tmp_path):
    cfg = config(demo_dataset, **{"train.phase_epochs": (1, 0, 1, 0)})
    assert run_training(cfg, tmp_path / "one") == "completed"
    assert run_training(cfg.replace(**{"runtime.devices": 2}), tmp_path / "two") == "completed"
    one, two = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) == 2 * len(COMPARED)      # two epochs
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    files = RunFiles(tmp_path / "two")
    status = read_json(files.status)
    assert status["state"] == "completed" and status["device"] == "cpu x 2 processes (gloo)"
    assert set(status["ranks"]) == {"0", "1"}
    assert read_json(files.config)["resolved"]["devices"] == ["cpu", "cpu"]
    assert files.predictions.exists() and files.best_checkpoint.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]     # the other rank wrote nothing
    assert not any(psutil.pid_exists(pid) for rank, pid in status["ranks"].items() if rank != "0")


WATCHED = """
import os, subprocess, sys, time
if sys.argv[1] == "parent":
    subprocess.Popen([sys.executable, "-c", __doc__, "child", sys.argv[2], str(os.getpid())])
    time.sleep(600)
else:
    from atft_core import distributed
    distributed.watch_parent(int(sys.argv[3]))
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(600)
"""


def test_the_other_ranks_exit_when_rank_0_is_killed(tmp_path):
    """Ranks > 0 watch their parent, rank 0: killed (the run then shows as crashed), it takes
    them with it, even from inside a hung collective."""
    script, marker = f"__doc__ = {WATCHED!r}\n{WATCHED}", tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", script, "parent", str(marker)], cwd=REPO)
    wait_for(lambda: marker.exists() and marker.read_text(), 60, "the child to watch its parent")
    child = psutil.Process(int(marker.read_text()))
    parent.kill()
    parent.wait()
    child.wait(timeout=30)


def test_stop_resume_and_a_killed_rank_for_the_whole_group(demo_dataset, tmp_path):
    """Through the launcher: Stop mid-epoch ends every rank politely (the partial epoch is
    discarded); Resume starts the group again from last.pt; then a killed rank 1 ends the run
    as failed, naming the rank, within seconds (rank 0's pending collective fails, its watchdog
    says why)."""
    cfg = config(demo_dataset, **{"train.phase_epochs": (30, 0, 0, 0), "runtime.devices": 2,
                                  "train.early_stopping_patience": 0})
    queue.set_slots(tmp_path, queue.Slots(cpu=2, threads=1))   # one slot per process
    run_id = queue.launch_run(cfg, tmp_path, force=True)
    files = RunFiles(tmp_path / run_id)
    wait_for(lambda: (read_json(files.status) or {}).get("step", 0) >= 2, 120, "the first steps")
    worker = psutil.Process(read_json(files.status)["ranks"]["1"])
    assert launch.stop_run(tmp_path, run_id, grace_seconds=60) == "stopped"
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert not read_json(files.status).get("error"), "the group was killed instead of stopping"

    queue.resume_run(tmp_path, run_id)
    def resumed_group_running() -> bool:   # the first launch's status already said epoch 1: wait for the new ranks
        status = read_json(files.status) or {}
        return (status.get("state") == "running" and status.get("ranks", {}).get("1") not in (None, worker.pid)
                and "resumed from" in files.log.read_text())

    wait_for(resumed_group_running, 120, "the resumed group")
    status = read_json(files.status)
    assert status["state"] == "running" and runs.run_state(tmp_path, run_id).live
    os.kill(status["ranks"]["1"], signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: not runs.run_state(tmp_path, run_id).live, 60, "the run to end")
    assert time.time() - killed < 30, "the run took too long to notice"   # ~1-2 s here
    status = read_json(files.status)
    assert status["state"] == "failed" and "rank 1 of 2" in status["error"] and "SIGKILL" in status["error"]
    assert runs.run_state(tmp_path, run_id).status == "failed"
