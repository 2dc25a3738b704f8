"""The weight average: its arithmetic, that it never leaks into training, and the trainer's use of it."""

from __future__ import annotations

import pytest
import torch

from atft_core.checkpoint import load_checkpoint
from atft_core.config import ConfigError, RunConfig
from atft_core.ema import WARMUP_STEPS, WeightAverage, effective_decay, short_run_warning, updates_to_reach
from atft_core.evaluation import evaluate_split, load_predictions
from atft_core.predict import predict_run
from atft_core.run_files import RunFiles, read_json
from atft_core.runs import run_state
from atft_core.train import run_training
from test_train import metric_rows, tiny_config


def _set(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_average_follows_the_ramped_decay():
    model = torch.nn.Linear(3, 2)
    _set(model, 0.0)
    average = WeightAverage(model, decay=0.9)
    expected = 0.0
    for step in range(1, 30):
        _set(model, float(step))
        average.update(model)
        decay = min(0.9, step / (WARMUP_STEPS - 1 + step))
        expected = decay * expected + (1 - decay) * step
        assert torch.allclose(average.shadow["weight"], torch.full((2, 3), expected)), step
    assert average.updates == 29


def test_the_warm_up_caps_the_decay_until_enough_updates():
    for decay in (0.5, 0.9, 0.95, 0.99, 0.995):
        n = updates_to_reach(decay)
        assert effective_decay(decay, n) == decay and effective_decay(decay, n - 1) < decay, decay
        assert short_run_warning(decay, n) is None
    assert updates_to_reach(0.995) == 1791
    message = short_run_warning(0.995, 412)
    assert message is not None and "1,791 optimizer steps" in message and "ends at decay 0.979" in message


def test_a_run_too_short_for_its_decay_says_so_before_training(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "short")
    cfg = tiny_config(demo_dataset, **{"train.ema_decay": 0.99, "train.phase_epochs": (1, 0, 0, 0)})
    assert run_training(cfg, files.root) == "completed"
    expected = "train.ema_decay=0.99 is reached only after 891 optimizer steps"
    warnings = read_json(files.status)["warnings"]
    assert len(warnings) == 1 and expected in warnings[0]
    log = files.log.read_text()
    assert expected in log and log.index(expected) < log.index("epoch 1 phase 0")
    assert run_state(tmp_path, "short").warnings == warnings   # what the Run page shows


def test_applied_swaps_in_the_average_and_restores_the_raw_weights():
    model = torch.nn.Linear(3, 2)
    _set(model, 1.0)
    average = WeightAverage(model, decay=0.5)
    _set(model, 3.0)
    average.update(model)   # first update: decay ramps to 1/10 -> 0.1 * 1 + 0.9 * 3 = 2.8
    with average.applied(model):
        assert torch.allclose(model.weight, torch.full((2, 3), 2.8))
        assert torch.allclose(average.averaged_state_dict(model)["bias"], torch.full((2,), 2.8))
    assert torch.equal(model.weight, torch.full((2, 3), 3.0))
    with pytest.raises(RuntimeError), average.applied(model):
        raise RuntimeError("validation failed")
    assert torch.equal(model.weight, torch.full((2, 3), 3.0))  # restored on errors too


def test_decay_outside_zero_one_is_a_config_error():
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="train.ema_decay"):
            RunConfig.from_dict({"train": {"ema_decay": bad}})


def test_trainer_evaluates_checkpoints_and_predicts_with_the_average(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "ema")
    cfg = tiny_config(demo_dataset, **{"train.ema_decay": 0.9, "train.phase_epochs": (1, 1, 0, 0)})
    assert run_training(cfg, files.root) == "completed"
    assert read_json(files.config)["config"]["train"]["ema_decay"] == 0.9
    best = load_checkpoint(files.best_checkpoint)
    assert best["average_updates"] > 0
    differs = [not torch.equal(best["model"][k], best["raw_model"][k]) for k in best["raw_model"]
               if best["raw_model"][k].is_floating_point()]
    assert any(differs)
    # the final predictions come from the averaged weights: they reproduce the best epoch's metric
    logged = {r["epoch"]: r["value"] for r in metric_rows(files) if r["name"] == "val/rank_ic"}
    summary = evaluate_split(load_predictions(files.predictions), "val", 1, window=5).summary
    assert summary["rank_ic"] == pytest.approx(logged[best["progress"]["best_epoch"]], abs=1e-6)
    # and predict, which knows nothing of the average, loads the same weights from best.pt
    assert predict_run(files.root, demo_dataset, tmp_path / "p.parquet")["predict/rank_ic"] is not None


def test_resume_keeps_the_average(demo_dataset, tmp_path):
    files = RunFiles(tmp_path / "ema-resume")
    cfg = {"train.ema_decay": 0.9}
    run_training(tiny_config(demo_dataset, **cfg, **{"train.phase_epochs": (1, 1, 0, 0)}), files.root)
    updates = load_checkpoint(files.last_checkpoint)["average_updates"]
    assert run_training(tiny_config(demo_dataset, **cfg, **{"train.phase_epochs": (1, 1, 1, 0)}), files.root,
                        resume=True) == "completed"
    assert load_checkpoint(files.last_checkpoint)["average_updates"] > updates
    assert [r["epoch"] for r in metric_rows(files) if r["name"] == "val/rank_ic"] == [1, 2, 3]
