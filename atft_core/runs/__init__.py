"""The run machinery: one run folder per training run, read and written by these modules.

Read side (imports nothing of the write side; what this package itself exports)::

    store      state inference (`run_state`, `list_runs` -> RunSummary), DuckDB metric queries
               (`query_metrics`), `log_tail`, `list_checkpoints`

Write side (may import the read side, never the reverse)::

    launch     start / stop / resume / delete one run's trainer; tag and note a run
    seeds      seed groups: N seeds trained one after another, then an ensemble
    ensemble   an ensemble run of finished runs (per-date mean of z-scored predictions)

`python -m atft_core.runs ...` is the command line (`atft_core.runs.cli`).
"""

from atft_core.runs.store import (DEFAULT_RUNS_DIR, ENSEMBLE_KIND, LAUNCH_CONFIG, LIVE_STATES, RANK_IC_METRIC,
                                  CheckpointInfo, RunError, RunSummary, infer_state, list_checkpoints, list_runs,
                                  log_tail, process_alive, query_metrics, run_folder, run_state)

__all__ = ["DEFAULT_RUNS_DIR", "ENSEMBLE_KIND", "LAUNCH_CONFIG", "LIVE_STATES", "RANK_IC_METRIC", "CheckpointInfo",
           "RunError", "RunSummary", "infer_state", "list_checkpoints", "list_runs", "log_tail", "process_alive",
           "query_metrics", "run_folder", "run_state"]
