"""What a run writes into its folder, estimated before launch (the pre-flight's "disk (runs)").

    run_disk_bytes(eff, n_params, plan=None) -> RunSize     # .total, .detail

Measured on this project's runs (tiny demo run: `python -m atft_core.train` on the demo, hidden 8,
3 epochs; the real data's shape: 943 stocks, 1,507 training / 302 validation / 303 test days):
- checkpoints: best.pt and last.pt, each the weights and Adam's two moments in fp32 plus about
  0.1 MiB of config, generator state and archive headers (a demo hidden-8 checkpoint: 152 kB for
  5,485 parameters), and while one is replaced its new copy sits beside it as a temp file;
- predictions.parquet: one row per validation and test stock-day with a prediction and a target
  per horizon: 32 bytes a row on the demo (4 horizons), 47 with random predictions on the real
  shape (566,679 rows, 26.9 MB), which is the bound used here;
- metrics.jsonl: about 100 lines of ~125 bytes per epoch (12 kB; with the training-day metrics),
  plus one per `train.log_every_steps` steps, and the compacted parquet beside it when finished;
- train.log, config.json, status.json and the status reserve: well under 1 MiB.
So a real-size run at hidden 64 writes about 35 MiB, not the 260 MiB the checklist once assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from atft_core.config import RunConfig
from atft_core.plan import DayPlan

MiB = 1024**2
BYTES_PER_VALUE = 4
"""fp32 parameters."""
OPTIMIZER_STATES = 2
"""Adam(W) keeps two moments per parameter, saved in the checkpoint with the weights."""
CHECKPOINT_COPIES = 2
"""best.pt and last.pt."""
CHECKPOINT_OVERHEAD_BYTES = 100 * 1024
"""Config, requested config, generator state and the archive's headers of one checkpoint."""
PREDICTION_ROW_BYTES = 8
"""Date, Code and split of a predictions.parquet row, compressed."""
PREDICTION_HORIZON_BYTES = 10
"""A prediction and a target per horizon and row, compressed (47 bytes a row at 4 horizons, measured)."""
METRIC_LINES_PER_EPOCH = 100
METRIC_LINE_BYTES = 130
COMPACTED_SHARE = 0.5
"""A finished run's metrics are also kept as parquet, at most about half the JSONL's size."""
SMALL_FILES_BYTES = 1 * MiB
"""train.log, config.json, run.json, status.json, feature_weights.json and the status reserve."""


def checkpoint_bytes(n_params: int, average: bool = False) -> int:
    """The tensors of one checkpoint: weights + optimizer moments (+ the raw weights beside a
    weight average)."""
    return n_params * BYTES_PER_VALUE * (1 + OPTIMIZER_STATES + (1 if average else 0))


@dataclass(frozen=True)
class RunSize:
    """Estimated bytes a run writes, in total and by part."""

    checkpoints: int | None
    """None when the parameter count is unknown (the model could not be built)."""
    predictions: int | None
    """None when the day plan is unknown (an unreadable dataset)."""
    metrics: int
    small_files: int = SMALL_FILES_BYTES

    @property
    def total(self) -> int:
        return (self.checkpoints or 0) + (self.predictions or 0) + self.metrics + self.small_files

    @property
    def detail(self) -> str:
        checkpoints = ("checkpoint size unknown" if self.checkpoints is None else
                       f"checkpoints ~{_mib(self.checkpoints)} (best.pt, last.pt and a temp copy while saving)")
        predictions = "predictions unknown" if self.predictions is None else f"predictions ~{_mib(self.predictions)}"
        return f"{checkpoints}, {predictions}, metrics ~{_mib(self.metrics)}, logs and small files ~{_mib(self.small_files)}"


def run_disk_bytes(eff: RunConfig, n_params: int | None, plan: DayPlan | None = None) -> RunSize:
    """The estimate for the effective config `eff` (see the module doc)."""
    one = None if n_params is None else checkpoint_bytes(n_params, eff.train.ema_decay > 0) + CHECKPOINT_OVERHEAD_BYTES
    predictions = None
    epochs, steps = sum(eff.train.phase_epochs), 0
    if plan is not None:
        rows = plan.stock_days(plan.val_days) + plan.stock_days(plan.test_days)
        predictions = rows * (PREDICTION_ROW_BYTES + PREDICTION_HORIZON_BYTES * len(eff.data.horizons))
        steps = plan.steps_per_epoch(max(1, eff.train.days_per_step)) * epochs
    lines = epochs * METRIC_LINES_PER_EPOCH + steps // eff.train.log_every_steps
    metrics = int(lines * METRIC_LINE_BYTES * (1 + COMPACTED_SHARE))
    checkpoints = None if one is None else one * (CHECKPOINT_COPIES + 1)
    return RunSize(checkpoints=checkpoints, predictions=predictions, metrics=metrics)


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"
