"""A trial's value from its run's metrics: the best epoch of one validation metric.

    epoch_values(runs_dir, run_id, metric) -> [(epoch, value)]     # as logged, in epoch order
    best_so_far(values, direction) -> [(epoch, best up to it)]     # what the pruner is told
    best_value(values, direction) -> float | None                  # the trial's value

Read side: metrics come from `atft_core.runs.store.query_metrics` (the same reader as the Run page).
"""

from __future__ import annotations

import math
from pathlib import Path

from atft_core.runs.store import query_metrics


def epoch_values(runs_dir: Path | str, run_id: str, metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of `metric` for every epoch that logged a finite value, in epoch order."""
    frame = query_metrics(runs_dir, [run_id], [metric])
    pairs = {}
    for epoch, value in zip(frame["epoch"].to_list(), frame["value"].to_list()):
        if epoch is not None and value is not None and math.isfinite(value):
            pairs[int(epoch)] = float(value)   # a resumed run may log an epoch again: the later one counts
    return sorted(pairs.items())


def best_so_far(values: list[tuple[int, float]], direction: str) -> list[tuple[int, float]]:
    """The running best (max, or min when minimising) after each epoch."""
    better = max if direction == "maximize" else min
    out, best = [], None
    for epoch, value in values:
        best = value if best is None else better(best, value)
        out.append((epoch, best))
    return out


def best_value(values: list[tuple[int, float]], direction: str) -> float | None:
    """The best value over the epochs (None when nothing was logged)."""
    running = best_so_far(values, direction)
    return running[-1][1] if running else None
