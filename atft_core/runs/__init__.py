"""The run machinery: one run folder per training run, read and written by these modules.

Read side (imports nothing of the write side; what this package itself exports)::

    store      state inference (`run_state`, `list_runs` -> RunSummary), DuckDB metric queries
               (`query_metrics`), `log_tail`, `list_checkpoints`
    jobs       the job queue's records as readers see them (`list_jobs`, `ended_jobs`)

Write side (may import the read side, never the reverse)::

    launch     create a run folder; start / stop one run's trainer; delete, tag and note a run
    queue      the job queue every run goes through: `launch_run`, `resume_run`, slots, memory
               admission, the dispatcher process
    seeds      seed groups: N queued seeds, then an ensemble step
    ensemble   an ensemble run of finished runs (per-date mean of z-scored predictions)

`python -m atft_core.runs ...` is the command line (`atft_core.runs.cli`).
"""

from atft_core.runs.store import (DEFAULT_RUNS_DIR, ENSEMBLE_KIND, LAUNCH_CONFIG, LIVE_STATES, RANK_IC_METRIC,
                                  CheckpointInfo, RunError, RunSummary, infer_state, list_checkpoints, list_runs,
                                  log_tail, process_alive, query_metrics, run_folder, run_state)

__all__ = ["DEFAULT_RUNS_DIR", "ENSEMBLE_KIND", "LAUNCH_CONFIG", "LIVE_STATES", "RANK_IC_METRIC", "CheckpointInfo",
           "RunError", "RunSummary", "infer_state", "list_checkpoints", "list_runs", "log_tail", "process_alive",
           "query_metrics", "run_folder", "run_state"]
