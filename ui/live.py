"""Cached readers for the live parts of the pages.

Each cached function is a pure function of its arguments: the caller passes a *stamp* (size
and mtime of the files read), so a refresh that finds the files unchanged costs one `stat`
and no parsing, and a change in any file is a new cache key.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import streamlit as st

from atft_core import costs, evaluation, runs
from atft_core.run_files import RunFiles
from atft_core.runs.jobs import Job, ended_jobs, list_jobs
from atft_core.sweep import trials as sweep_trials

CACHE_ENTRIES = 64


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st_ = os.stat(path)
    except OSError:
        return (-1, 0)
    return (st_.st_size, st_.st_mtime_ns)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _metrics(runs_dir: str, run_ids: tuple[str, ...], stamps: tuple) -> pl.DataFrame:
    return runs.query_metrics(runs_dir, list(run_ids))


def metrics(runs_dir: Path, run_ids: list[str] | tuple[str, ...]) -> pl.DataFrame:
    """Long metric table of the runs, re-read only when a metrics file changed."""
    ids = tuple(run_ids)
    stamps = tuple(_stamp(RunFiles(Path(runs_dir) / r).metrics) for r in ids)
    return _metrics(str(runs_dir), ids, stamps)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _evaluation(run_dir: str, window: int, horizon: int | None, cost_bps: tuple[float, ...], with_sectors: bool,
                stamps: tuple) -> dict:
    return evaluation.evaluate_run(run_dir, window, horizon, cost_bps, with_sectors)


def run_evaluation(runs_dir: Path, run_id: str, window: int, horizon: int | None = None,
                   cost_bps: tuple[float, ...] = costs.DEFAULT_COST_BPS, with_sectors: bool = True) -> dict:
    """{split: Evaluation} of a finished run, recomputed only when predictions.parquet, the
    run's config or its dataset (the sectors) changes."""
    files = RunFiles(Path(runs_dir) / run_id)
    dataset = evaluation.run_dataset(files.root) if with_sectors else None
    stamps = (_stamp(files.predictions), _stamp(files.config), _stamp(dataset) if dataset else None)
    return _evaluation(str(files.root), window, horizon, tuple(cost_bps), with_sectors, stamps)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _paired(runs_dir: str, run_ids: tuple[str, ...], reference: str, split: str, horizon: int,
            stamps: tuple) -> pl.DataFrame:
    return evaluation.paired_comparison(runs_dir, list(run_ids), reference, split, horizon)


def _prediction_stamps(runs_dir: Path, run_ids) -> tuple:
    return tuple(_stamp(RunFiles(Path(runs_dir) / r).predictions) for r in run_ids)


def paired_comparison(runs_dir: Path, run_ids: list[str], reference: str, split: str, horizon: int) -> pl.DataFrame:
    """`evaluation.paired_comparison`, recomputed only when one of the predictions files changes."""
    ids = tuple(run_ids)
    return _paired(str(runs_dir), ids, reference, split, horizon, _prediction_stamps(runs_dir, (*ids, reference)))


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _paired_costs(runs_dir: str, run_id: str, reference: str, split: str, horizon: int,
                  cost_bps: tuple[float, ...], stamps: tuple) -> pl.DataFrame:
    return evaluation.paired_costs(runs_dir, run_id, reference, split, horizon, cost_bps)


def paired_costs(runs_dir: Path, run_id: str, reference: str, split: str, horizon: int,
                 cost_bps: tuple[float, ...]) -> pl.DataFrame:
    """`evaluation.paired_costs`, recomputed only when one of the two predictions files changes."""
    return _paired_costs(str(runs_dir), run_id, reference, split, horizon, tuple(cost_bps),
                         _prediction_stamps(runs_dir, (run_id, reference)))


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _fitted_baseline(run_dir: str, stamp: tuple) -> dict | None:
    return evaluation.fitted_baseline(run_dir)


def fitted_baseline(runs_dir: Path, run_id: str) -> dict | None:
    """What a baseline run fitted (from best.pt), re-read only when the checkpoint changes."""
    files = RunFiles(Path(runs_dir) / run_id)
    return _fitted_baseline(str(files.root), _stamp(files.best_checkpoint))


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _dataset_summary(path: str, stamp: tuple):
    from atft_core.data.validate import validate_dataset

    return validate_dataset(path)


def dataset_summary(path: str | Path):
    """(DatasetSummary, None) or (None, error text) for a model-ready parquet."""
    from atft_core.data.errors import DataError

    try:
        return _dataset_summary(str(path), _stamp(Path(path))), None
    except (DataError, OSError) as exc:
        return None, str(exc)


def queue_steps(runs_dir: Path, ended: int = 3) -> tuple[list[Job], list[Job]]:
    """(the queue's live steps that are not a run's training, i.e. ensemble steps; the `ended`
    most recent ended jobs of any kind), for the sidebar."""
    return [j for j in list_jobs(runs_dir) if j.kind != "train"], ended_jobs(runs_dir, last=ended)[-ended:]


def running_runs(runs_dir: Path) -> list[runs.RunSummary]:
    """Runs that are queued or running now (state inferred from files + process check)."""
    return [r for r in runs.list_runs(runs_dir, compact=False) if r.live]


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _stocks_per_day(path: str, stamp: tuple) -> pl.DataFrame:
    return pl.scan_parquet(path).group_by("Date").agg(pl.len().alias("n_stocks")).sort("Date").collect()


def stocks_per_day(path: str | Path) -> pl.DataFrame:
    """Date, n_stocks of a dataset (for the coverage chart)."""
    return _stocks_per_day(str(path), _stamp(Path(path)))


def process_usage(pid: int | None) -> dict:
    """CPU % (since the last call for this pid), resident memory and threads of a run's process tree."""
    import psutil

    try:
        proc = _PROCS.get(pid) or psutil.Process(pid)
        _PROCS[pid] = proc
        tree = [proc, *proc.children(recursive=True)]
        return {
            "cpu %": round(sum(p.cpu_percent(None) for p in tree), 1),
            "RSS (MB)": round(sum(p.memory_info().rss for p in tree) / 2**20, 1),
            "threads": sum(p.num_threads() for p in tree),
        }
    except (psutil.Error, TypeError, ValueError):
        _PROCS.pop(pid, None)
        return {"cpu %": None, "RSS (MB)": None, "threads": None}


_PROCS: dict = {}
"""psutil.Process handles kept between refreshes: cpu_percent measures since the previous call."""


@st.cache_data(max_entries=16, show_spinner=False)
def _ranking(run_dir: str, dataset: str, date: str, horizon: int | None, stamps: tuple):
    from atft_core.predict import rank_stocks

    return rank_stocks(Path(run_dir), Path(dataset), date, horizon)


def ranking(runs_dir: Path, run_id: str, dataset: str | Path, date: str, horizon: int | None):
    """`predict.rank_stocks` of a run on a dataset, recomputed only when best.pt or the dataset changes."""
    files = RunFiles(Path(runs_dir) / run_id)
    return _ranking(str(files.root), str(dataset), date, horizon, (_stamp(files.best_checkpoint), _stamp(Path(dataset))))


@st.cache_resource(show_spinner=False)
def machine_history():
    """The server's one `monitor.MachineHistory`, sampling since the first page that asked for it."""
    from atft_core.monitor import MachineHistory

    return MachineHistory().start()


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _importances(name: str, url: str, complete: int) -> dict[str, float] | None:
    return sweep_trials.importances(name, url)


def importances(view: sweep_trials.StudyView, url: str) -> dict[str, float] | None:
    """A study's parameter importances, computed again only when another trial completes."""
    return _importances(view.name, url, view.counts["complete"])
