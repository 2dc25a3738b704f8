"""Reading runs: states (incl. crash detection), metrics through DuckDB, compaction, CLI.

Run folders are made with run_files (the real format); live runs are real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from atft_core import runs
from atft_core.run_files import MetricsWriter, RunFiles, update_status, write_json_atomic
from atft_core.runs import launch
from atft_core.runs.store import process_start_time

REPO = Path(__file__).resolve().parents[1]


def make_run(runs_dir: Path, run_id: str, state: str = "completed", epochs: int = 3,
             names: tuple[str, ...] = ("val/rank_ic", "train/loss"), pid: int | None = None,
             start_time: float | None = None, created: float | None = None, hidden: int = 32) -> RunFiles:
    """A run folder as launcher + trainer leave it (real files, real format)."""
    files = RunFiles(runs_dir / run_id)
    files.checkpoints.mkdir(parents=True)
    created = created or time.time()
    write_json_atomic(files.run_info, {"id": run_id, "name": f"name {run_id}", "tags": ["t1"], "note": "",
                                       "created": created, "pid": pid, "proc_start_time": start_time,
                                       "host": socket.gethostname()})
    write_json_atomic(files.config, {"config": {"data": {"path": "/data/demo.parquet"},
                                                "model": {"kind": "atft_gat_fan", "hidden_size": hidden},
                                                "loss": {"rankic_weight": 0.2, "huber_weight": 1.0},
                                                "train": {"mode": "safe"}, "runtime": {"heartbeat_seconds": 5.0}},
                                     "requested": {}, "resolved": {}})
    with MetricsWriter(files.metrics) as w:
        for e in range(epochs):
            w.log(epoch=e, step=10 * e, phase=0, values={n: 0.1 * e if n == "val/rank_ic" else 1.0 / (e + 1) for n in names})
    update_status(files, state=state, pid=pid, started=created, epoch=epochs, epochs_planned=epochs, phase=0,
                  **({"ended": created + 60} if state != "running" else {}))
    files.log.write_text("\n".join(f"line {i}" for i in range(100)) + "\n")
    return files


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_list_shows_settings_best_and_latest(tmp_path: Path) -> None:
    make_run(tmp_path, "r1", epochs=4, created=100.0, hidden=32)
    make_run(tmp_path, "r2", state="failed", epochs=2, created=200.0, hidden=64)
    update_status(RunFiles(tmp_path / "r2"), error="ValueError: boom")
    listed = runs.list_runs(tmp_path)
    assert [r.id for r in listed] == ["r2", "r1"]  # newest first
    r2, r1 = listed
    assert r1.status == "completed" and r1.best_epoch == 3 and r1.best_rank_ic == pytest.approx(0.3)
    assert r1.latest["train/loss"] == pytest.approx(0.25) and r1.hidden_size == 32 and r1.mode == "safe"
    assert r1.loss_weights == {"rankic_weight": 0.2, "huber_weight": 1.0} and r1.dataset == "/data/demo.parquet"
    assert r1.epoch == 4 and r1.epochs_planned == 4 and r1.tags == ["t1"] and r1.duration == pytest.approx(60)
    assert r2.status == "failed" and r2.reason == "ValueError: boom" and r2.hidden_size == 64
    assert set(r1.to_dict()) >= {"id", "status", "best_rank_ic", "best_epoch", "latest", "started", "duration"}


def test_metric_that_appears_late_and_null_values(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1", epochs=3)
    with MetricsWriter(files.metrics) as w:
        w.log(epoch=3, step=30, phase=2, values={"gat/alpha": 0.4, "val/ic": float("nan")})
    frame = runs.query_metrics(tmp_path, ["r1"])
    assert frame.columns == ["run_id", "epoch", "step", "phase", "wall_time", "name", "value"]
    assert frame.filter(pl.col("name") == "gat/alpha")["value"].to_list() == [0.4]
    assert frame.filter(pl.col("name") == "val/ic")["value"].to_list() == [None]
    assert runs.run_state(tmp_path, "r1").latest["gat/alpha"] == pytest.approx(0.4)
    only = runs.query_metrics(tmp_path, ["r1"], names=["gat/alpha", "it's"])
    assert only["name"].to_list() == ["gat/alpha"]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1", state="running", epochs=3)
    complete = len(files.metrics.read_text().splitlines())
    with open(files.metrics, "a") as fh:
        fh.write('{"epoch": 3, "step": 30, "phase": 0, "wall_time": 1.0, "name": "val/ra')
    frame = runs.query_metrics(tmp_path, ["r1"])
    assert frame.height == complete
    assert frame["name"].null_count() == 0 and frame["epoch"].null_count() == 0
    assert runs.list_runs(tmp_path)[0].best_epoch == 2


def test_empty_and_missing_metrics(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1", epochs=0)
    files.metrics.unlink()
    make_run(tmp_path, "r2", epochs=0)
    assert runs.query_metrics(tmp_path, ["r1", "r2"]).height == 0
    assert {r.id: r.best_rank_ic for r in runs.list_runs(tmp_path)} == {"r1": None, "r2": None}
    with pytest.raises(runs.RunError, match="no run"):
        runs.query_metrics(tmp_path, ["nope"])


def test_compaction_is_used_only_while_it_matches(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1", epochs=5)
    before = runs.query_metrics(tmp_path, ["r1"])
    runs.list_runs(tmp_path)  # compacts the finished run
    parquet = list(files.root.glob("metrics-*.parquet"))
    assert [p.name for p in parquet] == [f"metrics-{files.metrics.stat().st_size}.parquet"]
    after = runs.query_metrics(tmp_path, ["r1"])
    assert after.drop("wall_time").equals(before.drop("wall_time"))
    # The JSONL grows (a resumed run): the stale parquet is ignored, then replaced.
    with MetricsWriter(files.metrics) as w:
        w.log(epoch=5, step=50, phase=0, values={"val/rank_ic": 0.9})
    assert runs.run_state(tmp_path, "r1").best_rank_ic == pytest.approx(0.9)
    assert runs.query_metrics(tmp_path, ["r1"]).height == before.height + 1
    runs.list_runs(tmp_path)
    assert [p.name for p in files.root.glob("metrics-*.parquet")] == [f"metrics-{files.metrics.stat().st_size}.parquet"]


def test_live_process_is_running_and_kill_9_is_crashed(tmp_path: Path) -> None:
    proc = sleeper()
    try:
        start = process_start_time(proc.pid)
        files = make_run(tmp_path, "live", state="running", pid=proc.pid, start_time=start)
        assert runs.run_state(tmp_path, "live").status == "running"
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while runs.run_state(tmp_path, "live").status != "crashed":  # a zombie until reaped
            assert time.time() < deadline, "kill -9 not detected as crashed within 10 s"
            time.sleep(0.1)
        state = runs.run_state(tmp_path, "live")
        assert "gone without a final status" in state.reason
        assert runs.log_tail(tmp_path, "live", lines=3) == "line 97\nline 98\nline 99"
        proc.wait()
        assert runs.run_state(tmp_path, "live").status == "crashed"  # reaped: still crashed
        assert files.status.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_live_process_stays_alive_when_the_wall_clock_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock step or a paused and resumed VM moves every wall-clock process start time (by 48 s
    once here); the recorded start time is counted from boot, so a live trainer stays alive,
    while a record from before that change (a wall-clock create_time) is still understood."""
    proc = sleeper()
    try:
        recorded, wall_clock = process_start_time(proc.pid), psutil.Process(proc.pid).create_time()
        assert runs.process_alive(proc.pid, recorded) and runs.process_alive(proc.pid, wall_clock)
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: wall_clock + 48.0)
        assert runs.process_alive(proc.pid, recorded)
        assert not runs.process_alive(proc.pid, recorded - 3600)   # another process with this pid
    finally:
        proc.kill()
        proc.wait()


def test_reused_pid_counts_as_dead(tmp_path: Path) -> None:
    proc = sleeper()
    try:
        start = process_start_time(proc.pid)
        make_run(tmp_path, "reused", state="running", pid=proc.pid, start_time=start - 3600)
        assert runs.run_state(tmp_path, "reused").status == "crashed"
    finally:
        proc.kill()
        proc.wait()


def test_final_status_written_while_reading_is_not_a_crash(tmp_path: Path) -> None:
    """Process gone, but status.json says completed by the time we look again."""
    files = make_run(tmp_path, "r1", state="completed", pid=2**22 + 7)
    status = json.loads(files.status.read_text()) | {"state": "running"}
    state, _, fresh = runs.infer_state(files, status, json.loads(files.run_info.read_text()), {}, time.time())
    assert state == "completed" and fresh["state"] == "completed"


def test_heartbeat_rules_without_pid(tmp_path: Path) -> None:
    files = make_run(tmp_path, "fresh", state="running")
    assert runs.run_state(tmp_path, "fresh").status == "running"
    stale = make_run(tmp_path, "stale", state="running")
    status = json.loads(stale.status.read_text()) | {"updated": time.time() - 3600}
    write_json_atomic(stale.status, status)
    info = json.loads(stale.run_info.read_text()) | {"created": time.time() - 3600}
    write_json_atomic(stale.run_info, info)
    s = runs.run_state(tmp_path, "stale")
    assert s.status == "crashed" and "no heartbeat" in s.reason
    # Another host's run: its pid means nothing here, only the heartbeat counts.
    write_json_atomic(files.run_info, json.loads(files.run_info.read_text()) | {"pid": 1, "host": "elsewhere"})
    assert runs.run_state(tmp_path, "fresh").status == "running"


def test_checkpoints_and_log_tail(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1")
    (files.checkpoints / "last.pt").write_bytes(b"x" * 10)
    assert [c.name for c in runs.list_checkpoints(tmp_path, "r1")] == ["last.pt"]
    assert runs.log_tail(tmp_path, "r1", lines=200).count("\n") == 99
    files.log.unlink()
    assert runs.log_tail(tmp_path, "r1") == ""


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from atft_core.run_files import MetricsWriter, RunFiles, update_status
    files = RunFiles(Path(sys.argv[1]))
    update_status(files, state="running")
    with MetricsWriter(files.metrics) as w:
        for e in range(int(sys.argv[2])):
            w.log(epoch=e, step=e, phase=0, values={f"m{i}": e + i / 100 for i in range(20)} | {"val/rank_ic": e / 100})
            time.sleep(0.002)
    update_status(files, state="completed", ended=time.time())
""")


def test_concurrent_writers_and_polling_reader(tmp_path: Path) -> None:
    """Two writers append while a reader polls every 0.2 s: no errors, every row exactly once."""
    for rid in ("w1", "w2"):
        (tmp_path / rid).mkdir()
        write_json_atomic(RunFiles(tmp_path / rid).run_info, {"id": rid, "created": time.time()})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / rid), "400"], cwd=REPO)
             for rid in ("w1", "w2")]
    errors, polls, last_heights = [], 0, {"w1": 0, "w2": 0}
    while any(p.poll() is None for p in procs) or polls < 3:
        try:
            listed = runs.list_runs(tmp_path)
            frame = runs.query_metrics(tmp_path, ["w1", "w2"])
            assert frame["name"].null_count() == 0 and {r.id for r in listed} == {"w1", "w2"}
            for rid in ("w1", "w2"):
                h = frame.filter(pl.col("run_id") == rid).height
                assert h >= last_heights[rid], "rows went missing between polls"
                last_heights[rid] = h
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))
        polls += 1
        time.sleep(0.2)
    assert [p.wait() for p in procs] == [0, 0]
    assert errors == []
    frame = runs.query_metrics(tmp_path, ["w1", "w2"])
    for rid in ("w1", "w2"):
        lines = [json.loads(line) for line in (tmp_path / rid / "metrics.jsonl").read_text().splitlines()]
        got = frame.filter(pl.col("run_id") == rid).select("epoch", "step", "phase", "name", "value").rows()
        want = [(r["epoch"], r["step"], r["phase"], r["name"], r["value"]) for r in lines]
        assert sorted(got) == sorted(want) and len(got) == len(set(got)) == 400 * 21
    assert polls >= 3


def test_fresh_reader_process_sees_same_runs_and_states(tmp_path: Path) -> None:
    proc = sleeper()
    try:
        make_run(tmp_path, "done", created=100.0)
        make_run(tmp_path, "live", state="running", pid=proc.pid, start_time=process_start_time(proc.pid))
        make_run(tmp_path, "dead", state="running", pid=2**22 + 11, start_time=1.0)
        mine = {r.id: r.status for r in runs.list_runs(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path), "list", "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        theirs = {r["id"]: r["status"] for r in json.loads(out.stdout)}
        assert theirs == mine == {"done": "completed", "live": "running", "dead": "crashed"}
        assert runs.run_state(tmp_path, "live").status == "running"
    finally:
        proc.kill()
        proc.wait()


def test_cli_metrics_csv_json_and_table(tmp_path: Path) -> None:
    make_run(tmp_path, "r1", epochs=2)
    make_run(tmp_path, "r2", epochs=3)
    cli = [sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path)]
    csv = subprocess.run(cli + ["metrics", "r1", "r2", "--names", "val/rank_ic"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert csv.splitlines()[0] == "run_id,epoch,step,phase,wall_time,name,value" and len(csv.splitlines()) == 6
    js = subprocess.run(cli + ["metrics", "r1", "--format", "json"], cwd=REPO, capture_output=True, text=True,
                        timeout=60, check=True).stdout
    assert len(json.loads(js)) == 4
    table = subprocess.run(cli + ["list"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "completed" in table and "0.2000@2" in table
    bad = subprocess.run(cli + ["metrics", "nope"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no run" in bad.stderr


def test_a_run_whose_state_files_are_unreadable_is_broken_and_can_be_deleted(tmp_path: Path) -> None:
    files = make_run(tmp_path, "r1", state="running")
    files.status.write_text('{"state": "runn')
    files.run_info.write_bytes(b"\xff\xfe not text")
    summary = runs.run_state(tmp_path, "r1")
    assert summary.status == "broken" and not summary.live
    assert summary.reason.startswith("status.json is not valid JSON (") and "; run.json is not " in summary.reason
    assert [(r.id, r.status) for r in runs.list_runs(tmp_path)] == [("r1", "broken")]
    launch.delete_run(tmp_path, "r1")
    assert not files.root.exists()


def test_an_unreadable_status_with_a_live_trainer_is_not_broken(tmp_path: Path) -> None:
    proc = sleeper()
    try:
        files = make_run(tmp_path, "r1", state="running", pid=proc.pid, start_time=process_start_time(proc.pid))
        files.status.write_text("")
        assert runs.run_state(tmp_path, "r1").status != "broken"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("command", [["atft_core.runs", "--runs-dir", "{runs}", "list"], ["atft_core.system"],
                                     ["atft_core.train", "--print-config"], ["atft_core.data", "check", "{data}"],
                                     ["atft_core.predict", "--help"], ["atft_core.evaluate", "--help"]])
def test_a_command_whose_output_reader_is_gone_ends_quietly(command: list[str], tmp_path: Path, demo_dataset: Path) -> None:
    """`python -m atft_core.X ... | head`: head exits first; no BrokenPipeError traceback."""
    make_run(tmp_path, "r1")
    args = [a.format(runs=tmp_path, data=demo_dataset) for a in command]
    read, write = os.pipe()
    os.close(read)   # the reader has gone before the first line is written
    try:
        out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, stdout=write, stderr=subprocess.PIPE, text=True,
                             timeout=120)
    finally:
        os.close(write)
    assert (out.returncode, out.stderr) == (0, "")


def test_query_survives_a_run_deleted_meanwhile(tmp_path: Path) -> None:
    make_run(tmp_path, "r1")
    files = make_run(tmp_path, "r2")
    stop = threading.Event()
    errors = []

    def poll() -> None:
        while not stop.is_set():
            try:
                runs.list_runs(tmp_path, compact=False)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.1)
    shutil.rmtree(files.root)
    time.sleep(0.1)
    stop.set()
    t.join()
    assert errors == []
    assert [r.id for r in runs.list_runs(tmp_path)] == ["r1"]


def test_trainer_launcher_and_ensembles_import_without_duckdb():
    """Only queries need DuckDB: a bare GPU box without it can still train, launch and combine."""
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "import atft_core.train, atft_core.runs.launch, atft_core.runs.ensemble, atft_core.runs.cli\n"
            "assert 'duckdb' not in {m for m, v in sys.modules.items() if v is not None}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
