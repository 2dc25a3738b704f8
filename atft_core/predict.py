"""Predictions of a finished run's best checkpoint on any model-ready dataset.

    python -m atft_core.predict --run runs/<id> --dataset data/demo.parquet --out preds.parquet

The model is rebuilt from the config stored in the checkpoint (never from today's defaults),
the dataset must carry the same feature columns, and metrics are printed per horizon wherever
targets are known.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from atft_core.allocator import keep_freed_memory
from atft_core.baselines import baseline_from_state
from atft_core.checkpoint import load_checkpoint
from atft_core.config import ConfigError, RunConfig
from atft_core.data.errors import DataError
from atft_core.data.panel import load_panel
from atft_core.graph import GraphCache
from atft_core.inference import ModelPredictor, eligible_days, evaluate, targets_for
from atft_core.model import ATFTGATFAN, FAN_PHASE, GAT_PHASE
from atft_core.nn.fan import precompute_fan
from atft_core.predictions import write_predictions
from atft_core.run_files import RunFiles


def predict_run(run_dir: Path, dataset: Path, out: Path) -> dict[str, float | None]:
    """Write predictions of `run_dir`'s best checkpoint on `dataset` to `out`; returns metrics."""
    files = RunFiles(Path(run_dir))
    state = load_checkpoint(files.best_checkpoint)
    cfg = RunConfig.from_dict(state["config"]).replace(**{
        "data.path": str(dataset), "data.features": tuple(state["feature_names"]),
        "data.start": "", "data.end": "", "runtime.device": "cpu", "runtime.precision": "fp32",
    })
    panel = load_panel(cfg.data)
    days = eligible_days(panel, np.arange(len(panel.dates)), cfg)
    if state["kind"] == "atft_gat_fan":
        model = ATFTGATFAN(cfg.model, len(panel.feature_names), len(cfg.data.horizons))
        model.load_state_dict(state["model"])
        phase = int(state["phase"])
        model.set_phase(phase)
        use_graph = phase >= GAT_PHASE and cfg.model.use_gat
        graphs = GraphCache(panel.returns, panel.valid, panel.sectors, cfg.model, torch.device("cpu")) if use_graph else None
        use_fan = phase >= FAN_PHASE and cfg.model.fan_top_k > 0
        fan = precompute_fan(panel.features, cfg.data.lookback, cfg.model.fan_top_k) if use_fan else None
        predictor = ModelPredictor(model, panel, cfg, graphs, fan, torch.device("cpu"), contextlib.nullcontext)
    else:
        baseline = baseline_from_state(state["baseline"])
        predictor = lambda d: baseline.predict(panel, d)  # noqa: E731
    pred = predictor(days)
    write_predictions(Path(out), panel, {"all": days}, {"all": pred}, cfg.data.horizons)
    return evaluate(pred, targets_for(panel, days), cfg.data.horizons, "predict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atft_core.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder, e.g. runs/<id>")
    parser.add_argument("--dataset", required=True, help="model-ready parquet")
    parser.add_argument("--out", required=True, help="output parquet")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        values = predict_run(Path(args.run), Path(args.dataset), Path(args.out))
    except (ConfigError, DataError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in values.items() if not re.search(r"_\d+d$", k)}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
