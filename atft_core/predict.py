"""Predictions of a finished run's best checkpoint on any model-ready dataset.

    python -m atft_core.predict --run runs/<id> --dataset data/demo.parquet --out preds.parquet
    python -m atft_core.predict --run runs/<id> --dataset data/demo.parquet --date latest [--out ranked.csv]

The first form predicts every usable day and prints the metrics wherever targets are known.
The second ranks the stocks of one date (`latest` = the dataset's last date, or YYYY-MM-DD):
score per horizon, rank, decile and the quantile heads' interval; it needs no forward target,
so the newest date of a freshly built dataset, whose returns are not known yet, works.

The model is rebuilt from the config stored in the checkpoint (never from today's defaults)
and the dataset must carry the same feature columns.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from atft_core.allocator import keep_freed_memory
from atft_core.baselines import baseline_from_state
from atft_core.checkpoint import load_checkpoint
from atft_core.config import MODEL_KINDS, ConfigError, RunConfig
from atft_core.data.errors import DataError
from atft_core.data.panel import Panel, load_panel
from atft_core.data.schema import CODE, DATE, SECTOR
from atft_core.entry import run_cli
from atft_core.graph import GraphCache
from atft_core.inference import ModelPredictor, eligible_days, evaluate, targets_for
from atft_core.model import ATFTGATFAN, FAN_PHASE, GAT_PHASE
from atft_core.nn.fan import precompute_fan
from atft_core.predictions import write_predictions
from atft_core.run_files import RunFiles

DEEP_KIND = MODEL_KINDS[0]
N_DECILES = 10
LATEST = "latest"
HISTORY_MARGIN_DAYS = 5
"""Trading days loaded before a ranked date beyond what its windows need (holidays, gaps)."""
TOP_PRINTED = 20


class DailyGraphs(GraphCache):
    """Graphs rebuilt for every day: a ranked date uses the graph of the returns up to itself
    (training rebuilt it every `graph_rebuild_interval` days, counted from its panel's start)."""

    def anchor(self, t: int) -> int:
        return t


def _load_run(run_dir: Path) -> dict[str, Any]:
    files = RunFiles(Path(run_dir))
    if not files.best_checkpoint.is_file():
        raise FileNotFoundError(f"{files.root} has no checkpoints/best.pt: only a run that trained to a best "
                                "checkpoint can predict")
    return load_checkpoint(files.best_checkpoint)


def _config(state: dict[str, Any], dataset: Path, **dotted: Any) -> RunConfig:
    """The run's own config, pointed at `dataset` on the CPU; its splits play no part here."""
    return RunConfig.from_dict(state["config"]).replace(**{
        "data.path": str(dataset), "data.features": tuple(state["feature_names"]), "data.start": "", "data.end": "",
        "data.train_end": "", "data.val_end": "", "runtime.device": "cpu", "runtime.precision": "fp32", **dotted})


def _predictor(state: dict[str, Any], panel: Panel, cfg: RunConfig, graph_cls: type[GraphCache] = GraphCache
               ) -> Callable[..., np.ndarray]:
    """The run's model (or baseline) as a function of panel day indices -> [days, N, H]."""
    if state["kind"] != DEEP_KIND:
        baseline = baseline_from_state(state["baseline"])
        return lambda days, on_batch=None: baseline.predict(panel, days)
    model = ATFTGATFAN(cfg.model, len(panel.feature_names), len(cfg.data.horizons))
    model.load_state_dict(state["model"])
    phase = int(state["phase"])
    model.set_phase(phase)
    use_graph = phase >= GAT_PHASE and cfg.model.use_gat
    graphs = graph_cls(panel.returns, panel.valid, panel.sectors, cfg.model, torch.device("cpu")) if use_graph else None
    use_fan = phase >= FAN_PHASE and cfg.model.fan_top_k > 0
    fan = precompute_fan(panel.features, cfg.data.lookback, cfg.model.fan_top_k) if use_fan else None
    return ModelPredictor(model, panel, cfg, graphs, fan, torch.device("cpu"), contextlib.nullcontext)


def predict_run(run_dir: Path, dataset: Path, out: Path) -> dict[str, float | None]:
    """Write predictions of `run_dir`'s best checkpoint on `dataset` to `out`; returns metrics."""
    state = _load_run(run_dir)
    cfg = _config(state, dataset)
    panel = load_panel(cfg.data)
    days = eligible_days(panel, np.arange(len(panel.dates)), cfg)
    pred = _predictor(state, panel, cfg)(days)
    write_predictions(Path(out), panel, {"all": days}, {"all": pred}, cfg.data.horizons)
    return evaluate(pred, targets_for(panel, days), cfg.data.horizons, "predict")


# ---------------------------------------------------------------------------------------------
# Ranking one date


@dataclass
class Ranking:
    """The stocks of one date ranked by a run's score.

    `table`: rank (1 = highest score), Code, Sector33Code (when the dataset has it), decile
    (10 = highest scores), score_<h>d for every horizon, and for a deep run the quantile heads'
    q<pct>_<h>d (scores and quantiles are in the run's target units: with
    loss.target_normalization, a cross-sectionally normalised forward return).
    """

    run: str
    dataset: str
    date: dt.date
    dataset_last_date: dt.date
    horizon: int
    quantiles: tuple[float, ...]
    table: pl.DataFrame

    def interval_columns(self, horizon: int | None = None) -> tuple[str, str] | None:
        """(lowest, highest) quantile columns of a horizon, None for a run without quantile heads."""
        if not self.quantiles:
            return None
        h = horizon or self.horizon
        return quantile_column(self.quantiles[0], h), quantile_column(self.quantiles[-1], h)

    def to_text(self, top: int = TOP_PRINTED) -> str:
        """The first `top` rows as the CLI prints them, with a heading line."""
        head = (f"{Path(self.run).name}: {self.table.height} stocks on {self.date} ranked by score_{self.horizon}d"
                f" (dataset {Path(self.dataset).name}, last date {self.dataset_last_date})")
        with pl.Config(tbl_rows=top, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_width_chars=160):
            return f"{head}\n{self.table.head(top)}"


def quantile_column(q: float, horizon: int) -> str:
    return f"q{round(q * 100):02d}_{horizon}d"


def _parse_date(date: str, dates: list[dt.date], dataset: Path) -> dt.date:
    """`latest` or an ISO date that is one of the dataset's dates (DataError naming both)."""
    if date == LATEST:
        return dates[-1]
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise DataError(f"--date: expected '{LATEST}' or YYYY-MM-DD, got {date!r}") from None
    if day not in set(dates):
        earlier = [d for d in dates if d < day]
        hint = f"; the last one before it is {earlier[-1]}" if earlier else ""
        raise DataError(f"{day} is not a date of {dataset} (it has {dates[0]} .. {dates[-1]}){hint}")
    return day


def _history_start(dates: list[dt.date], day: dt.date, cfg: RunConfig) -> dt.date:
    """First date to load: enough trading days before `day` for the encoder's window (a batch
    reaches 2 (lookback - 1) days back), its chunk of days and the graph's return window."""
    need = max(2 * (cfg.data.lookback - 1) + cfg.train.days_per_step, cfg.model.graph_corr_window)
    return dates[max(0, dates.index(day) - need - HISTORY_MARGIN_DAYS)]


def rank_stocks(run_dir: Path, dataset: Path, date: str = LATEST, horizon: int | None = None) -> Ranking:
    """Rank the stocks of one `date` (LATEST or YYYY-MM-DD) of `dataset` by the run's score.

    Loads only the history the date needs. The day is predicted in a chunk of
    `train.days_per_step` days ending at it, as the trainer validates. Raises DataError (bad
    date, a date without enough history or stocks, a dataset without the run's features),
    FileNotFoundError (no best.pt) or ConfigError.
    """
    state = _load_run(run_dir)
    dataset = Path(dataset)
    cfg = _config(state, dataset)
    horizon = horizon or cfg.data.horizons[0]
    if horizon not in cfg.data.horizons:
        raise ConfigError(f"--horizon {horizon}: the run predicts {list(cfg.data.horizons)} days ahead")
    try:
        dates = pl.scan_parquet(dataset).select(DATE).unique().sort(DATE).collect()[DATE].to_list()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{dataset}: not a readable model-ready parquet ({exc})") from None
    if not dates:
        raise DataError(f"{dataset}: no rows")
    day = _parse_date(date, dates, dataset)
    cfg = cfg.replace(**{"data.start": _history_start(dates, day, cfg).isoformat(), "data.end": day.isoformat()})
    panel = load_panel(cfg.data)
    t = len(panel.dates) - 1
    usable = eligible_days(panel, np.arange(t + 1), cfg)
    if not len(usable) or usable[-1] != t:
        raise DataError(f"{day} in {dataset}: fewer than data.min_stocks_per_day={cfg.data.min_stocks_per_day} stocks "
                        f"with features, or less than data.lookback={cfg.data.lookback} days of history")
    chunk = usable[-cfg.train.days_per_step:]
    quantiles: dict[str, np.ndarray] = {}

    def keep_quantiles(output, batch) -> None:
        rows = batch.day.cpu().numpy() == len(chunk) - 1
        quantiles["stock"] = batch.stock.cpu().numpy()[rows]
        quantiles["values"] = output.quantiles.float().cpu().numpy()[rows]   # [S, H, Q]

    pred = _predictor(state, panel, cfg, DailyGraphs)(chunk, on_batch=keep_quantiles)[-1]   # [N, H]
    table = _table(panel, pred, quantiles, cfg, horizon, dataset, day)
    return Ranking(str(run_dir), str(dataset), day, dates[-1], horizon,
                   tuple(cfg.model.quantiles) if quantiles else (), table)


def _table(panel: Panel, pred: np.ndarray, quantiles: dict[str, np.ndarray], cfg: RunConfig, horizon: int,
           dataset: Path, day: dt.date) -> pl.DataFrame:
    """The ranked table of one day's predictions (see Ranking)."""
    h_index = list(cfg.data.horizons).index(horizon)
    stocks = np.nonzero(panel.valid[-1].cpu().numpy() & np.isfinite(pred[:, h_index]))[0]
    columns: dict[str, Any] = {CODE: np.asarray(panel.codes, dtype=object)[stocks]}
    for i, h in enumerate(cfg.data.horizons):
        columns[f"score_{h}d"] = pred[stocks, i]
    if quantiles:
        position = {s: k for k, s in enumerate(quantiles["stock"])}
        rows = np.array([position[s] for s in stocks], dtype=np.int64)
        for i, h in enumerate(cfg.data.horizons):
            for j, q in enumerate(cfg.model.quantiles):
                columns[quantile_column(q, h)] = quantiles["values"][rows, i, j]
    score = f"score_{horizon}d"
    table = pl.DataFrame(columns).with_columns(pl.col(CODE).cast(pl.Utf8)).sort(score, descending=True)
    n = table.height
    table = table.with_columns(
        pl.int_range(1, n + 1).alias("rank"),
        (((pl.col(score).rank("ordinal") - 1) * N_DECILES) // max(n, 1) + 1).cast(pl.Int64).alias("decile"),
    )
    sectors = _sectors(dataset, day)
    if sectors is not None:
        table = table.join(sectors, on=CODE, how="left")
    first = ["rank", CODE, *([SECTOR] if sectors is not None else []), "decile"]
    return table.select(first + [c for c in table.columns if c not in first])


def _sectors(dataset: Path, day: dt.date) -> pl.DataFrame | None:
    if SECTOR not in pl.scan_parquet(dataset).collect_schema().names():
        return None
    return (pl.scan_parquet(dataset).filter(pl.col(DATE) == day).select(CODE, pl.col(SECTOR).cast(pl.Utf8))
            .collect())


# ---------------------------------------------------------------------------------------------
# CLI


def _write_table(table: pl.DataFrame, out: Path) -> None:
    if out.suffix == ".csv":
        table.write_csv(out)
    elif out.suffix == ".parquet":
        table.write_parquet(out)
    else:
        raise DataError(f"--out {out}: use a .csv or .parquet file name")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atft_core.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder, e.g. runs/<id>")
    parser.add_argument("--dataset", required=True, help="model-ready parquet")
    parser.add_argument("--date", help=f"rank the stocks of one date: '{LATEST}' or YYYY-MM-DD (no forward "
                                       "target needed)")
    parser.add_argument("--horizon", type=int, help="with --date: the horizon (days) to rank by; default the run's first")
    parser.add_argument("--top", type=int, default=TOP_PRINTED, help="with --date: rows printed (the file has all)")
    parser.add_argument("--out", help="every day's predictions (.parquet; required without --date), or with --date "
                                      "the ranked table (.csv or .parquet)")
    args = parser.parse_args(argv)
    if args.date is None and not args.out:
        print("error: --out is required without --date", file=sys.stderr)
        return 2
    keep_freed_memory()
    try:
        if args.date is not None:
            ranking = rank_stocks(Path(args.run), Path(args.dataset), args.date, args.horizon)
            print(ranking.to_text(args.top))
            if args.out:
                _write_table(ranking.table, Path(args.out))
                print(f"wrote {args.out}")
            return 0
        values = predict_run(Path(args.run), Path(args.dataset), Path(args.out))
    except (ConfigError, DataError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in values.items() if not re.search(r"_\d+d$", k)}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
