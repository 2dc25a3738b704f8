"""bench/quality.py: paired t-statistic, best baseline chosen on validation, and a smoke report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import quality  # noqa: E402
import quality_report as report  # noqa: E402


def _row(name, kind, val_ric, test_ric=None, daily=None, lag=0, group="baseline"):
    return {"name": name, "label": name, "kind": kind, "lag": lag, "group": group, "seed": 0,
            "summary": {"1": {"val": {"rank_ic": val_ric}, "test": {"rank_ic": test_ric}}},
            "daily": {"1": {"rank_ic": daily or []}}}


def test_best_baseline_is_chosen_on_validation_never_on_test():
    rows = [
        _row("base-a", "reversal_1d", val_ric=0.030, test_ric=0.001),
        _row("base-b", "ridge", val_ric=0.020, test_ric=0.090),        # best on test: must not win
        _row("base-c", "low_vol", val_ric=None, test_ric=0.500),       # no validation value
        _row("default-s0", "atft_gat_fan", val_ric=0.100, group="default"),   # not a baseline
        _row("lag1-b", "ridge", val_ric=0.040, lag=1, group="lag1"),
    ]
    assert report.best_baseline(rows)["name"] == "base-a"
    assert report.best_baseline(rows, lag=1)["name"] == "lag1-b"
    assert report.best_baseline([rows[3]]) is None


def test_verdict_needs_both_the_ratio_and_the_t_statistic():
    base_daily = [0.01, 0.02, 0.00, 0.01]
    base = _row("base-a", "reversal_1d", 0.03, test_ric=0.01, daily=base_daily)
    strong = _row("default-s0", "atft_gat_fan", 0.05, test_ric=0.05, group="default",
                  daily=[0.05, 0.07, 0.04, 0.04])
    v = report.verdict([base, strong])
    assert v["baseline"] == "base-a" and v["ratio_ok"] and v["t_ok"] and v["met"] is True
    noisy = _row("default-s0", "atft_gat_fan", 0.05, test_ric=0.05, group="default",
                 daily=[0.20, -0.10, 0.15, -0.05])
    v = report.verdict([base, noisy])
    assert v["ratio_ok"] and not v["t_ok"] and v["met"] is False
    assert "not met" in report.verdict_lines(v)[0]
    assert report.verdict([strong])["met"] is None


def test_rows_cover_the_issue():
    s, profile = quality.make_settings(quality.parse_args([]), [])
    names = [r.name for r in quality.all_rows(s)]
    assert [n for n in names if n.startswith("base-")] == [f"base-{k}" for k in quality.BASELINES]
    assert {"default-s0", "default-s1", "default-s2", "abl-no_gat", "abl-no_fan", "abl-gate_fixed",
            "abl-hidden_large", "abl-rankic_w", "abl-csic_w", "abl-single_phase", "lag1-default-s0"} <= set(names)
    assert sum(n.startswith("lag1-") and "fin-" not in n for n in names) == len(quality.BASELINES) + 1
    # the statement group: both factors, and the default model without and with the statements, same seeds
    fin = {r.name: r for r in quality.all_rows(s) if r.group in report.STATEMENT_GROUPS}
    assert {"fin-factor-ey", "fin-factor-bp", "lag1-fin-factor-ey", "fin-without-s2", "fin-with-s2",
            "lag1-fin-without-s0", "lag1-fin-with-s0"} <= set(fin)
    with_, without = (quality.row_config(fin[n], s, profile, "2021-01-04") for n in ("fin-with-s1", "fin-without-s1"))
    assert with_.data.path == without.data.path == str(s.statements_dataset)
    assert with_.data.start == without.data.start == quality.STATEMENT_START and with_.runtime.seed == without.runtime.seed
    assert with_.data.features == () and without.data.features == quality.PRICE_FEATURES
    factor = quality.row_config(fin["lag1-fin-factor-bp"], s, profile, "")
    assert (factor.model.kind, factor.model.factor, factor.data.execution_lag) == ("factor", "feat_fin_bp", 1)
    cfg = quality.row_config(next(r for r in quality.all_rows(s) if r.name == "abl-single_phase"), s, profile, "")
    assert sum(cfg.train.phase_epochs) == sum(s.knobs.phase_epochs) and cfg.train.phase_epochs[2] == sum(s.knobs.phase_epochs)
    cfg = quality.row_config(quality.all_rows(s)[0], s, profile, "2021-01-04")
    assert cfg.data.start == quality.TRAIN_START and cfg.data.val_end == quality.VAL_END  # baselines uncut


def test_smoke_report_end_to_end(tmp_path):
    out = tmp_path / "report"
    argv = ["--smoke", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--jobs", "2"]  # both rows at once
    assert quality.main(argv) == 0
    page = (out / "quality.md").read_text()
    assert "| baseline reversal_1d |" in page and "| default, seed 0 |" in page
    assert "t vs best (test RankIC)" in page and "## Headroom: single inputs" in page
    assert "**Target met.**" in page or "**Target not met.**" in page
    # after trading costs: the winner in words, every row's book, intervals next to RankIC and Sharpe
    assert "(the seed-mean daily series: 0." in page and "(95% block-bootstrap interval)" in page   # verdict
    assert "**After trading costs, 1-day horizon**" in page and "Which wins after costs (1-day): " in page
    assert "| row | test turnover/day | holding (days) | break-even valid (bp/side) |" in page
    assert "test net Sharpe at 0 bp | test net Sharpe at 5 bp | test net Sharpe at 10 bp | test net Sharpe at 20 bp |" in page
    row = next(line for line in page.splitlines() if line.startswith("| baseline reversal_1d | 0."))
    assert row.count(" [") == 4                     # RankIC and LS Sharpe, validation and test
    for name in report.PLOTS:
        png = out / "quality" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "quality" / "results.json").read_text())
    assert {r["name"] for r in results["rows"]} == {"base-reversal_1d", "default-s0"}
    # A second invocation reuses the finished runs and regenerates the same tables.
    assert quality.main(argv) == 0
    again = json.loads((out / "quality" / "results.json").read_text())
    assert sorted(again["reused"]) == ["base-reversal_1d", "default-s0"]
    assert again["rows"] == results["rows"]


def test_headroom_scores_each_input_as_a_factor_on_the_baselines_rows(tmp_path):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    dates = [f"2024-01-{d:02d}" for d in range(1, 11)]
    rows = [(d, f"{c:04d}", rng.normal()) for d in dates for c in range(30)]
    frame = pl.DataFrame(rows, schema=["Date", "Code", "target_1d"], orient="row").with_columns(
        pl.col("Date").str.to_date()).with_columns(pl.when(pl.col("Date") < pl.date(2024, 1, 6)).then(pl.lit("val"))
        .otherwise(pl.lit("test")).alias("split"), pl.lit(0.0).alias("pred_1d"))
    run = tmp_path / "base-reversal_1d"
    run.mkdir()
    frame.write_parquet(run / "predictions.parquet")
    dataset = tmp_path / "dataset.parquet"
    frame.select("Date", "Code", (-pl.col("target_1d")).alias("feat_minus_target"),
                 pl.lit(1.0).alias("feat_flag"), pl.Series("feat_noise", rng.normal(size=frame.height))
                 ).write_parquet(dataset)
    axis = dates[5:]
    room = quality.headroom(dataset, run, axis)
    best = room[0]
    assert best["feature"] == "feat_minus_target" and best["sign"] == -1 and best["picked_by"] == "test (hindsight)"
    assert best["test_rank_ic"] == pytest.approx(1.0) and best["val_rank_ic"] == pytest.approx(1.0)
    assert best["rank_ic"] == pytest.approx([1.0] * 5)
    flag = next(e for e in room if e["feature"] == "feat_flag")
    assert flag["test_rank_ic"] == 0.0                      # a constant input ranks nothing
    assert room[-1]["picked_by"] == "validation" and room[-1]["feature"] == "feat_minus_target"


def test_seed_ensemble_row_averages_z_scored_predictions(tmp_path):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(1)
    n_dates, n_codes = 12, 25
    base = pl.DataFrame({
        "Date": np.repeat(np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + n_dates), n_codes),
        "Code": [f"{c:04d}" for c in range(n_codes)] * n_dates,
        "target_1d": rng.normal(size=n_dates * n_codes)}).with_columns(
        pl.when(pl.int_range(pl.len()) < 6 * n_codes).then(pl.lit("val")).otherwise(pl.lit("test")).alias("split"))
    signal = base["target_1d"].to_numpy()
    # seed b is seed a scaled and shifted per date: z-scoring makes them identical
    preds = {"default-s0": signal + rng.normal(size=len(signal)), "default-s1": None}
    preds["default-s1"] = 3.0 * preds["default-s0"] + 7.0
    records = []
    for name, pred in preds.items():
        (tmp_path / name).mkdir()
        base.with_columns(pl.Series("pred_1d", pred)).write_parquet(tmp_path / name / "predictions.parquet")
        records.append({"name": name, "group": "default", "kind": "atft_gat_fan", "lag": 0, "resolved": {},
                        "train_seconds": 10.0, "run_seconds": 12.0, **quality.run_numbers(tmp_path / name)})
    baseline = {"name": "base-x", "group": "baseline", "lag": 0}
    rows = quality._with_ensemble([baseline, *records], tmp_path)
    assert [r["name"] for r in rows] == ["base-x", "default-s0", "default-s1", "default-ensemble"]
    ensemble = rows[-1]
    assert ensemble["summary"]["1"]["test"]["rank_ic"] == pytest.approx(records[0]["summary"]["1"]["test"]["rank_ic"])
    assert ensemble["train_seconds"] == 20.0 and ensemble["group"] == "ensemble"
    assert quality._with_ensemble([baseline, records[0]], tmp_path) == [baseline, records[0]]  # one seed: no row


def test_rows_trained_before_a_default_changed_say_so(tmp_path):
    from atft_core.config import RunConfig
    from atft_core.run_files import RunFiles, write_json_atomic

    files = RunFiles(tmp_path / "default-s0")
    files.root.mkdir()
    requested = RunConfig().replace(**{"model.hidden_size": 8, "train.phase_epochs": (1, 1, 1, 1)}).to_dict()
    requested["loss"]["rankic_weight"] = RunConfig().loss.rankic_weight + 0.1   # an earlier default
    del requested["loss"]["neutralize"]                                         # a key added later
    write_json_atomic(files.config, {"config": requested, "requested": requested, "resolved": {}})
    stale = quality.stale_defaults(files.root, quality.PROFILES["real"])
    assert stale == [f"loss.rankic_weight={requested['loss']['rankic_weight']} "
                     f"(default now {RunConfig().loss.rankic_weight})"]   # hidden size, phases: the report's own knobs
    results = {"settings": {"cuts": "c", "stale_defaults": stale}, "machine": {k: "m" for k in (
        "cpu", "cores", "ram_gib", "gpu", "python", "torch", "load_before", "load_after")},
               "commands": ["x"], "command": "y", "generated": "g", "devices": [], "rows_run_seconds": 1.0,
               "wall_seconds": 1.0, "reused": []}
    assert any("trained before a config default changed: loss.rankic_weight=" in line
               for line in report._settings_lines(results))
    assert quality.stale_defaults(tmp_path / "missing", quality.PROFILES["real"]) == []


def _cost_row(name, kind, gross, turnover, group="baseline"):
    row = _row(name, kind, val_ric=0.01, group=group)
    row["daily"]["1"].update({"long_short": gross, "turnover": turnover})
    return row


def test_after_costs_names_the_winner_only_when_the_interval_excludes_zero():
    rng = __import__("numpy").random.default_rng(0)
    days = 120
    base_gross = list(0.004 + 0.002 * rng.normal(size=days))
    model_gross = list(0.003 + 0.002 * rng.normal(size=days))
    rows = [_cost_row("base-a", "reversal_1d", base_gross, [0.9] * days),          # fast: pays 36 bp/day at 10 bp
            _cost_row("default-s0", "atft_gat_fan", model_gross, [0.1] * days, group="default")]
    found = {f["cost_bps"]: f for f in report.after_costs(rows, "1", 0, (0.0, 10.0))}
    assert found[0.0]["winner"] == "`base-a`" and found[0.0]["difference"].high < 0      # before costs
    assert found[10.0]["winner"] == "the default model" and found[10.0]["difference"].low > 0
    assert found[10.0]["difference"].value == pytest.approx(
        (sum(model_gross) - sum(base_gross)) / days * 1e4 - (0.1 - 0.9) * 4 * 10, rel=1e-9)
    sentence = report._after_costs_sentence(list(found.values()), "1")
    assert sentence == "Which wins after costs (1-day): `base-a` at 0 bp; the default model at 10 bp."
    assert report.after_costs([rows[0]], "1", 0, (0.0,)) == []          # no default row: nothing to say


def _fin_row(name, group, seed, val_daily, test_daily, lag=0, kind="atft_gat_fan"):
    summary = {h: {"val": {"rank_ic": sum(val_daily) / len(val_daily)}, "test": {"rank_ic": sum(test_daily) / len(test_daily)}}
               for h in ("1", "20")}
    label = name if kind == "factor" else f"default {group.removeprefix('fin_')} statements, seed {seed}"
    return {"name": name, "label": label, "kind": kind, "lag": lag, "group": group, "seed": seed, "summary": summary,
            "daily": {h: {"rank_ic": test_daily} for h in ("1", "20")},
            "daily_val": {h: {"rank_ic": val_daily} for h in ("1", "20")}}


def test_statement_rows_have_their_own_section_with_the_paired_difference():
    rng = __import__("numpy").random.default_rng(0)
    noise = lambda: list(rng.normal(0.0, 0.01, 50))  # noqa: E731
    without = [_fin_row(f"fin-without-s{i}", "fin_without", i, noise(), noise()) for i in range(2)]
    with_ = [_fin_row(f"fin-with-s{i}", "fin_with", i, [v + 0.02 + rng.normal(0, 0.001) for v in w["daily_val"]["1"]["rank_ic"]],
                      w["daily"]["1"]["rank_ic"]) for i, w in enumerate(without)]
    factor = _fin_row("fin-factor-fin_ey", "fin_factor", 0, [0.5] * 50, [0.5] * 50, kind="factor")
    main = [_row("base-a", "reversal_1d", 0.01), _row("default-s0", "atft_gat_fan", 0.02, group="default")]
    rows = main + [factor, *without, *with_]
    assert report.best_baseline(rows)["name"] == "base-a"        # the statement window's factor never competes
    assert report.main_rows(rows) == main and report.report_horizons(rows) == ["1", "20"]
    found = report.statement_comparison(rows, "1", 0)
    assert found["val"]["difference"] == pytest.approx(0.02, abs=1e-3) and found["val"]["t"] > 20 and found["val"]["n"] == 50
    assert found["test"]["difference"] == pytest.approx(0.0) and len(found["val"]["seed_t"]) == 2
    lines = report.statement_lines({"rows": rows, "statements": {"lines": ["window: train 2021-06-01..2022-12-31"]}})
    text = "\n".join(lines)
    assert "- window: train 2021-06-01..2022-12-31" in text
    assert "### 1-day horizon, execution lag 0" in text and "### 20-day horizon, execution lag 0" in text
    assert "| **default without statements, mean ± std of 2 seeds** |" in text
    assert "| default with statements, seed 1 |" in text and "| fin-factor-fin_ey | 0.5000 |" in text
    assert "With minus without, 1-day (mean of the 2 seeds' daily RankIC, paired over days): validation 0.0" in text
    assert "20-day targets overlap" in text and "execution lag 1" not in text


def test_rows_without_results_are_named_under_the_verdict_and_listed():
    results = {"missing": ["abl-no_gat: not run", "fin-with-s2: queued"]}
    note = report.missing_note(results)
    assert note[0].startswith("*2 of the catalogue's rows have no finished run") and "#rows-without-results" in note[0]
    lines = report.missing_lines(results)
    assert lines[0] == "## Rows without results" and "- abl-no_gat: not run" in lines and "- fin-with-s2: queued" in lines
    assert report.missing_note({"missing": []}) == [] and report.missing_lines({}) == []
