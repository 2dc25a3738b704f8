"""On the synthetic demo (planted structure) the model learns a real cross-sectional signal, and
the GAT is what reaches the cross-stock part of it.

The demo's lead-lag signal (a stock's next-day return loads on its supply-chain partners' news of
today, see atft_core/data/demo.py) is in no stock's own features, only in its graph neighbours'.
So the graph here is the correlation top-k with k = the number of partners and no sector edges
(the demo's sectors are not where the signal travels).

Observed on this 2-core machine (120 stocks x 400 days, hidden 16, lookback 10, 1-day horizon,
phases 1,0,3,0, one trading day per step; data seed = training seed), best validation RankIC,
rerun 2026-11-26 after the dropout masks changed to `uniform >= p` (atft_core/nn/dropout.py):

    seed      0      1      2      3      4      5
    GAT on    0.105  0.090  0.133  0.085  0.080  0.112
    GAT off   0.041  0.031  0.081  0.028  0.019  0.030
    margin    0.065  0.059  0.052  0.057  0.061  0.083

The test split agreed on every seed (GAT on ahead by 0.027 to 0.089). One validation RankIC over
~60 days has a standard error of about 0.012, so a margin of 0.025 is about 1.5 standard errors of
a difference and half the smallest margin seen. The gate alpha moved by 0.001-0.005 from 0.5 at
some epoch of every GAT-on run. Rerun the per-seed comparison when the model
changes, and move the numbers here and GAT_MARGIN with it.
"""

from __future__ import annotations

import json

import pytest

from atft_core.config import RunConfig
from atft_core.data.demo import STOCKS_PER_CHAIN, make_demo
from atft_core.run_files import RunFiles
from atft_core.train import run_training

SEED = 3
GAT_MARGIN = 0.025
"""Best val RankIC of GAT on minus GAT off must exceed this (observed 0.052 to 0.083, above)."""


@pytest.fixture(scope="module")
def learning_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "demo.parquet"
    make_demo(out, n_stocks=120, n_days=400, seed=SEED)
    return out


def _config(demo, use_gat: bool) -> RunConfig:
    return RunConfig().replace(**{
        "data.path": str(demo), "data.lookback": 10, "data.horizons": (1,),
        "model.fan_top_k": 2, "model.hidden_size": 16, "model.encoder_heads": 2, "model.gat_heads": 2,
        "model.use_gat": use_gat, "model.graph_corr_window": 40,
        "model.graph_top_k": STOCKS_PER_CHAIN - 1, "model.graph_sector_edges": False,
        "train.phase_epochs": (1, 0, 3, 0), "train.days_per_step": 1, "runtime.seed": SEED,
    })


def _train(demo, root, use_gat: bool):
    """Metric name -> list of values of one training run."""
    files = RunFiles(root)
    assert run_training(_config(demo, use_gat), files.root) == "completed"
    rows = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    return lambda name: [r["value"] for r in rows if r["name"] == name]


@pytest.fixture(scope="module")
def gat_on(learning_demo, tmp_path_factory):
    return _train(learning_demo, tmp_path_factory.mktemp("gat_on") / "run", use_gat=True)


def test_full_model_learns_the_planted_signal(gat_on):
    assert max(gat_on("val/rank_ic")) > 0.03  # ~4 standard errors over ~60 validation days
    assert gat_on("test/rank_ic")[0] > 0.0
    assert all(v > 0 for v in gat_on("gat/grad_norm")[1:])  # GAT trains from phase 2 on
    alphas = gat_on("gat/alpha")
    # The gate starts at 0.5 and moves: by 0.001-0.005 at some epoch here (float32 noise is ~1e-7);
    # it oscillates, so the largest move is asserted, not the last.
    assert alphas[0] == pytest.approx(0.5) and max(abs(a - alphas[0]) for a in alphas) > 5e-4


def test_gat_beats_the_same_model_without_it(learning_demo, gat_on, tmp_path):
    gat_off = _train(learning_demo, tmp_path / "gat_off", use_gat=False)
    on, off = max(gat_on("val/rank_ic")), max(gat_off("val/rank_ic"))
    assert on - off > GAT_MARGIN, f"best val RankIC: GAT on {on:.3f}, off {off:.3f}"
