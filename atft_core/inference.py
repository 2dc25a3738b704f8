"""Predictions over whole trading days, shared by validation, `predict` and the app.

Both the deep model and the baselines are wrapped as a `Predictor`: something that maps a set
of panel day indices to a `[days, stocks, horizons]` array (NaN where a stock has no
prediction). Metrics are then computed per date by `atft_core.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from atft_core import metrics
from atft_core.batching import DayBatcher
from atft_core.config import RunConfig
from atft_core.nn.fan import FanInputs
from atft_core.plan import usable_days


class Predictor(Protocol):
    def __call__(self, day_indices: np.ndarray) -> np.ndarray:  # [len(days), N, H]
        ...


def eligible_days(panel, days: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """Days with a full lookback window and at least `min_stocks_per_day` valid stocks
    (`plan.usable_days`, which the pre-flight applies to the dataset's dates)."""
    return usable_days(days, panel.valid.sum(dim=1).cpu().numpy(), cfg.data.lookback, cfg.data.min_stocks_per_day)


@dataclass
class ModelPredictor:
    """Runs the deep model over chunks of whole days, without gradients.

    Chunks are `train.days_per_step` consecutive entries of the given days, as in training, so
    the encoder's recurrence has seen the same context it was trained with.
    """

    model: torch.nn.Module
    panel: object
    cfg: RunConfig
    graphs: object | None
    fan: FanInputs | None
    device: torch.device
    autocast: Callable[[], object]

    def __call__(self, day_indices: np.ndarray,
                 on_batch: Callable[[object, object], None] | None = None) -> np.ndarray:
        """Point predictions [days, N, H]; `on_batch(output, batch)` sees every chunk (the
        trainer computes its validation loss there, in the same pass)."""
        n_days, n_stocks = len(day_indices), self.panel.valid.shape[1]
        out = np.full((n_days, n_stocks, len(self.cfg.data.horizons)), np.nan, dtype=np.float64)
        chunk = self.cfg.train.days_per_step
        batcher = DayBatcher(self.panel, self.cfg.data.lookback, self.graphs, self.device, self.fan)
        points, rows = [], []
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for start in range(0, n_days, chunk):
                batch = batcher(np.asarray(day_indices[start:start + chunk]))
                with self.autocast():
                    output = self.model(batch)
                if on_batch is not None:
                    on_batch(output, batch)
                points.append(output.point.float())
                day, stock = batch.host_rows
                rows.append((day + start, stock))
        self.model.train(was_training)
        if points:  # one copy back to the host for the whole pass
            out[np.concatenate([d for d, _ in rows]), np.concatenate([s for _, s in rows])] = torch.cat(points).cpu().numpy()
        return out


def targets_for(panel, day_indices: np.ndarray) -> np.ndarray:
    """`[len(days), N, H]` float64 targets, NaN where unknown or the stock is invalid."""
    idx = torch.as_tensor(day_indices, dtype=torch.long)
    targets = panel.targets[idx].double().cpu().numpy()
    valid = panel.valid[idx].cpu().numpy()
    targets[~valid] = np.nan
    return targets


def evaluate(pred: np.ndarray, target: np.ndarray, horizons: tuple[int, ...], prefix: str) -> dict[str, float | None]:
    """Per-date metrics for every horizon: `<prefix>/<key>` for the first, `<prefix>/<key>_<h>d` for all."""
    values: dict[str, float | None] = {}
    for h_index, horizon in enumerate(horizons):
        p, t = pred[..., h_index], target[..., h_index]
        mask = np.isfinite(p) & np.isfinite(t)
        summary = metrics.summarize(p, t, mask)
        for key, value in summary.items():
            if key == "n_days":
                continue
            values[f"{prefix}/{key}_{horizon}d"] = value
            if h_index == 0:
                values[f"{prefix}/{key}"] = value
    return values
