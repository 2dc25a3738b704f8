"""On the synthetic demo (planted structure) the model learns a real cross-sectional signal.

Observed on this 2-core machine (seed 0, 120 stocks x 400 days, hidden 16, lookback 10,
phases 1,0,3,0): best validation RankIC 0.062 with GAT, 0.064 without; the GAT-on vs GAT-off
margin is within noise at this size (see the issue notes), so only the absolute level, the GAT
gradient and the moving gate are asserted here.
"""

from __future__ import annotations

import json

import pytest

from atft_core.config import RunConfig
from atft_core.data.demo import make_demo
from atft_core.run_files import RunFiles
from atft_core.train import run_training


@pytest.fixture(scope="module")
def learning_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "demo.parquet"
    make_demo(out, n_stocks=120, n_days=400, seed=3)
    return out


def test_full_model_learns_the_planted_signal(learning_demo, tmp_path):
    cfg = RunConfig().replace(**{
        "data.path": str(learning_demo), "data.lookback": 10, "model.fan_top_k": 2, "model.hidden_size": 16,
        "model.encoder_heads": 2, "model.gat_heads": 2, "model.graph_corr_window": 40,
        "train.phase_epochs": (1, 0, 3, 0), "train.days_per_step": 4,
    })
    files = RunFiles(tmp_path / "run")
    assert run_training(cfg, files.root) == "completed"
    rows = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    series = lambda name: [r["value"] for r in rows if r["name"] == name]  # noqa: E731
    assert max(series("val/rank_ic")) > 0.03  # ~4 standard errors over ~60 validation days
    assert series("test/rank_ic")[0] > 0.0
    assert all(v > 0 for v in series("gat/grad_norm")[1:])  # GAT trains from phase 2 on
    alphas = series("gat/alpha")
    assert alphas[0] == pytest.approx(0.5) and abs(alphas[-1] - alphas[0]) > 1e-3
