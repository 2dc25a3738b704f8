"""Health alarms (atft_core.health): each names its metric, the epoch and the threshold field;
the trainer turns them into status.json warnings; the training-day sample for per-horizon metrics."""

from __future__ import annotations

import numpy as np
import pytest

from atft_core.config import RunConfig
from atft_core.health import HealthMonitor
from atft_core.run_files import RunFiles, read_json
from atft_core.train import run_training, sample_days

GOOD = {"gat/grad_norm": 0.05, "gat/alpha": 0.5, "val/pred_std": 0.1, "train/loss": 1.0}


def messages(cfg: RunConfig, epochs: list[dict], phase: int = 2) -> list[str]:
    monitor = HealthMonitor(cfg)
    return [a.message for epoch, values in enumerate(epochs, start=1) for a in monitor.check(epoch, phase, values)]


@pytest.mark.parametrize("change, field, words", [
    ({"gat/grad_norm": 1e-7}, "train.alarm_gat_grad_norm=1e-05", "GAT gradient collapsing: gat/grad_norm=1e-07 at epoch 2"),
    ({"gat/alpha": 0.995}, "train.alarm_alpha_margin=0.01", "gate alpha saturated: gat/alpha=0.9950 at epoch 2"),
    ({"gat/alpha": 0.002}, "of 0: the fusion ignores the graph", "gat/alpha=0.0020"),
    ({"val/pred_std": 0.005}, "train.alarm_pred_std_ratio=0.1 x 0.1 (epoch 1)", "val/pred_std=0.005 at epoch 2"),
    ({"train/loss": 2.5}, "train.alarm_loss_rise=1 x 1", "loss diverging: train/loss=2.5 at epoch 2"),
])
def test_each_alarm_names_the_metric_the_epoch_and_the_threshold(change, field, words):
    found = messages(RunConfig(), [GOOD, {**GOOD, **change}])
    assert len(found) == 1 and field in found[0] and words in found[0], found


def test_healthy_epochs_and_phases_without_the_graph_raise_nothing():
    assert messages(RunConfig(), [GOOD, GOOD, {**GOOD, "train/loss": 0.5}]) == []
    flat = {**GOOD, "gat/grad_norm": 0.0, "gat/alpha": 0.5}   # phases 0-1: the GAT is not trained yet
    assert messages(RunConfig(), [flat, flat], phase=1) == []
    fixed_gate = RunConfig().replace(**{"model.gate_learnable": False})
    assert messages(fixed_gate, [{**GOOD, "gat/alpha": 0.001}]) == []


def test_zero_turns_an_alarm_off_and_references_survive_a_resume():
    off = RunConfig().replace(**{"train.alarm_loss_rise": 0.0, "train.alarm_pred_std_ratio": 0.0})
    assert messages(off, [GOOD, {**GOOD, "train/loss": 9.0, "val/pred_std": 1e-9}]) == []
    first = HealthMonitor(RunConfig())
    first.check(1, 2, GOOD)
    resumed = HealthMonitor(RunConfig(), first.state_dict())
    assert [a.topic for a in resumed.check(2, 2, {**GOOD, "train/loss": 3.0})] == ["loss diverging"]


def test_the_trainer_reports_alarms_as_warnings_and_logs_training_metrics_per_horizon(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "run")
    cfg = RunConfig().replace(**{
        "data.path": str(demo_dataset), "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8,
        "model.encoder_heads": 2, "model.gat_heads": 2, "train.phase_epochs": (1, 0, 1, 0),
        "train.days_per_step": 4, "train.alarm_gat_grad_norm": 10.0, "train.train_eval_days": 8})
    assert run_training(cfg, files.root) == "completed"
    warnings = read_json(files.status)["warnings"]
    assert [w for w in warnings if w.startswith("GAT gradient collapsing")] == [
        next(w for w in warnings if "at epoch 2 < train.alarm_gat_grad_norm=10:" in w)], warnings   # phase 0: none
    lines = files.metrics.read_text()
    for horizon in cfg.data.horizons:
        assert lines.count(f'"train/rank_ic_{horizon}d"') == 2 and lines.count(f'"val/rank_ic_{horizon}d"') == 2


def test_the_training_sample_is_fixed_spread_and_in_runs_of_whole_steps():
    days = np.arange(20, 200)
    sample = sample_days(days, 32, 4)
    assert len(sample) == 32 and sample[0] == 20 and sample[-1] == 199
    runs = sample.reshape(-1, 4)
    assert (np.diff(runs, axis=1) == 1).all() and (runs[1:, 0] > runs[:-1, -1]).all()
    assert np.array_equal(sample, sample_days(days, 32, 4))
    assert len(sample_days(days, 0, 4)) == 0 and np.array_equal(sample_days(days, 500, 4), days)
