"""Seed groups: N runs of one config with seeds seed, seed + 1, ..., then their ensemble.

    launch_seeds(cfg, runs_dir, seeds=3, name="", ...) -> run ids, in seed order

The runs are ordinary queue jobs (`atft_core.runs.queue`): with one slot they train one after
another, with more they train side by side as memory allows. An ensemble step queued after them
combines every run of the group that finished (two or more) into an ensemble run named
"<name> ensemble" (`atft_core.runs.ensemble`); what became of it is the step's job reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from atft_core.config import RunConfig, merge_overrides
from atft_core.paths import clean_text
from atft_core.runs.launch import LaunchError
from atft_core.runs.queue import launch_run, submit_ensemble, train_job_id
from atft_core.runs.store import DEFAULT_RUNS_DIR

MAX_SEEDS = 20
"""Most runs one seed group launches."""


def launch_seeds(cfg: RunConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR, seeds: int = 3, name: str = "",
                 tags: Iterable[str] = (), force: bool = False, requested: dict | None = None, *,
                 probes: Any = None, data_roots: Sequence[Path | str] | None = None) -> list[str]:
    """Queue a seed group: `seeds` runs of `cfg` with ``runtime.seed`` = seed, seed + 1, ..., and
    an ensemble step after them. Returns the run ids.

    The pre-flight check runs once, before anything is queued: disk for every run, memory for
    one (the queue admits each run only when its memory fits beside the running ones). Every run
    carries the tag ``seeds-<group id>`` and run.json's ``group``, so the Compare page finds the group.
    """
    if not 2 <= seeds <= MAX_SEEDS:
        raise LaunchError(f"a seed group has 2 to {MAX_SEEDS} runs, got {seeds}")
    group_id = secrets.token_hex(3)
    name = clean_text(name)
    group_name = name or f"seeds {group_id}"
    tags = [*tags, f"seeds-{group_id}"]
    ids: list[str] = []
    for i in range(seeds):
        seed = cfg.runtime.seed + i
        member_requested = merge_overrides(requested or cfg.to_dict(), {"runtime.seed": seed})
        ids.append(launch_run(cfg.replace(**{"runtime.seed": seed}), runs_dir, f"{name} seed {seed}".strip(), tags,
                              force, member_requested, info={"group": group_id, "group_name": group_name},
                              probes=probes, data_roots=data_roots, preflight_runs=seeds if i == 0 else 0))
    submit_ensemble(runs_dir, [train_job_id(runs_dir, run_id) for run_id in ids], ids,
                    name=f"{group_name} ensemble", tags=tags)
    return ids
