"""AppTest of the Sweep page: a study's progress, trials table with run links, charts and
importances, "Compare the best K" (the Compare page opens with those runs chosen), the Run page of
a trial, stopping a study, and defining one (a bad range refused under its field; a good study
created with a real worker, which the page's Stop then ends)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from atft_core.config import RunConfig
from atft_core.run_files import RunFiles, update_status, write_json_atomic
from atft_core.runs import list_runs as runs_list
from atft_core.runs import queue
from atft_core.runs.store import process_alive
from atft_core.sweep.space import parse_param
from atft_core.sweep.spec import StudySpec
from atft_core.sweep.storage import default_url
from atft_core.sweep.study import create_study
from atft_core.sweep.trials import live_workers, read_study

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120


@pytest.fixture
def dirs(tmp_path, demo_dataset, monkeypatch):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    shutil.copy(demo_dataset, data / Path(RunConfig().data.path).name)
    monkeypatch.setenv("ATFT_DATA_DIR", str(data))
    monkeypatch.setenv("ATFT_RUNS_DIR", str(runs))
    monkeypatch.chdir(REPO)
    return data, runs


def page(at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    return at.switch_page("app_pages/sweep.py").run()


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def finished_study(data: Path, runs: Path, n: int = 6) -> list[str]:
    """A study whose trials all completed (values told by hand), each with a finished run folder
    tagged as its trial; returns the run ids by trial number."""
    url = default_url(runs)
    base = {"data": {"path": str(data / "demo.parquet"), "lookback": 5, "horizons": [1, 5]},
            "model": {"hidden_size": 8, "fan_top_k": 2}, "train": {"phase_epochs": [1, 1, 0, 0]}}
    create_study(StudySpec(name="hp", base=base, n_trials=n, space=(parse_param("train.lr=1e-4..1e-2:log"),
                                                                    parse_param("model.hidden_size=8|16"))),
                 url, runs, probes=None)
    study = optuna.load_study(study_name="hp", storage=url)
    ids = []
    for i in range(n):
        trial = study.ask()
        lr = trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("model.hidden_size", [8, 16])
        run_id = f"trial-run-{trial.number}"
        files = RunFiles(runs / run_id)
        files.root.mkdir()
        write_json_atomic(files.run_info, {"id": run_id, "name": f"hp #{trial.number}", "tags": ["sweep-hp"],
                                           "created": time.time(), "sweep": {"study": "hp", "trial": trial.number}})
        update_status(files, state="completed", epoch=2, epochs_planned=2, ended=time.time())
        trial.set_user_attr("run_id", run_id)
        study.tell(trial, 0.01 + lr * 10)   # the larger the learning rate, the better
        ids.append(run_id)
    return ids


def test_a_draw_reads_the_study_once_and_the_names_without_trials(dirs, monkeypatch) -> None:
    """The page's cost grows with the trials read: one read of the study per draw (the fragment
    takes the whole-page read), the study names without any trial, importances from one read."""
    from atft_core.sweep import trials as sweep_trials
    from optuna.storages import RDBStorage

    data, runs = dirs
    finished_study(data, runs)
    at = page()
    no_exceptions(at)
    reads, trial_reads, read_study_before = [], [], sweep_trials.read_study
    trials_before = RDBStorage._get_trials   # where every read of trials ends, through Optuna's cache or not
    monkeypatch.setattr(sweep_trials, "read_study", lambda *a: reads.append(a) or read_study_before(*a))
    monkeypatch.setattr(RDBStorage, "_get_trials", lambda self, *a, **k: trial_reads.append(a) or
                        trials_before(self, *a, **k))
    at.run()
    no_exceptions(at)
    assert len(reads) == 1 and len(at.get("vega_lite_chart")) == 3
    assert len(trial_reads) == 1, "only read_study reads trials (importances are cached until a trial completes)"
    trial_reads.clear()
    shares = sweep_trials.importances("hp", default_url(runs))
    assert len(trial_reads) == 1 and set(shares) == {"train.lr", "model.hidden_size"}
    assert shares["train.lr"] > shares["model.hidden_size"]   # the value depends on the learning rate only


def test_watching_a_finished_study(dirs) -> None:
    data, runs = dirs
    ids = finished_study(data, runs)
    at = page()
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Done"] == "6 / 6" and metrics["Running"] == "0"
    assert "Finished: every one of the 6 trials has ended." in [s.value for s in at.success]
    table = at.dataframe[0].value
    assert table["trial"].to_list() == list(range(6)) and set(table["state"]) == {"complete"}
    assert table["run"].to_list() == [f"run?run={i}" for i in ids]
    assert len(at.get("vega_lite_chart")) == 3   # history, parallel coordinates, importances
    best = sorted(read_study("hp", default_url(runs)).ranked()[:3], key=lambda t: t.number)
    link = next(e for e in at.get("page_link") if e.proto.label == "Compare the best 3")
    assert sorted(link.proto.query_string.split("=", 1)[1].replace("%2C", ",").split(",")) == sorted(t.run_id for t in best)
    assert at.button(key="sweep_start").disabled and at.button(key="sweep_stop").disabled

    # The Compare page chooses the runs of ?runs=...
    at.query_params["runs"] = ",".join(ids[:2])
    at.switch_page("app_pages/compare.py").run()
    no_exceptions(at)
    assert at.multiselect(key="compare_runs").value == ids[:2]

    # A trial's Run page says which sweep it belongs to.
    at.query_params.clear()
    at.query_params["run"] = ids[0]
    at.switch_page("app_pages/run.py").run()
    no_exceptions(at)
    assert any(e.proto.label == "Trial 0 of sweep hp" for e in at.get("page_link"))


def test_a_study_is_stopped_from_the_page(dirs) -> None:
    data, runs = dirs
    url = default_url(runs)
    base = {"data": {"path": str(data / "demo.parquet")}}
    create_study(StudySpec(name="wait", base=base, n_trials=3, space=(parse_param("train.lr=1e-4..1e-2"),)), url, runs)
    at = page()
    no_exceptions(at)
    assert {m.label: m.value for m in at.metric}["Waiting"] == "3"
    at.button(key="sweep_stop").click().run()
    no_exceptions(at)
    assert read_study("wait", url).stop_requested["reason"] == "stopped on the Sweep page"
    assert any("Stopped: stopped on the Sweep page" in w.value for w in at.warning)
    assert at.button(key="sweep_stop").disabled


def test_defining_a_study_on_the_page(dirs) -> None:
    data, runs = dirs
    queue.set_slots(runs, queue.Slots(cpu=1, threads=1))
    at = page()
    no_exceptions(at)
    assert at.radio(key="sweep_mode").value == "New study"   # with no study yet, the page opens on defining one
    assert "Name the study and pick at least one field to search." in [i.value for i in at.info]
    for key, value in {"cfg.model.hidden_size": 8, "cfg.train.phase_epochs": "1, 1, 0, 0",
                       "cfg.data.horizons": "1, 5", "cfg.data.lookback": 5, "cfg.model.fan_top_k": 2}.items():
        widget = next(w for kind in ("text_input", "number_input") for w in getattr(at, kind) if w.key == key)
        widget.set_value(value)
    at.text_input(key="sweep_name").set_value("ui")
    at.multiselect(key="sweep_fields").set_value(["model.encoder_heads"]).run()
    at.text_input(key="sweep_space.model.encoder_heads").set_value("1|3").run()
    assert any("model.encoder_heads=3" in e.value and "must divide model.hidden_size=8" in e.value for e in at.error)
    assert at.button(key="sweep_create").disabled
    at.text_input(key="sweep_space.model.encoder_heads").set_value("1..2:lg").run()
    assert "model.encoder_heads: unknown range option 'lg'; use :log or :step=N" in [e.value for e in at.error]
    at.text_input(key="sweep_space.model.encoder_heads").set_value("1|2").run()
    at.number_input(key="sweep_trials").set_value(2).run()
    force = [c for c in at.checkbox if c.key == "sweep_force"]
    if force:
        force[0].check().run()
    at.button(key="sweep_create").click().run()
    no_exceptions(at)
    url = default_url(runs)
    view = read_study("ui", url)
    assert view.spec.n_trials == 2 and [p.describe() for p in view.spec.space] == ["model.encoder_heads=1|2"]
    assert view.spec.base["model"]["hidden_size"] == 8 and at.selectbox(key="sweep_study").value == "ui"
    deadline = time.monotonic() + 60
    while not live_workers(runs, "ui"):   # the page started a worker
        assert time.monotonic() < deadline, "no worker started"
        time.sleep(0.2)
    [worker] = live_workers(runs, "ui")
    at.button(key="sweep_stop").click().run()   # it stops its trial (if it took one) and exits
    deadline = time.monotonic() + TIMEOUT
    while process_alive(worker["pid"], worker["proc_start_time"]):
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.3)
    view = read_study("ui", url)
    assert view.stop_requested and not view.counts["running"]
    assert all(not r.live for r in runs_list(runs))   # a trial it had taken was stopped, not left training
