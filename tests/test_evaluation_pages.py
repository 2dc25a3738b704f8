"""AppTest of the evaluation sections: intervals, trading costs and breakdowns on the Run page,
the comparison with a baseline there, the baseline / ensemble page, Compare after costs.

Runs are real: two baselines trained on the 40-stock demo (seconds), an ensemble of them, and a
"deep" run whose folder is a copy of the ridge run relabelled as the deep model, with the
metrics a trainer logs (training a deep model here would only cost time: the pages read files).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from atft_core.config import RunConfig
from atft_core.runs.ensemble import build_ensemble
from atft_core.run_files import MetricsWriter, RunFiles, read_json, write_json_atomic
from atft_core.train import run_training

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 90


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from atft_core.data.demo import make_demo

    root = tmp_path_factory.mktemp("eval_pages")
    data, runs = root / "data", root / "runs"
    data.mkdir()
    make_demo(data / "demo.parquet", n_stocks=40, n_days=260, seed=0)
    base = RunConfig().replace(**{"data.path": str(data / "demo.parquet"), "data.lookback": 5, "model.fan_top_k": 2,
                                  "data.horizons": (1, 5)})
    for kind in ("ridge", "reversal_1d"):
        assert run_training(base.replace(**{"model.kind": kind}), runs / kind) == "completed"
    deep = RunFiles(runs / "deep")
    shutil.copytree(runs / "ridge", deep.root)
    deep.best_checkpoint.unlink()
    saved = read_json(deep.config)
    saved["config"]["model"]["kind"] = "atft_gat_fan"
    write_json_atomic(deep.config, saved)
    with MetricsWriter(deep.metrics) as writer:
        writer.log(epoch=2, step=20, phase=1, values={"val/rank_ic": 0.02, "train/loss": 1.0})
    build_ensemble(runs, ["ridge", "reversal_1d"], name="blend")
    return data, runs


@pytest.fixture
def dirs(trained, monkeypatch):
    data, runs = trained
    monkeypatch.setenv("ATFT_DATA_DIR", str(data))
    monkeypatch.setenv("ATFT_RUNS_DIR", str(runs))
    monkeypatch.chdir(REPO)
    return data, runs


def run_page(run_id: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    return at.switch_page("app_pages/run.py").run()


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def frame_with(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_run_page_shows_intervals_costs_and_breakdowns(dirs):
    at = run_page("deep")
    no_exceptions(at)
    assert [t.label for t in at.tabs] == ["Validation", "Test"]
    markdown = " ".join(texts(at, "markdown"))
    assert "**Validation** (1d, " in markdown and "mean daily RankIC 0." in markdown and " [" in markdown
    assert "long-short Sharpe (gross, 1-day books)" in markdown
    table = frame_with(at, "cost per side (bp)")
    assert table["cost per side (bp)"].tolist() == [0.0, 5.0, 10.0, 20.0]
    assert table["net return (bp/day)"].is_monotonic_decreasing and table["95% interval"].str.startswith("[").all()
    labels = [m.label for m in at.metric]
    assert labels.count("Turnover per day") == 2 and labels.count("Break-even cost") == 2
    assert any("bp per side" in m.value for m in at.metric if m.label == "Break-even cost")
    years = frame_with(at, "mean RankIC")
    assert "net return at 10 bp (bp/day)" in years.columns and "95% interval" in years.columns
    sectors = frame_with(at, "share of long leg (%)")
    assert len(sectors) > 1 and "net contribution at 10 bp (bp/day)" in sectors.columns
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2 * 6            # per split: RankIC, cumulative net, deciles, 2 heatmaps, sectors
    assert any("1-day books" in c for c in texts(at, "caption"))


def test_cost_levels_and_horizon_are_settings_of_the_page(dirs):
    at = run_page("deep")
    at.text_input(key="eval_costs").set_value("0, 50").run()
    no_exceptions(at)
    assert frame_with(at, "cost per side (bp)")["cost per side (bp)"].tolist() == [0.0, 50.0]
    assert at.selectbox(key="eval_cost").options == ["0 bp", "50 bp"]
    at.text_input(key="eval_costs").set_value("5, abc").run()
    assert any(e.startswith("costs: 'abc' is not a number") for e in texts(at, "error"))
    assert len(frame_with(at, "cost per side (bp)")) == 4           # the defaults meanwhile
    at.text_input(key="eval_costs").set_value("0, 5, 10, 20").run()
    at.selectbox(key="eval_horizon").set_value(5).run()
    no_exceptions(at)
    assert "**Test** (5d, " in " ".join(texts(at, "markdown"))
    assert any("5-day books" in c and "sqrt(252/5)" in c for c in texts(at, "caption"))


def test_run_page_compares_with_a_chosen_baseline(dirs):
    at = run_page("deep")
    choice = at.selectbox(key="eval_reference")
    assert choice.options == ["reversal_1d (reversal_1d)", "ridge (ridge)", "blend (ensemble)"]    # baselines first
    paired = frame_with(at, "paired t")
    assert paired.iloc[0]["common days"] > 10 and paired.iloc[0]["95% interval"].startswith("[")
    after = frame_with(at, "wins")
    assert after["cost per side (bp)"].tolist() == [0.0, 5.0, 10.0, 20.0]
    choice.set_value("ridge").run()            # the deep run is a copy of ridge: nothing between them
    after = frame_with(at, "wins")
    assert (after["difference (bp/day)"] == 0).all() and after["wins"].str.startswith("undecided").all()
    at.radio(key="eval_split").set_value("test").run()
    no_exceptions(at)


@pytest.mark.parametrize("run_id, kind", [("ridge", "ridge"), ("reversal_1d", "reversal_1d")])
def test_baseline_runs_get_a_page_of_their_own(dirs, run_id, kind):
    at = run_page(run_id)
    no_exceptions(at)
    assert [m.value for m in at.metric if m.label == "Kind"] == [kind]
    assert not [b for b in at.button if b.label in ("Resume", "Stop")]
    assert not [c for c in texts(at, "caption") if "not logged yet" in c or "logged for" in c]
    assert not [m for m in at.metric if m.label in ("Epoch", "Phase")]
    markdown = " ".join(texts(at, "markdown"))
    assert ("**Ridge** on" in markdown) if kind == "ridge" else ("**Score** = `" in markdown)
    assert [t.label for t in at.tabs] == ["Validation", "Test"] and frame_with(at, "share of long leg (%)") is not None
    assert "Against a baseline" in texts(at, "subheader")


def test_ensemble_page_has_no_training_parts(dirs):
    _, runs = dirs
    ensemble = next(p.name for p in runs.iterdir() if "blend" in p.name)
    at = run_page(ensemble)
    no_exceptions(at)
    assert [m.value for m in at.metric if m.label == "Kind"] == ["ensemble"]
    assert any(c.startswith("An ensemble: per date") for c in texts(at, "caption"))
    assert not [b for b in at.button if b.label == "Resume"]
    assert frame_with(at, "cost per side (bp)") is not None


def test_compare_shows_the_runs_after_costs(dirs):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at = at.switch_page("app_pages/compare.py").run()
    at.multiselect(key="compare_runs").set_value(["deep", "ridge", "reversal_1d"]).run()
    no_exceptions(at)
    paired = frame_with(at, "t")
    reference = at.selectbox(key="paired_reference").value
    assert set(paired["run"]) == {"deep", "ridge", "reversal_1d"} - {reference}
    assert paired["95% interval"].str.startswith("[").all()
    after = frame_with(at, "break-even (bp per side)")
    assert set(after["run"]) == {"deep", "ridge", "reversal_1d"}
    assert {"net Sharpe at 0 bp", "net Sharpe at 20 bp"} <= set(after.columns)
    at.text_input(key="compare_costs").set_value("3").run()
    assert [c for c in frame_with(at, "break-even (bp per side)").columns if c.startswith("net Sharpe")] == \
        ["net Sharpe at 3 bp"]
