"""AppTest of every page: what each shows, inline errors, the pre-flight block, a real tiny run.

The app reads ATFT_DATA_DIR / ATFT_RUNS_DIR (only in app.py), so each test points it at tmp
folders. AppTest never fires `run_every` timers: following a run means calling run() again.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
from streamlit.testing.v1 import AppTest

from atft_core.data.validate import validate_dataset
from atft_core.system import machine_status
from atft_core.config import ModelConfig, RunConfig, TrainConfig
from atft_core.run_files import MetricsWriter, RunFiles, read_json, update_status, write_json_atomic
from atft_core.train import run_training

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 90
TINY = {"data.lookback": 5, "model.hidden_size": 8, "train.phase_epochs": "1, 1, 0, 0",
        "data.horizons": "1, 5", "model.gat_heads": 2, "model.encoder_heads": 2, "model.fan_top_k": 2}
"""A run that really trains, in seconds, on the 40-stock x 260-day demo."""


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory) -> Path:
    from atft_core.data.demo import make_demo

    out = tmp_path_factory.mktemp("demo") / Path(RunConfig().data.path).name
    make_demo(out, n_stocks=40, n_days=260, seed=0)
    return out


@pytest.fixture
def dirs(tmp_path, demo_file, monkeypatch):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    shutil.copy(demo_file, data / demo_file.name)
    monkeypatch.setenv("ATFT_DATA_DIR", str(data))
    monkeypatch.setenv("ATFT_RUNS_DIR", str(runs))
    monkeypatch.chdir(REPO)
    return data, runs


def app() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    return at.run()


def open_page(at: AppTest, page: str) -> AppTest:
    return at.switch_page(f"app_pages/{page}.py").run()


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def set_fields(at: AppTest, values: dict) -> AppTest:
    for key, value in values.items():
        found = next(w for kind in ("text_input", "number_input", "selectbox", "checkbox")
                     for w in getattr(at, kind) if w.key == f"cfg.{key}")
        found.set_value(value)
    return at.run()


def widget(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


def download_labels(at: AppTest) -> list[str]:
    return [d.proto.label for d in at.get("download_button")]


def launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch")


# ---------------------------------------------------------------------------------------------
# New run


def test_new_run_shows_datasets_and_config_defaults(dirs):
    data, _ = dirs
    at = app()
    no_exceptions(at)
    assert texts(at, "title") == ["New run"]
    table = at.dataframe[0].value
    row = table[table["dataset"] == "demo.parquet"].iloc[0]
    summary = validate_dataset(data / "demo.parquet")
    assert (row["stocks"], row["days"], row["features"]) == (40, summary.n_days, summary.n_features)
    assert widget(at, "number_input", "cfg.model.hidden_size").value == ModelConfig().hidden_size
    assert widget(at, "text_input", "cfg.train.lr").value == repr(TrainConfig().lr)
    assert widget(at, "text_input", "cfg.train.phase_epochs").value == ", ".join(map(str, TrainConfig().phase_epochs))
    assert widget(at, "selectbox", "cfg.model.kind").value == ModelConfig().kind
    assert widget(at, "selectbox", "cfg.data.path").value.endswith("demo.parquet")
    checks = at.table[0].value
    assert {"dataset", "device"} <= set(checks["check"]) and set(checks["verdict"]) <= {"pass", "warn", "fail"}


def test_invalid_input_is_explained_next_to_the_field(dirs):
    at = set_fields(app(), {"train.lr": "abc", "model.hidden_size": -8, "model.gat_dropout": "2"})
    no_exceptions(at)
    errors = texts(at, "error")
    assert [e for e in errors if "got 'abc'" in e] == ["train.lr: expected a number, got 'abc'"]  # once, not twice
    assert [e for e in errors if e.startswith("model.hidden_size")]  # the parse error hides nothing
    assert [e for e in errors if e.startswith("model.gat_dropout")]      # ... not even under Advanced
    summary = next(e for e in errors if "to fix before launch" in e)
    assert all(f in summary for f in ("train.lr", "model.hidden_size", "model.gat_dropout")) and "Advanced" in summary
    assert not [b for b in at.button if b.label == "Launch"]  # nothing to launch, no checklist
    at = set_fields(at, {"train.lr": "0.01"})
    assert not any("train.lr" in e for e in texts(at, "error"))
    assert any(e.startswith("model.hidden_size") for e in texts(at, "error"))


def test_new_run_form_keeps_its_values_when_you_come_back(dirs):
    at = set_fields(app(), {"model.hidden_size": 48, "train.lr": "0.002", "model.kind": "ridge", "data.lookback": 7})
    at.text_input(key="run_name").set_value("kept").run()
    at.number_input(key="run_seeds").set_value(3).run()
    at = open_page(open_page(at, "system"), "new_run")
    no_exceptions(at)
    assert widget(at, "number_input", "cfg.model.hidden_size").value == 48
    assert widget(at, "text_input", "cfg.train.lr").value == "0.002"
    assert widget(at, "selectbox", "cfg.model.kind").value == "ridge"
    assert widget(at, "number_input", "cfg.data.lookback").value == 7
    assert (at.text_input(key="run_name").value, at.number_input(key="run_seeds").value) == ("kept", 3)


def test_preflight_fail_blocks_launch(dirs):
    data, runs = dirs
    (data / "broken.parquet").write_bytes(b"this is not parquet")
    at = app()
    bad = str((data / "broken.parquet").resolve())
    at = set_fields(at, {"data.path": bad})
    no_exceptions(at)
    checks = at.table[0].value
    assert checks[checks["check"] == "dataset"].iloc[0]["verdict"] == "fail"
    assert any("Launch is blocked" in e for e in texts(at, "error"))
    assert launch_button(at).disabled
    assert not any(runs.iterdir()) if runs.exists() else True


def test_launch_tiny_demo_run_and_follow_it_to_the_end(dirs):
    data, runs = dirs
    at = set_fields(app(), {**TINY})
    at.text_input(key="run_name").set_value("tiny").run()
    no_exceptions(at)
    warned = [c for c in at.checkbox if c.key == "confirm_warnings"]
    if warned:
        assert launch_button(at).disabled  # warnings need a confirmation first
        warned[0].check().run()
    launch_button(at).click().run()
    launch_button_gone = not [b for b in at.button if b.label == "Launch"]
    assert launch_button_gone and texts(at, "title") == ["Run"], texts(at, "error")
    run_ids = [p.name for p in runs.iterdir() if not p.name.startswith(".")]
    assert len(run_ids) == 1
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        time.sleep(1.0)
        at.run()
        status = [m.value for m in at.metric if m.label == "Status"]
        if status and any(s in status[0] for s in ("completed", "early_stopped", "failed", "crashed")):
            break
    no_exceptions(at)
    assert "completed" in status[0], (status, at.code[0].value if at.code else "")
    assert [m.value for m in at.metric if m.label == "Epoch"] == ["2 / 2"]
    assert len(at.get("vega_lite_chart")) >= 2 + 6  # RankIC, losses, ... + 3 per evaluated split
    assert any(c.startswith("val/rank_ic logged for 2 epoch(s)") for c in texts(at, "caption"))
    markdown = " ".join(texts(at, "markdown"))
    assert "**Validation** (1d, " in markdown and "**Test** (1d, " in markdown and "mean daily RankIC" in markdown
    assert "**Inputs the model lets through**" in markdown
    weights = next(d.value for d in at.dataframe if "mean_weight" in d.value.columns)
    assert len(weights) == validate_dataset(dirs[0] / "demo.parquet").n_features
    resolved = next(d.value for d in at.dataframe if "requested" in d.value.columns)
    assert "runtime.device" in set(resolved["setting"])  # 'auto' as requested, 'cpu' as run
    assert {"Download best.pt", "Download last.pt", "Download predictions (CSV)"} <= set(download_labels(at))
    # Back on New run with the same settings (a second click of that submission): no new run.
    at = set_fields(set_fields(open_page(at, "new_run"), TINY), {})
    at.text_input(key="run_name").set_value("tiny").run()
    if [c for c in at.checkbox if c.key == "confirm_warnings"]:
        next(c for c in at.checkbox if c.key == "confirm_warnings").check().run()
    assert any(run_ids[0] in i and "repeated click starts nothing" in i for i in texts(at, "info"))
    assert launch_button(at).disabled
    next(b for b in at.button if b.label.startswith("Launch another")).click().run()
    assert not launch_button(at).disabled  # a deliberate new submission may launch again
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == run_ids


def test_seed_group_launches_from_new_run(dirs):
    from atft_core.runs import launch, run_state

    _, runs = dirs
    at = set_fields(app(), {**TINY, "train.phase_epochs": "20, 20, 0, 0"})   # seed 0 outlasts the checks
    at.number_input(key="run_seeds").set_value(2).run()
    assert any("for 2 runs: disk for all, memory for one" in h for h in texts(at, "subheader"))
    if [c for c in at.checkbox if c.key == "confirm_warnings"]:
        next(c for c in at.checkbox if c.key == "confirm_warnings").check().run()
    launch_button(at).click().run()
    no_exceptions(at)
    run_ids = sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
    try:
        assert len(run_ids) == 2 and texts(at, "title") == ["Run"], texts(at, "error")
        infos = [read_json(RunFiles(runs / i).run_info) for i in run_ids]
        assert infos[0]["group"] == infos[1]["group"] and [i["requested"]["runtime"]["seed"] for i in infos] == [0, 1]
        # One slot (this machine's default): the second seed waits, and the Run page and the
        # sidebar say why.
        deadline = time.time() + TIMEOUT
        while not run_state(runs, run_ids[1]).phase_name.startswith("waiting for a slot") and time.time() < deadline:
            time.sleep(0.2)
        at.query_params["run"] = run_ids[1]
        at.run()
        assert any(i.startswith("Queued: waiting for a slot (1 of 1 busy)") for i in texts(at, "info")), texts(at, "info")
        assert "waiting for a slot (1 of 1 busy)" in texts(at, "caption")
        assert any(c.endswith("ensemble · queued: waiting for 2 of 2 runs to end") for c in texts(at, "caption"))
    finally:
        for run_id in run_ids:
            launch.stop_run(runs, run_id, grace_seconds=30)


# ---------------------------------------------------------------------------------------------
# Run, Compare, System, Data on run folders in the real format


def fake_run(runs: Path, run_id: str, hidden: int, rank_ics: list[float], tags=("t",), state="completed") -> None:
    files = RunFiles(runs / run_id)
    files.checkpoints.mkdir(parents=True)
    cfg = RunConfig().replace(**{"model.hidden_size": hidden}).to_dict()
    write_json_atomic(files.config, {"config": cfg, "requested": cfg, "resolved": {}})
    write_json_atomic(files.run_info, {"id": run_id, "name": f"n-{run_id}", "tags": list(tags), "created": time.time()})
    update_status(files, state=state, epoch=len(rank_ics), epochs_planned=len(rank_ics), phase=1,
                  started=time.time() - 10, ended=time.time())
    with MetricsWriter(files.metrics) as writer:
        for epoch, value in enumerate(rank_ics, start=1):
            writer.log(epoch=epoch, step=epoch * 10, phase=0 if epoch == 1 else 1,
                       values={"val/rank_ic": value, "val/loss": 1.0 / epoch, "train/loss": 2.0 / epoch})


def test_compare_shows_only_settings_that_differ_and_best_final(dirs):
    _, runs = dirs
    runs.mkdir()
    fake_run(runs, "run-a", 16, [0.01, 0.04, 0.02])
    fake_run(runs, "run-b", 32, [0.03, 0.02])
    fake_run(runs, "run-c", 64, [0.05], state="failed")
    fake_run(runs, "run-d", 64, [0.05], state="running")   # fresh heartbeat, no process to check: running
    at = open_page(app(), "compare")
    no_exceptions(at)
    assert sorted(at.multiselect(key="compare_runs").value) == ["run-a", "run-b"]  # finished runs only
    diff = at.table[0].value
    assert diff["setting"].tolist() == ["model.hidden_size"]
    assert sorted(diff.iloc[0][["n-run-a", "n-run-b"]].tolist()) == ["16", "32"]  # a column per run, by name
    table = next(d.value for d in at.dataframe if "n-run-a" in d.value.columns)
    best = table[(table["metric"] == "val/rank_ic") & (table["value"] == "best")].iloc[0]
    final = table[(table["metric"] == "val/rank_ic") & (table["value"] == "final")].iloc[0]
    assert (best["n-run-a"], final["n-run-a"], best["n-run-b"]) == ("0.04 (epoch 2)", "0.02 (epoch 3)", "0.03 (epoch 1)")
    assert at.get("download_button")
    assert [c.proto.spec for c in at.get("vega_lite_chart")] and len(at.get("vega_lite_chart")) == 1
    at.multiselect(key="compare_metrics").set_value(["val/rank_ic", "val/loss", "train/loss"]).run()
    assert len(at.get("vega_lite_chart")) == 3   # several metrics at once, as a grid
    at.multiselect(key="compare_runs").set_value(["run-a"]).run()
    assert "The chosen runs have identical settings." in texts(at, "caption")


def test_compare_combines_finished_runs_into_an_ensemble_run(dirs):
    data, runs = dirs
    base = RunConfig().replace(**{"data.path": str(data / "demo.parquet"), "data.lookback": 5, "model.fan_top_k": 2})
    for kind in ("ridge", "reversal_1d"):
        assert run_training(base.replace(**{"model.kind": kind}), runs / kind) == "completed"
    fake_run(runs, "no-predictions", 16, [0.01])
    at = open_page(app(), "compare")
    at.multiselect(key="compare_runs").set_value(["ridge", "no-predictions"]).run()
    next(b for b in at.button if b.label.startswith("Combine")).click().run()
    assert any("No ensemble was built" in e and "no predictions" in e for e in texts(at, "error"))
    at.multiselect(key="compare_runs").set_value(["ridge", "reversal_1d"]).run()
    paired = next(d.value for d in at.dataframe if "t" in d.value.columns)
    assert paired["run"].tolist() == ["reversal_1d"] and paired.iloc[0]["days"] > 10
    widget(at, "text_input", "ensemble_name").set_value("blend")
    next(b for b in at.button if b.label.startswith("Combine")).click().run()
    no_exceptions(at)
    built = [p.name for p in runs.iterdir() if "blend" in p.name]
    assert len(built) == 1 and any(built[0] in s for s in texts(at, "success"))
    at = open_page(at, "run")        # the new run is the newest: the Run page opens on it
    no_exceptions(at)
    assert any("Ensemble" in m and "2 runs" in m for m in texts(at, "markdown"))
    assert any("Validation" in m for m in texts(at, "markdown"))
    assert "An ensemble has no checkpoints of its own: its members have them." in texts(at, "caption")
    assert not [b for b in at.button if b.label == "Resume"]


ACTIONS = ("Stop", "Resume")


def test_run_page_of_a_finished_run_without_predictions(dirs):
    _, runs = dirs
    runs.mkdir()
    fake_run(runs, "run-a", 16, [0.01, 0.04, 0.02])
    at = open_page(app(), "run")
    no_exceptions(at)
    assert [m.value for m in at.metric if m.label == "Epoch"] == ["3 / 3"]
    assert [m.value for m in at.metric if m.label == "Best val RankIC"] == ["0.0400"]
    assert any("no predictions" in i for i in texts(at, "info"))
    assert not [b for b in at.button if b.label in ACTIONS]       # completed: nothing to resume
    assert "The run has completed: nothing is left to train." in texts(at, "caption")
    assert not texts(at, "warning")
    update_status(RunFiles(runs / "run-a"), warnings=["predictions degenerate: val/pred_std=1e-07"])
    at.run()
    assert texts(at, "warning") == ["predictions degenerate: val/pred_std=1e-07"]   # the trainer's warnings show


def dead_process_run(runs: Path, run_id: str) -> None:
    """A run whose status says running but whose process is gone: the reader calls it crashed."""
    fake_run(runs, run_id, 16, [0.01], state="running")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    info = read_json(RunFiles(runs / run_id).run_info)
    write_json_atomic(RunFiles(runs / run_id).run_info, {**info, "pid": proc.pid, "proc_start_time": 1.0})


@pytest.mark.parametrize("state, last_pt, offered", [
    ("completed", True, []), ("early_stopped", True, []), ("failed", False, []), ("crashed", False, []),
    ("crashed", True, ["Resume"]), ("stopped", True, ["Resume"]), ("failed", True, ["Resume"]),
    ("running", True, ["Stop"]),
])
def test_run_page_offers_only_the_action_that_can_work(dirs, state, last_pt, offered):
    _, runs = dirs
    runs.mkdir()
    if state == "crashed":
        dead_process_run(runs, "r")
    else:
        fake_run(runs, "r", 16, [0.01], state=state)
    if last_pt:
        (RunFiles(runs / "r").last_checkpoint).write_bytes(b"x")
    at = open_page(app(), "run")
    no_exceptions(at)
    assert [m.value for m in at.metric if m.label == "Status"] == [state]
    assert [b.label for b in at.button if b.label in ACTIONS] == offered


def test_run_page_says_when_the_asked_run_does_not_exist(dirs):
    _, runs = dirs
    runs.mkdir()
    fake_run(runs, "run-a", 16, [0.01, 0.04])
    at = app()
    for wanted, said in (("no-such-run", "There is no run 'no-such-run'"), ("../../etc", "'../../etc' may contain only")):
        at.query_params["run"] = wanted
        at = open_page(at, "run")
        no_exceptions(at)
        assert any(said in e for e in texts(at, "error")), texts(at, "error")
        assert not [m for m in at.metric if m.label == "Status"]    # no other run shown in its place
        assert at.selectbox[0].value is None


def test_run_page_manages_the_run(dirs):
    data, runs = dirs
    runs.mkdir()
    fake_run(runs, "run-a", 24, [0.01, 0.04], tags=("old", "keep"))
    at = open_page(app(), "run")
    next(t for t in at.text_input if t.label == "Name").set_value("renamed")
    next(t for t in at.text_input if t.label == "Tags (comma-separated)").set_value("keep, new")
    next(t for t in at.text_area if t.label == "Note").set_value("lr too high?")
    next(b for b in at.button if b.label == "Save name, tags and note").click().run()
    no_exceptions(at)
    info = read_json(RunFiles(runs / "run-a").run_info)
    assert (info["name"], info["tags"], info["note"]) == ("renamed", ["keep", "new"], "lr too high?")
    assert any("Saved the name, tags and note" in s for s in texts(at, "success"))
    assert at.selectbox[0].options == ["renamed · completed · run-a"]
    # "New run from this one" is a link to New run?from=run-a (AppTest follows no link: open it)
    assert "from=run-a" in str(next(e for e in at.get("page_link") if e.proto.label == "New run from this one").proto)
    at.query_params["from"] = "run-a"
    at = open_page(at, "new_run")
    no_exceptions(at)
    assert texts(at, "title") == ["New run"]
    assert any("settings of run run-a" in i for i in texts(at, "info"))
    assert "from" not in at.query_params       # read once: a rerun keeps what the user changes
    assert widget(at, "number_input", "cfg.model.hidden_size").value == 24
    assert (at.text_input(key="run_name").value, at.text_input(key="run_tags").value) == ("renamed", "keep, new")
    widget(at, "number_input", "cfg.model.hidden_size").set_value(32).run()
    assert widget(at, "number_input", "cfg.model.hidden_size").value == 32
    for wanted, said in (("no-such-run", "no run 'no-such-run'"), ("../etc", "may contain only")):
        at.query_params["from"] = wanted
        at = open_page(at, "new_run")
        no_exceptions(at)
        assert any(said in e for e in texts(at, "error")), texts(at, "error")
    at = open_page(at, "run")
    assert next(b for b in at.button if b.label == "Delete run").disabled     # not before the confirmation
    next(c for c in at.checkbox if c.label.startswith("Delete run-a")).check().run()
    next(b for b in at.button if b.label == "Delete run").click().run()
    no_exceptions(at)
    assert not (runs / "run-a").exists()
    assert any("Deleted run run-a" in s for s in texts(at, "success")) or "No runs yet." in texts(at, "info")


def test_system_page_shows_the_machine(dirs):
    at = open_page(app(), "system")
    time.sleep(2.5)            # the history samples every 2 s in the background
    at.run()
    no_exceptions(at)
    loads = [m.value for m in at.metric if m.label == f"CPU load ({psutil.cpu_count()} cores)"]
    assert len(loads) == 1 and loads[0].endswith("%")           # the load without a tooltip
    assert "No run is training now." in texts(at, "caption")
    charts_ = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert any("CPU load" in s for s in charts_) and any("Memory" in s for s in charts_)   # history, not a snapshot
    assert any("samples" in c for c in texts(at, "caption"))
    if not machine_status().gpus:    # no driver here: said plainly, NVML's words only in the details
        assert any(i.startswith("No GPU: ") and "NVMLError" not in i for i in texts(at, "info"))
        assert all("NVMLError" not in t for kind in ("info", "markdown", "caption", "error") for t in texts(at, kind))


def test_data_page_lists_datasets_and_shows_build_errors_like_the_cli(dirs, tmp_path):
    data, _ = dirs
    at = open_page(app(), "data")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert table.iloc[0]["dataset"] == "demo.parquet" and table.iloc[0]["stocks"] == 40
    assert any(validate_dataset(data / "demo.parquet").to_text() in c.value for c in at.code)
    missing = tmp_path / "nope.parquet"
    at.text_input(key="quotes_path").set_value(str(missing))
    at.text_input(key="listed_path").set_value(str(missing))
    at.run()
    next(b for b in at.button if b.label == "Build dataset").click().run()
    errors = texts(at, "error")
    assert any(e.startswith("error: ") and "nope.parquet" in e for e in errors), errors
    assert not (data / "jquants.parquet").exists()


def test_predict_page_ranks_the_latest_date_and_a_chosen_one(dirs):
    data, runs = dirs
    assert run_training(RunConfig().replace(**{"data.path": str(data / "demo.parquet"), **TINY}), runs / "deep") \
        == "completed"
    dates = pl.read_parquet(data / "demo.parquet")["Date"].unique().sort().to_list()
    at = open_page(app(), "predict")
    no_exceptions(at)
    markdown = " ".join(texts(at, "markdown"))
    assert f"stocks on {dates[-1]}** (the dataset's last date: its forward returns are not known yet)" in markdown
    table = at.dataframe[0].value
    assert (table.iloc[0]["rank"], table.iloc[0]["decile"], table.iloc[-1]["decile"]) == (1, 10, 1)
    assert {"q10_1d", "q90_1d", "Sector33Code"} <= set(table.columns)
    assert "Download the ranking (CSV)" in download_labels(at)
    at.radio(key="predict_when").set_value("a chosen date").run()
    at.date_input(key="predict_day").set_value(dates[100]).run()
    no_exceptions(at)
    assert f"stocks on {dates[100]}**" in " ".join(texts(at, "markdown"))
    weekend = next(d for d in (dates[100] + dt.timedelta(days=k) for k in range(1, 7)) if d not in set(dates))
    at.date_input(key="predict_day").set_value(weekend).run()
    assert any(f"{weekend} is not a date of" in e for e in texts(at, "error"))
