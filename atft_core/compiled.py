"""runtime.compile: torch.compile of the model ('model') or of forward + loss ('step').

Shapes. torch.compile specialises on tensor shapes, and a day batch's sizes (rows, stocks,
history steps, edges) change from step to step. The trainer therefore pads every batch to size
buckets when compiling (batching.DayBatcher(pad=True), `batching.bucket`: 8 sizes per doubling,
at most 12.5% more work), so each graph is compiled once per bucket combination and phase, and
compiles with ``dynamic=False`` (static shapes: what CUDA graphs would need too). Dynamo's
recompile limit (8 variants per function) is raised to RECOMPILE_LIMIT, so that the bucket
combinations of a long run stay compiled rather than fall back to eager. `compile_counts`
reports compiles, graphs and graph breaks (tests/test_compiled.py holds a tiny model to one
compile per batch shape, none when the shapes come again, and no graph break).

The encoder's LSTM needs ``torch._dynamo.config.allow_rnn`` (without it dynamo breaks the graph
around the LSTM). Validation and predictions run the eager model: they see the same weights.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch._dynamo

from atft_core.config import RunConfig

BACKEND = "inductor"
"""torch.compile's backend (tests/test_compiled.py uses 'eager': dynamo's graphs run as captured,
without the minutes of code generation a 2-core CPU needs)."""
RECOMPILE_LIMIT = 64
"""Compiled variants kept per function: bucket combinations x phases x train/eval, with room."""


def enable(cfg: RunConfig) -> bool:
    """Set dynamo up for `cfg` (process-wide); False when runtime.compile is 'off'."""
    if cfg.runtime.compile == "off":
        return False
    torch._dynamo.config.allow_rnn = True
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return True


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a module or function) through torch.compile with static shapes."""
    return torch.compile(fn, dynamic=False, backend=BACKEND)


def compile_counts() -> dict[str, int]:
    """Dynamo's process-wide counters: frames compiled (the first compile of the compiled
    function and every recompile: with one function and no graph break, recompiles are
    compiles - 1), graphs captured, graph breaks."""
    counters = torch._dynamo.utils.counters
    return {"compiles": int(counters["frames"].get("ok", 0)),
            "graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}
