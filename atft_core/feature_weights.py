"""Which inputs the deep model lets through: the temporal encoder's variable-selection weights.

The encoder weighs the F inputs of every stock-day with a softmax (`TemporalEncoder`), so the
weights of a row sum to 1 and uniform selection is 1/F. The trainer averages the weights of
the best checkpoint over the validation stock-days and writes them to the run folder's
``feature_weights.json``; the Run page draws them. A weight says how much of an input the
model passes on, not whether the input helps or in which direction: a heavily weighted input
can carry a bet that loses (see bench/quality_analysis.md on the volatility bet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import polars as pl
import torch

from atft_core.run_files import read_json, write_json_atomic


class FeatureWeights:
    """Running mean of `ModelOutput.feature_weights` ([rows, F]) over batches."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.rows = 0

    def add(self, output: Any, batch: Any = None) -> None:
        """Accumulate one batch (the signature of `ModelPredictor`'s ``on_batch``)."""
        weights = output.feature_weights.detach().float()
        summed = weights.sum(dim=0).cpu()
        self.total = summed if self.total is None else self.total + summed
        self.rows += weights.shape[0]

    def mean(self) -> list[float]:
        if self.total is None or self.rows == 0:
            return []
        return (self.total / self.rows).tolist()

    def write(self, path: Path, feature_names: Sequence[str], split: str, epoch: int | None) -> None:
        """Write the means with their feature names (nothing when no row was seen)."""
        means = self.mean()
        if not means:
            return
        if len(means) != len(feature_names):
            raise ValueError(f"feature weights: {len(means)} weights for {len(feature_names)} features")
        write_json_atomic(path, {"split": split, "best_epoch": epoch, "rows": self.rows,
                                 "features": list(feature_names), "mean_weight": means})


def read_feature_weights(path: Path) -> tuple[pl.DataFrame, dict[str, Any]] | None:
    """(feature, mean_weight sorted from the highest, uniform = 1/F; the file's other facts),
    or None when the run has no such file (a baseline, an ensemble, an unfinished run)."""
    saved = read_json(Path(path))
    if not saved or not saved.get("features"):
        return None
    frame = pl.DataFrame({"feature": saved["features"], "mean_weight": saved["mean_weight"]})
    facts = {k: v for k, v in saved.items() if k not in ("features", "mean_weight")}
    facts["uniform"] = 1.0 / frame.height
    return frame.sort("mean_weight", descending=True), facts
