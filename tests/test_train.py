"""The trainer end to end on tiny demo data: run folder, determinism, failures, resume, predict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest
import torch

from atft_core.checkpoint import load_checkpoint
from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, read_json
from atft_core.train import run_training

TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 1, 0),
    "train.days_per_step": 4, "runtime.heartbeat_seconds": 0.5,
}


MEASURED = ("epoch_seconds", "val_seconds", "samples_per_second", "memory/peak_rss_gib")
"""Metrics that measure the machine, not the model: they differ between identical runs."""


def tiny_config(dataset, **changes) -> RunConfig:
    return RunConfig().replace(**{"data.path": str(dataset), **TINY, **changes})


def metric_rows(files: RunFiles) -> list[dict]:
    return [json.loads(line) for line in files.metrics.read_text().splitlines()]


def test_run_folder_has_everything_the_dashboard_needs(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "run")
    assert run_training(tiny_config(demo_dataset), files.root) == "completed"
    saved = read_json(files.config)
    assert saved["config"]["model"]["hidden_size"] == 8
    assert saved["resolved"]["device"] == "cpu" and saved["resolved"]["n_features"] == len(saved["resolved"]["feature_names"])
    assert saved["resolved"]["n_params"] > 0 and saved["resolved"]["dataset_fingerprint"]
    assert saved["config"]["data"]["purge_days"] == 20  # resolved from 'auto'
    status = read_json(files.status)
    assert status["state"] == "completed" and status["epoch"] == 3 and status["epochs_planned"] == 3
    names = {row["name"] for row in metric_rows(files)}
    for name in ("train/loss", "loss/huber", "loss/pinball", "loss/rankic", "loss/cs_ic", "loss/sharpe",
                 "val/ic", "val/rank_ic", "val/icir", "val/rank_icir", "val/ls_sharpe", "val/jpx_sharpe",
                 "val/pred_std", "gat/grad_norm", "gat/alpha", "lr", "epoch_seconds", "samples_per_second",
                 "val/rank_ic_5d", "test/rank_ic", "graph/built", "memory/peak_rss_gib"):
        assert name in names, name
    final = {r["name"] for r in metric_rows(files) if r["phase"] == -1}   # the best checkpoint's predictions
    assert {"test/rank_ic", "memory/peak_rss_gib"} <= final   # their peak counts for the memory pre-flight
    gat_norms = [r["value"] for r in metric_rows(files) if r["name"] == "gat/grad_norm"]
    assert gat_norms[0] == 0.0 and gat_norms[2] > 0.0  # GAT only trains from phase 2
    for path in (files.best_checkpoint, files.last_checkpoint):
        state = load_checkpoint(path)
        assert state["config"]["model"]["hidden_size"] == 8
    predictions = pl.read_parquet(files.predictions)
    assert set(predictions["split"].unique()) == {"val", "test"}
    weights = read_json(files.feature_weights)      # the encoder's selection weights, per input
    assert weights["features"] == saved["resolved"]["feature_names"] and weights["split"] == "val"
    assert sum(weights["mean_weight"]) == pytest.approx(1.0, abs=1e-3) and weights["rows"] == predictions.filter(
        pl.col("split") == "val").height
    assert {"pred_1d", "target_20d"} <= set(predictions.columns)
    log = files.log.read_text()
    assert "effective config" in log and "resolved: device=cpu" in log


def test_safe_mode_is_deterministic(demo_dataset, tmp_path):
    cfg = tiny_config(demo_dataset, **{"train.phase_epochs": (1, 0, 1, 0)})
    values = []
    for name in ("a", "b"):
        run_training(cfg, tmp_path / name)
        rows = metric_rows(RunFiles(tmp_path / name))
        values.append([(r["epoch"], r["name"], r["value"]) for r in rows
                       if r["name"] not in MEASURED])
    assert values[0] == values[1]
    run_training(cfg.replace(**{"runtime.seed": 1}), tmp_path / "other_seed")
    rows = metric_rows(RunFiles(tmp_path / "other_seed"))
    assert [(r["epoch"], r["name"], r["value"]) for r in rows
            if r["name"] not in MEASURED] != values[0]


@pytest.mark.parametrize("heartbeat,many", [(0.02, True), (1000.0, False)])
def test_heartbeat_seconds_reaches_the_running_trainer(demo_dataset, tmp_path, heartbeat, many):
    """status.json is refreshed every runtime.heartbeat_seconds while run_training works, on
    top of the updates at start, epoch ends and finish."""
    import threading
    import time
    files = RunFiles(tmp_path / "run")
    cfg = tiny_config(demo_dataset, **{"runtime.heartbeat_seconds": heartbeat, "train.phase_epochs": (2, 0, 0, 0)})
    seen, done = set(), threading.Event()

    def watch() -> None:  # run_training installs a SIGTERM handler, so it keeps the main thread
        while not done.is_set():
            seen.add((read_json(files.status) or {}).get("updated") if files.status.exists() else None)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_training(cfg, files.root)
    finally:
        done.set()
        watcher.join()
    assert read_json(files.status)["state"] == "completed"
    # Without heartbeats only a handful of writes happen (start, config, 2 epochs, end).
    # Measured: ~90 distinct values with heartbeats, 5 without; 10 leaves room for a busy machine.
    assert (len(seen) > 10) == many, len(seen)


def test_non_finite_loss_fails_the_run_with_the_reason(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "nan")
    cfg = tiny_config(demo_dataset, **{"train.lr": 1e30, "train.grad_clip": 0.0, "train.optimizer": "sgd"})
    assert run_training(cfg, files.root) == "failed"
    status = read_json(files.status)
    assert status["state"] == "failed" and "non-finite loss" in status["error"]


def test_degenerate_predictions_stop_the_run_when_asked(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "degenerate")
    cfg = tiny_config(demo_dataset, **{"train.degenerate_std_threshold": 1e9, "train.stop_on_degenerate": True})
    assert run_training(cfg, files.root) == "failed"
    assert "predictions degenerate" in read_json(files.status)["error"]


def test_resume_continues_without_duplicated_epochs(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "resume")
    run_training(tiny_config(demo_dataset, **{"train.phase_epochs": (1, 1, 0, 0)}), files.root)
    # A longer plan on the same folder: resume picks up after epoch 2 from last.pt.
    with open(files.metrics, "a") as fh:  # an epoch logged by a killed trainer after its last checkpoint
        fh.write(json.dumps({"epoch": 3, "step": 0, "phase": 2, "wall_time": 0, "name": "val/rank_ic", "value": 0.5}) + "\n")
        fh.write('{"epoch": 3, "na')
    assert run_training(tiny_config(demo_dataset, **{"train.phase_epochs": (1, 1, 1, 0)}), files.root, resume=True) == "completed"
    epochs = [r["epoch"] for r in metric_rows(files) if r["name"] == "val/rank_ic"]
    assert epochs == [1, 2, 3]


def test_ctrl_c_stops_the_trainer_cleanly_and_the_run_resumes(demo_dataset, tmp_path):
    """A first SIGINT (Ctrl-C in a terminal, or a timeout's signal to the process group) is a
    polite stop like the launcher's SIGTERM: 'stopped' with last.pt, not a stale 'running'."""
    import signal
    import time
    files = RunFiles(tmp_path / "interrupted")
    request = tmp_path / "request.json"
    many = {"train.phase_epochs": (500, 0, 0, 0), "train.early_stopping_patience": 0}
    request.write_text(tiny_config(demo_dataset, **many).to_json())
    proc = subprocess.Popen([sys.executable, "-m", "atft_core.train", "--config", str(request),
                             "--run-dir", str(files.root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (read_json(files.status) or {}).get("epoch", 0) < 1:   # an epoch done: the handlers are in place
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    status = read_json(files.status)
    assert status["state"] == "stopped" and status["epoch"] < 500
    assert files.last_checkpoint.is_file()
    short = tiny_config(demo_dataset, **{"train.phase_epochs": (status["epoch"] + 1, 0, 0, 0)})
    assert run_training(short, files.root, resume=True) == "completed"


def _stop_when(files: RunFiles, ready) -> threading.Thread:
    """SIGTERM to this process once `ready(status)`: run_training's handler turns it into a stop."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ready(read_json(files.status) or {}):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.002)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(demo_dataset, tmp_path):
    """Issue 17.8: the stopped epoch's optimizer steps are discarded, not kept and then taken
    again, and the generators continue their streams: in safe mode the resumed run has the
    uninterrupted run's step counts and every per-epoch metric."""
    cfg = tiny_config(demo_dataset, **{"runtime.heartbeat_seconds": 0.02, "train.early_stopping_patience": 0})
    whole, parted = RunFiles(tmp_path / "whole"), RunFiles(tmp_path / "parted")
    assert run_training(cfg, whole.root) == "completed"
    steps = read_json(whole.status)["steps_per_epoch"]
    mid_second = lambda s: s.get("epoch") == 1 and 3 <= s.get("epoch_steps_done", 0) < steps  # noqa: E731
    watcher = _stop_when(parted, mid_second)
    assert run_training(cfg, parted.root) == "stopped"
    watcher.join()
    status = read_json(parted.status)
    assert status["state"] == "stopped" and status["epoch"] == 1 and status["step"] == steps
    assert "stopped during epoch 2 after" in parted.log.read_text()
    assert run_training(cfg, parted.root, resume=True) == "completed"

    def per_epoch(files: RunFiles) -> list[tuple]:
        return [(r["epoch"], r["step"], r["phase"], r["name"], r["value"]) for r in metric_rows(files)
                if r["name"] not in MEASURED]
    assert per_epoch(parted) == per_epoch(whole)
    assert read_json(parted.status)["step"] == read_json(whole.status)["step"] == 3 * steps


def test_a_stop_in_the_first_epoch_can_be_resumed(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "early")
    cfg = tiny_config(demo_dataset, **{"runtime.heartbeat_seconds": 0.02, "train.phase_epochs": (1, 0, 0, 0)})
    watcher = _stop_when(files, lambda s: s.get("epoch_steps_done", 0) >= 2)
    assert run_training(cfg, files.root) == "stopped"
    watcher.join()
    assert read_json(files.status)["step"] == 0 and files.last_checkpoint.is_file()   # the state before epoch 1
    assert run_training(cfg, files.root, resume=True) == "completed"


def test_resume_keeps_the_first_start_and_sums_active_time(demo_dataset, tmp_path):
    """Issue 17.9: elapsed time and duration span every launch; active_seconds adds up the
    time each launch trained."""
    files = RunFiles(tmp_path / "twice")
    run_training(tiny_config(demo_dataset, **{"train.phase_epochs": (1, 0, 0, 0)}), files.root)
    first = read_json(files.status)
    time.sleep(0.5)
    run_training(tiny_config(demo_dataset, **{"train.phase_epochs": (2, 0, 0, 0)}), files.root, resume=True)
    second = read_json(files.status)
    assert second["started"] == first["started"] and second["launch_started"] > first["ended"]
    this_launch = second["ended"] - second["launch_started"]
    assert second["active_seconds"] == pytest.approx(first["active_seconds"] + this_launch, abs=0.5)
    assert second["active_seconds"] < second["ended"] - second["started"] - 0.4   # the pause is not active time


def test_neutralize_names_must_be_loaded_features_and_a_neutralized_run_trains(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "bad")
    cfg = tiny_config(demo_dataset, **{"loss.neutralize": ("feat_no_such_input",)})
    assert run_training(cfg, files.root) == "failed"
    error = read_json(files.status)["error"]
    assert "ConfigError" in error and "loss.neutralize" in error and "feat_no_such_input" in error
    assert not files.last_checkpoint.exists()                      # refused before any training
    files = RunFiles(tmp_path / "good")
    names = pl.read_parquet_schema(demo_dataset)
    exposures = tuple(n for n in names if n.startswith("feat_"))[:2]
    cfg = tiny_config(demo_dataset, **{"loss.neutralize": exposures, "train.phase_epochs": (1, 0, 1, 0)})
    assert run_training(cfg, files.root) == "completed"
    assert read_json(files.config)["config"]["loss"]["neutralize"] == list(exposures)


def test_baseline_runs_through_the_same_pipeline(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "ridge")
    assert run_training(tiny_config(demo_dataset, **{"model.kind": "ridge"}), files.root) == "completed"
    names = {row["name"] for row in metric_rows(files)}
    assert {"val/rank_ic", "test/rank_ic"} <= names
    assert not files.feature_weights.exists()       # a ridge selects no inputs
    out = tmp_path / "preds.parquet"
    result = subprocess.run([sys.executable, "-m", "atft_core.predict", "--run", str(files.root),
                             "--dataset", str(demo_dataset), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "predict/rank_ic" in result.stdout and pl.read_parquet(out).height > 0


def test_predict_rebuilds_the_deep_model_from_its_checkpoint(demo_dataset, tmp_path):
    from atft_core.predict import predict_run

    files = RunFiles(tmp_path / "deep")
    run_training(tiny_config(demo_dataset, **{"model.hidden_size": 12}), files.root)
    values = predict_run(files.root, demo_dataset, tmp_path / "p.parquet")
    assert values["predict/rank_ic"] is not None
    assert torch.isfinite(torch.tensor(pl.read_parquet(tmp_path / "p.parquet")["pred_1d"].to_numpy())).all()


def test_status_warnings_keep_one_line_per_problem(tmp_path):
    from atft_core.run_files import StatusFile

    files = RunFiles(tmp_path / "warned")
    files.root.mkdir()
    status = StatusFile(files, heartbeat_seconds=60)
    status.warn("predictions degenerate: val/pred_std=1e-07", topic="predictions degenerate")
    status.warn("seed group: no ensemble built")
    status.warn("predictions degenerate: val/pred_std=2e-08", topic="predictions degenerate")   # the next epoch
    status.warn("seed group: no ensemble built")
    assert read_json(files.status)["warnings"] == ["predictions degenerate: val/pred_std=2e-08",
                                                   "seed group: no ensemble built"]   # latest last
