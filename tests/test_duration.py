"""The pre-flight's duration estimate (atft_core.duration): measured from earlier runs of the same
size when there are some (their logged throughput applied to this run's plan), else a guess
that says so; optimized mode suggested beside a long safe-mode run."""

from __future__ import annotations

import pytest

from atft_core.config import RunConfig, resolve
from atft_core.duration import SUGGEST_OPTIMIZED_SECONDS, estimate_duration, optimized_hint
from atft_core.plan import plan_days
from atft_core.run_files import MetricsWriter, RunFiles, write_json_atomic

RATES = {0: (4000.0, 2.0), 1: (3500.0, 2.5), 2: (2000.0, 4.0)}
"""Phase -> (training stock-days/s, validation seconds) an earlier run logged."""


def effective(dataset, **changes) -> RunConfig:
    cfg = RunConfig().replace(**{"data.path": str(dataset), "model.hidden_size": 8, **changes})
    return resolve(cfg, cuda_available=False, cpu_count=2)


def earlier_run(runs_dir, eff: RunConfig, rates=RATES, name="earlier") -> None:
    """A finished run's files as the trainer writes them: config.json and per-epoch metrics."""
    files = RunFiles(runs_dir / name)
    files.root.mkdir(parents=True)
    write_json_atomic(files.config, {"config": eff.to_dict(), "resolved": {}})
    with MetricsWriter(files.metrics) as metrics:
        for epoch, (phase, (rate, val)) in enumerate(rates.items(), start=1):
            metrics.log(epoch=epoch, step=epoch, phase=phase, values={"samples_per_second": rate, "val_seconds": val})


def test_measured_from_an_earlier_run_of_the_same_size(demo_dataset, tmp_path):
    eff = effective(demo_dataset, **{"train.phase_epochs": (2, 1, 3, 0)})
    earlier_run(tmp_path, eff.replace(**{"train.phase_epochs": (1, 1, 1, 0)}))   # other epoch counts: same speed
    plan = plan_days(eff)
    estimate = estimate_duration(eff, plan, tmp_path)
    train = plan.stock_days(plan.train_days)
    expected = (2 * (train / 4000 + 2.0) + (train / 3500 + 2.5) + 3 * (train / 2000 + 4.0)) + 2 * 4.0
    assert estimate.measured and estimate.seconds == pytest.approx(expected)
    assert "measured by 1 earlier run(s) of this size (earlier)" in estimate.detail


def test_a_phase_the_earlier_run_did_not_train_is_said_to_be_guessed(demo_dataset, tmp_path):
    eff = effective(demo_dataset, **{"train.phase_epochs": (1, 1, 1, 1)})
    earlier_run(tmp_path, eff, rates={0: RATES[0], 2: RATES[2]})
    estimate = estimate_duration(eff, plan_days(eff), tmp_path)
    assert not estimate.measured and "phase(s) adaptive_norm, finetune not measured there" in estimate.detail


def test_another_size_or_no_run_at_all_is_a_guess_that_says_so(demo_dataset, tmp_path):
    eff = effective(demo_dataset)
    plan = plan_days(eff)
    none = estimate_duration(eff, plan, tmp_path)
    assert not none.measured and "a guess from the throughput in docs/benchmarks.md (cpu, safe mode)" in none.detail
    earlier_run(tmp_path, eff.replace(**{"model.hidden_size": 16}))
    other = estimate_duration(eff, plan, tmp_path)
    assert not other.measured and "a guess from run earlier (hidden 16) scaled to hidden 8" in other.detail
    assert other.seconds < estimate_duration(eff.replace(**{"model.hidden_size": 32}), plan, tmp_path).seconds


def test_a_long_safe_run_gets_the_optimized_estimate(demo_dataset, tmp_path):
    safe = effective(demo_dataset, **{"train.phase_epochs": (1, 1, 1, 0)})
    optimized = effective(demo_dataset, **{"train.phase_epochs": (1, 1, 1, 0), "train.mode": "optimized"})
    slow = {p: (rate / 1000, val) for p, (rate, val) in RATES.items()}   # safe: 1000x slower than below
    earlier_run(tmp_path, safe, rates=slow, name="safe")
    earlier_run(tmp_path, optimized, name="fast")
    plan = plan_days(safe)
    estimate = estimate_duration(safe, plan, tmp_path)
    assert estimate.seconds > SUGGEST_OPTIMIZED_SECONDS
    hint = optimized_hint(safe, plan, tmp_path, estimate, optimized)
    assert hint.startswith("; train.mode=optimized would take about") and "(measured;" in hint
    assert optimized_hint(optimized, plan, tmp_path, estimate_duration(optimized, plan, tmp_path), optimized) == ""
