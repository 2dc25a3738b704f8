"""A disk that fills up while a run trains (issue 17.6): the run ends as failed with "no space
left on <path>" in its status (what the Run page shows), leaves no temp file, and keeps its
last good checkpoint.

The disk is real: a 16 MiB tmpfs mounted in a private mount namespace of an unprivileged user
namespace (`unshare --user --map-root-user --mount`, no root needed), which vanishes with the
test. A driver inside the namespace starts the trainer on it, waits for the first epoch to end,
then fills every free byte with a file, as another program filling the disk would; when the
trainer has ended it copies the run folder out for the assertions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from atft_core.checkpoint import load_checkpoint
from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, read_json, write_json_atomic
from atft_core.runs import run_state

REPO = Path(__file__).resolve().parents[1]
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]

DRIVER = textwrap.dedent("""
    import json, shutil, subprocess, sys, time
    from pathlib import Path
    disk, python, config, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    run = disk / "run"
    trainer = subprocess.Popen([python, "-m", "atft_core.train", "--config", config, "--run-dir", str(run)],
                               stdout=subprocess.DEVNULL, stderr=open(out / "stderr.txt", "w"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and trainer.poll() is None:
        try:
            if json.loads((run / "status.json").read_text()).get("epoch", 0) >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    with open(disk / "filler", "wb") as fh:     # every free byte, as another program would
        try:
            while True:
                fh.write(bytes(1 << 16))
                fh.flush()
        except OSError:
            pass
    code = trainer.wait(timeout=300)
    shutil.copytree(run, out / "run")
    (out / "exit_code").write_text(str(code))
""")


def _user_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _user_namespaces(), reason="needs `unshare` and unprivileged user "
                                      "namespaces to mount a size-limited tmpfs (a real full disk)")


@needs_namespaces
def test_a_disk_filling_up_mid_run_fails_the_run_with_the_reason(demo_dataset, tmp_path, monkeypatch):
    cfg = RunConfig().replace(**{
        "data.path": str(demo_dataset), "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8,
        "model.encoder_heads": 2, "model.gat_heads": 2, "train.phase_epochs": (3, 0, 0, 0),
        "train.early_stopping_patience": 0, "train.days_per_step": 4, "train.log_every_steps": 1,
        "runtime.heartbeat_seconds": 0.2})
    config = tmp_path / "config.json"
    config.write_text(cfg.to_json())
    (tmp_path / "disk").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)
    subprocess.run([*UNSHARE, sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "disk"), sys.executable,
                    str(config), str(tmp_path / "out")], cwd=REPO, check=True, timeout=600)

    files = RunFiles(tmp_path / "out" / "run")
    stderr = (tmp_path / "out" / "stderr.txt").read_text()
    assert (tmp_path / "out" / "exit_code").read_text() == "1", stderr
    status = read_json(files.status)
    assert status["state"] == "failed", status
    assert status["error"].startswith(f"no space left on {tmp_path / 'disk' / 'run'}"), status["error"]
    assert not [p.name for p in files.root.rglob("*") if p.name.endswith(".tmp") or p.name == ".status.reserve"]
    assert load_checkpoint(files.last_checkpoint)["progress"]["epoch"] >= 1     # the last good one, intact
    summary = run_state(files.root.parent, "run")
    assert summary.status == "failed" and summary.reason.startswith("no space left on")
    monkeypatch.setenv("ATFT_RUNS_DIR", str(files.root.parent))               # the Run page shows it
    monkeypatch.setenv("ATFT_DATA_DIR", str(demo_dataset.parent))
    monkeypatch.chdir(REPO)
    page = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run().switch_page("app_pages/run.py").run()
    assert not page.exception and any(str(e.value).startswith("no space left on") for e in page.error)


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "status.json"
    write_json_atomic(path, {"state": "running"})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"state": "failed", "value": float("inf")})
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
