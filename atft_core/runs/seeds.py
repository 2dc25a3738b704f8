"""Seed groups: N runs of one config with seeds seed, seed + 1, ..., trained one after another,
then combined into an ensemble run (`atft_core.runs.ensemble`).

    launch_seeds(cfg, runs_dir, seeds=3, name="", ...) -> run ids, in training order

Run k's trainer is started at once with ``--after <run k-1>`` and waits, queued, in
`wait_for_run`; the last one also gets ``--ensemble-of <the others>`` and calls `combine_group`
once it has finished.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from atft_core.config import RunConfig, merge_overrides
from atft_core.paths import clean_text
from atft_core.run_files import RunFiles, StatusFile, read_json
from atft_core.runs.ensemble import FINISHED, build_ensemble
from atft_core.runs.launch import LaunchError, launch_run
from atft_core.runs.store import DEFAULT_RUNS_DIR, LIVE_STATES, RunError, run_state

log = logging.getLogger(__name__)

MAX_SEEDS = 20
"""Most runs one seed group launches."""


def launch_seeds(cfg: RunConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR, seeds: int = 3, name: str = "",
                 tags: Iterable[str] = (), force: bool = False, requested: dict | None = None, *,
                 probes: Any = None, data_roots: Sequence[Path | str] | None = None) -> list[str]:
    """Launch a seed group: `seeds` runs of `cfg` with ``runtime.seed`` = seed, seed + 1, ...,
    trained one after another (each trainer waits, queued, for the run before it to end), the
    last one combining every run of the group that finished into an ensemble run
    (`atft_core.runs.ensemble`). Returns the run ids in training order.

    The pre-flight check runs once, before anything starts, for all of them (disk for every
    run; memory for one, since only one trains at a time). Every run carries the tag
    ``seeds-<group id>`` and run.json's ``group``, so the Compare page finds the group.
    """
    if not 2 <= seeds <= MAX_SEEDS:
        raise LaunchError(f"a seed group has 2 to {MAX_SEEDS} runs, got {seeds}")
    group_id = secrets.token_hex(3)
    name = clean_text(name)
    tags = [*tags, f"seeds-{group_id}"]
    ids: list[str] = []
    for i in range(seeds):
        seed = cfg.runtime.seed + i
        member_requested = merge_overrides(requested or cfg.to_dict(), {"runtime.seed": seed})
        group = {"id": group_id, "name": name or f"seeds {group_id}", "size": seeds,
                 "after": ids[-1] if ids else None, "ensemble_of": list(ids) if i == seeds - 1 else []}
        ids.append(launch_run(cfg.replace(**{"runtime.seed": seed}), runs_dir, f"{name} seed {seed}".strip(), tags,
                              force, member_requested, probes=probes, data_roots=data_roots, group=group))
    return ids


def wait_for_run(run_dir: Path, stop_event: threading.Event, poll_seconds: float) -> bool:
    """Block until the run in `run_dir` is no longer queued or running (finished, failed,
    stopped, crashed or deleted); False if `stop_event` is set first."""
    log.info("queued: waiting for run %s to finish", run_dir.name)
    while True:
        try:
            if run_state(run_dir.parent, run_dir.name).status not in LIVE_STATES:
                return True
        except RunError:  # deleted meanwhile: nothing to wait for
            return True
        if stop_event.wait(poll_seconds):
            return False


def combine_group(files: RunFiles, earlier: Sequence[str], status: StatusFile) -> None:
    """Combine this run and the earlier runs of its group that finished into an ensemble run;
    a failure is logged and shown as a warning, never fails the run that trained fine."""
    runs_dir = files.root.parent
    members = []
    for run_id in [*earlier, files.root.name]:
        try:
            if run_state(runs_dir, run_id).status in FINISHED:
                members.append(run_id)
        except RunError:
            continue
    info = read_json(files.run_info) or {}
    if len(members) < 2:
        message = f"seed group: {len(members)} of {len(earlier) + 1} runs finished; no ensemble built"
        status.warn(message)
        return
    try:
        ensemble_id = build_ensemble(runs_dir, members, name=f"{info.get('group_name') or 'seeds'} ensemble",
                                     tags=info.get("tags") or ())
    except (RunError, OSError) as exc:
        status.warn(f"seed group: no ensemble built: {exc}")
        return
    log.info("seed group: ensemble run %s of %s", ensemble_id, ", ".join(members))
    status.set(ensemble=ensemble_id)
