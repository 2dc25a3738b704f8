"""Sweeps without training: search spaces checked against RunConfig (nothing created when one is
refused), storage URLs and their passwords, a study's planned trials, the objective and stops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from atft_core.config import ConfigError
from atft_core.sweep import cli
from atft_core.sweep.objective import best_so_far, best_value
from atft_core.sweep.space import Param, check_space, parse_param, probe_values, trial_config
from atft_core.sweep.spec import StudySpec
from atft_core.sweep.storage import default_url, normalise_url, redact, shown_url
from atft_core.sweep.study import clear_stop, create_study, request_stop
from atft_core.sweep.trials import read_study

REPO = Path(__file__).resolve().parents[1]


def base(dataset: Path) -> dict:
    return {"data": {"path": str(dataset), "lookback": 5, "horizons": [1, 5]}, "model": {"hidden_size": 8, "fan_top_k": 2},
            "train": {"phase_epochs": [1, 1, 0, 0], "mode": "optimized"}}


def sweep_cli(*args: str, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atft_core.sweep", "--runs-dir", str(runs), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("param, message", [
    ("model.hidden_sizee=8..16", "unknown setting 'model.hidden_sizee'"),
    ("train.lr=0.01..0.001", "train.lr: low 0.01 > high 0.001"),
    ("train.lr=0.01..0.01", "train.lr: empty range 0.01..0.01"),
    ("model.kind=", "search parameter 'model.kind='"),
    ("train.lr=-0.1..0.01", "train.lr=-0.1 (from train.lr=-0.1..0.01) is refused: train.lr: must be > 0"),
    ("train.lr=0..0.01:log", "train.lr: a log range needs low > 0"),
    ("model.hidden_size=8..16", "model.hidden_size=9 (from model.hidden_size=8..16) is refused: "
                                "model.encoder_heads=4 must divide model.hidden_size=9"),
    ("model.hidden_size=8..16.5", "model.hidden_size: expected an integer, got '16.5'"),
    ("model.hidden_size=8..20:step=8", "model.hidden_size: high - low (20 - 8) is not a multiple of step 8"),
    ("train.mode=safe|fast", "train.mode=fast (from train.mode=safe|fast) is refused: train.mode: 'safe' or 'optimized'"),
    ("model.use_gat=0..1", "model.use_gat is a bool setting: search it with a list of choices"),
    ("train.lr=0.001", "a fixed value belongs in the base config (--train.lr=0.001)"),
])
def test_a_bad_search_space_is_refused_naming_the_field_and_nothing_is_created(
        demo_dataset: Path, tmp_path: Path, capsys, param: str, message: str) -> None:
    runs = tmp_path / "runs"
    code = cli.main(["--runs-dir", str(runs), "create", "hp", f"--config={_base_file(demo_dataset, tmp_path)}",
                     "--param", param, "--trials", "3"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith("error: ") and message in out.err and out.err.count("\n") == 1, out.err
    assert not runs.exists()   # not even the SQLite file


def test_the_command_line_refuses_in_one_line(demo_dataset: Path, tmp_path: Path) -> None:
    out = sweep_cli("create", "hp", f"--config={_base_file(demo_dataset, tmp_path)}", "--param",
                    "model.hidden_size=8|12", "--param", "model.gat_heads=8", runs=tmp_path / "runs")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "error: model.gat_heads: '8' is neither a range low..high nor choices a|b; a fixed value " \
                         "belongs in the base config (--model.gat_heads=8)\n"
    assert not (tmp_path / "runs").exists()


def _base_file(dataset: Path, tmp_path: Path) -> Path:
    path = tmp_path / "base.json"
    path.write_text(json.dumps(base(dataset)))
    return path


def test_values_of_two_parameters_are_checked_together(demo_dataset: Path) -> None:
    params = [parse_param("model.hidden_size=8|12"), parse_param("model.encoder_heads=2|8")]
    with pytest.raises(ConfigError, match=r"model.hidden_size=12 with model.encoder_heads=8 .* is refused: "
                                          r"model.encoder_heads=8 must divide model.hidden_size=12"):
        check_space(base(demo_dataset), params)
    check_space(base(demo_dataset), [parse_param("model.hidden_size=8|16"), parse_param("model.encoder_heads=2|8")])


def test_space_forms_and_values(demo_dataset: Path) -> None:
    lr = parse_param("train.lr=1e-4..1e-2:log")
    assert lr == Param("train.lr", 1e-4, 1e-2, log=True) and Param.from_dict(lr.to_dict()) == lr
    phases = parse_param("train.phase_epochs=1,1,0,0|2,1,0,0")
    assert phases.choices == ((1, 1, 0, 0), (2, 1, 0, 0)) and Param.from_dict(phases.to_dict()) == phases
    assert probe_values(parse_param("model.hidden_size=8..32:step=8")) == [8, 16, 24, 32]
    assert probe_values(parse_param("model.graph_top_k=1..1000")) == [1, 2, 3, 501, 1000]
    cfg = trial_config(base(demo_dataset), {"train.phase_epochs": (2, 1, 0, 0), "train.lr": 0.003})
    assert cfg.train.phase_epochs == (2, 1, 0, 0) and cfg.train.lr == 0.003
    with pytest.raises(ConfigError, match="train.lr: searched twice"):
        check_space(base(demo_dataset), [lr, parse_param("train.lr=0.1..0.2")])
    with pytest.raises(ConfigError, match="give either choices or a range"):
        Param.from_dict({"name": "train.lr", "low": 1, "high": 2, "choices": [1]})


def spec(dataset: Path, **changes) -> StudySpec:
    values = {"name": "hp", "base": base(dataset), "space": (parse_param("train.lr=1e-4..1e-2:log"),), "n_trials": 3}
    return StudySpec(**{**values, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"metric": "test/rank_ic"}, "not a validation metric (val/...); the test split never chooses anything"),
    ({"metric": "val/rank_icc"}, "'val/rank_icc' is not logged by the trainer"),
    ({"metric": "val/rank_ic_20d"}, "val/rank_ic_20d needs the 20-day horizon, but data.horizons can be 1, 5"),
    ({"metric": "val/loss"}, "val/loss is minimised; set study.direction=minimize"),
    ({"name": "../x"}, "study name '../x'"),
    ({"n_trials": 0}, "study.n_trials: an integer from 1"),
    ({"heartbeat_seconds": 10, "grace_seconds": 15}, "study.grace_seconds=15 must be at least twice"),
    ({"pruner": "hyperband"}, "study.pruner: one of median, percentile, none"),
])
def test_a_bad_study_is_refused_naming_the_setting(demo_dataset: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        spec(demo_dataset, **changes)


def test_a_study_is_created_with_all_its_trials_waiting_once(demo_dataset: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    url = default_url(runs)
    assert cli.main(["--runs-dir", str(runs), "list"]) == 0
    assert capsys.readouterr().out == f"no study in {url}\n" and not runs.exists()   # listing creates nothing
    stored = create_study(spec(demo_dataset, n_trials=4), url, runs)
    assert stored.base["data"]["path"] == str(demo_dataset.resolve())
    view = read_study("hp", url)
    assert [(t.number, t.state, t.slot) for t in view.trials] == [(i, "waiting", i) for i in range(4)]
    assert view.slots_done == 0 and not view.finished and view.best is None
    assert cli.main(["--runs-dir", str(runs), "create", "hp", f"--config={_base_file(demo_dataset, tmp_path)}",
                     "--param", "train.lr=1e-4..1e-2"]) == 2
    assert capsys.readouterr().err == f"error: study 'hp' already exists in {url}\n"
    assert len(read_study("hp", url).trials) == 4
    request_stop("hp", url, "enough")
    assert read_study("hp", url).stop_requested["reason"] == "enough"
    clear_stop("hp", url)
    assert read_study("hp", url).stop_requested is None
    assert cli.main(["--runs-dir", str(runs), "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "hp", "planned": 4, "done": 0, "running": 0, "best_value": None,
                                          "metric": "val/rank_ic_1d", "stopped": False}]


def test_retries_and_copies_count_once_per_planned_trial(demo_dataset: Path, tmp_path: Path) -> None:
    url = default_url(tmp_path)
    create_study(spec(demo_dataset, n_trials=2), url, tmp_path)
    study = optuna.load_study(study_name="hp", storage=url)
    first = study.ask()     # trial 0, taken as a worker takes it
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    retry(study, study.trials[0])
    view = read_study("hp", url)
    assert [(t.number, t.state, t.slot, t.retry_of) for t in view.trials] == [
        (0, "fail", 0, None), (1, "waiting", 1, None), (2, "waiting", 0, 0)]
    assert view.slots_done == 0


def test_storage_urls_and_passwords() -> None:
    url = "postgresql://sweep:p%40ss-word@db.example:5432/studies"
    assert normalise_url(url) == "postgresql+psycopg://sweep:p%40ss-word@db.example:5432/studies"
    assert normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert shown_url(url) == "postgresql+psycopg://sweep:***@db.example:5432/studies"
    assert redact("failed for p@ss-word and p%40ss-word", url) == "failed for *** and ***"
    with pytest.raises(ConfigError, match="mysql:// is not supported"):
        normalise_url("mysql://u:secret@h/d")
    with pytest.raises(ConfigError, match="a SQLite storage is a file"):
        normalise_url("sqlite:///:memory:")


def test_the_objective_is_the_best_epoch() -> None:
    values = [(1, 0.02), (2, 0.05), (3, 0.01)]
    assert best_so_far(values, "maximize") == [(1, 0.02), (2, 0.05), (3, 0.05)]
    assert best_value(values, "minimize") == 0.01 and best_value([], "maximize") is None


def test_cli_spec_from_arguments(demo_dataset: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps([{"name": "model.hidden_size", "choices": [8, 16]}]))
    args, extra = cli._parser().parse_known_args(
        ["create", "hp", f"--config={_base_file(demo_dataset, tmp_path)}", "--model.dropout_x=1", "--space", str(space)])
    with pytest.raises(ConfigError, match="unknown setting 'model.dropout_x'"):
        cli.spec_from_args(args, extra)
    args, extra = cli._parser().parse_known_args(
        ["create", "hp", f"--config={_base_file(demo_dataset, tmp_path)}", "--train.lr=0.01", "--space", str(space),
         "--param", "train.weight_decay=0..0.1", "--pruner", "none", "--trials", "7"])
    made = cli.spec_from_args(args, extra)
    assert made.base["train"]["lr"] == "0.01" and [p.name for p in made.space] == ["train.weight_decay", "model.hidden_size"]
    assert (made.n_trials, made.pruner) == (7, "none")


def test_a_studies_file_deleted_and_made_again_is_read_afresh(demo_dataset: Path, tmp_path: Path) -> None:
    """Storages are shared within a process; a SQLite file removed and created again (a user
    starting over) must not be read through a connection to the old file."""
    from atft_core.sweep.storage import open_storage, sqlite_path
    from atft_core.sweep.trials import study_names

    url = default_url(tmp_path)
    create_study(spec(demo_dataset, n_trials=1), url, tmp_path)
    assert study_names(url) == ["hp"] and open_storage(url) is open_storage(url)
    sqlite_path(url).unlink()
    assert study_names(url) == []
    create_study(spec(demo_dataset, name="again", n_trials=1), url, tmp_path)
    assert study_names(url) == ["again"] and [t.state for t in read_study("again", url).trials] == ["waiting"]
