"""RunConfig: strict construction, validation messages, overrides, resolution, round trip."""

import json
import subprocess
import sys

import pytest

from atft_core.config import (ConfigError, ModelConfig, RunConfig, SECTIONS, build_config, field_docs,
                              merge_overrides, parse_overrides, resolve)


def test_defaults_are_valid_and_round_trip():
    cfg = RunConfig()
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_every_field_has_a_docstring():
    for name, section in SECTIONS.items():
        docs = field_docs(section)
        missing = [f for f in section.__dataclass_fields__ if f not in docs]
        assert not missing, f"{name}: fields without a docstring: {missing}"


@pytest.mark.parametrize("values, message", [
    ({"model": {"hidden_sise": 256}}, "unknown setting(s) model.hidden_sise"),
    ({"modle": {}}, "unknown setting(s) modle"),
    ({"model": {"hidden_size": "big"}}, "model.hidden_size: expected an integer, got 'big'"),
    ({"model": {"hidden_size": 2.5}}, "model.hidden_size: expected an integer"),
    ({"model": {"use_gat": "maybe"}}, "model.use_gat: expected true or false"),
    ({"loss": {"rankic_weight": -0.1}}, "loss.rankic_weight: must be >= 0"),
    ({"data": {"purge_days": 10}}, "data.purge_days=10 is shorter than the longest horizon (20)"),
    ({"data": {"purge_days": 20, "execution_lag": 1}}, "execution lag (1)"),
    ({"model": {"hidden_size": 30, "gat_heads": 4}}, "model.gat_heads=4 must divide model.hidden_size=30"),
    ({"loss": {"horizon_weights": [1, 2]}}, "loss.horizon_weights has 2 values for 4 horizons"),
    ({"train": {"phase_epochs": [1, 1]}}, "train.phase_epochs: give 4 values"),
    ({"train": {"mode": "fast"}}, "train.mode: 'safe' or 'optimized'"),
    ({"data": {"train_end": "2023-13-45x"}}, "data.train_end: expected YYYY-MM-DD"),
    ({"data": {"horizons": [5, 1]}}, "data.horizons: list them in increasing order"),
    ({"model": {"kind": "xgboost"}}, "model.kind: expected one of"),
    ({"model": {"kind": "factor"}}, "model.factor: name the input feature to score (a feat_* column), got ''"),
    ({"model": {"factor": "feat_fin_ey"}}, "model.factor: only model.kind='factor' uses it"),
    ({"model": {"kind": "factor", "factor": "feat_fin_ey", "factor_sign": 2}}, "model.factor_sign: expected 1, -1 or 0"),
    ({"runtime": {"device": "tpu"}}, "runtime.device"),
    ({"loss": {"neutralize": ["beta_60"]}}, "loss.neutralize: names must start with 'feat_'"),
    ({"loss": {"neutralize": ["feat_vol_20", "feat_vol_20"]}}, "loss.neutralize: a feature is listed twice"),
    ({"loss": {"neutralize": ["feat_vol_20"]}, "model": {"kind": "ridge"}}, "model.kind='ridge' would ignore it"),
    ({"train": {"lr": "inf"}}, "train.lr: must be a finite number, got inf"),
    ({"train": {"lr": float("nan")}}, "train.lr: must be a finite number, got nan"),
    ({"loss": {"huber_delta": float("inf")}}, "loss.huber_delta: must be a finite number"),
    ({"runtime": {"heartbeat_seconds": "Infinity"}}, "runtime.heartbeat_seconds: must be a finite number"),
    ({"model": {"quantiles": [0.1, "inf"]}}, "model.quantiles: must be a finite number, got [0.1, inf]"),
    ({"data": {"start": "2016-02-30"}}, "data.start: 2016-02-30 is not a calendar date"),
    ({"data": {"start": "2016-06-01", "end": "2016-01-31"}}, "data.start=2016-06-01 is after data.end=2016-01-31"),
    ({"runtime": {"num_threads": 100000}}, "runtime.num_threads: must be between 0 (auto) and 1024, got 100000"),
    ({"runtime": {"devices": 0}}, "runtime.devices: must be between 1 and 64, got 0"),
    ({"runtime": {"devices": 2, "device": "cuda:1"}}, "runtime.devices=2 uses cuda:0..1: give runtime.device 'cuda'"),
    ({"runtime": {"collective_timeout_seconds": 0}}, "runtime.collective_timeout_seconds: must be > 0"),
])
def test_bad_values_fail_with_a_message_naming_the_field(values, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(values)
    assert message in str(err.value)


def test_cli_overrides_both_forms_and_lists():
    overrides, rest = parse_overrides(["--model.hidden_size", "256", "--train.phase_epochs=1,1,2,1",
                                       "--loss.rankic_weight=0.5", "--run-dir", "runs/x"])
    assert rest == ["--run-dir", "runs/x"]
    cfg = build_config(None, overrides)
    assert cfg.model.hidden_size == 256
    assert cfg.train.phase_epochs == (1, 1, 2, 1)
    assert cfg.loss.rankic_weight == 0.5


def test_partial_config_file_keeps_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"hidden_size": 128}}))
    cfg = build_config(path, {"loss.cs_ic_weight": "0.3"})
    assert cfg.model.hidden_size == 128 and cfg.loss.cs_ic_weight == 0.3
    assert cfg.model.gat_heads == ModelConfig().gat_heads


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="unknown setting 'model.hiden_size'"):
        merge_overrides({}, {"model.hiden_size": 3})


def test_resolve_fills_every_auto_value():
    cfg = resolve(RunConfig(), cuda_available=False, cpu_count=2)
    assert cfg.runtime.device == "cpu" and cfg.runtime.precision == "fp32"
    assert cfg.data.purge_days == 20
    assert cfg.train.days_per_step == 1 and cfg.runtime.num_threads == 1
    assert cfg.loss.horizon_weights == (1.0, 1.0, 1.0, 1.0)
    opt = resolve(RunConfig().replace(**{"train.mode": "optimized", "data.execution_lag": 1}), cuda_available=True, cpu_count=8)
    assert (opt.runtime.device, opt.runtime.precision, opt.runtime.num_threads) == ("cuda", "bf16", 8)
    assert opt.data.purge_days == 21 and opt.train.days_per_step == 8
    # On the CPU, optimized mode autocasts to bf16 only where the CPU has bf16 instructions.
    opt_cpu = RunConfig().replace(**{"train.mode": "optimized"})
    assert resolve(opt_cpu, cuda_available=False, cpu_count=2, cpu_bf16=True).runtime.precision == "bf16"
    assert resolve(opt_cpu, cuda_available=False, cpu_count=2, cpu_bf16=False).runtime.precision == "fp32"
    assert resolve(RunConfig(), cuda_available=False, cpu_count=2, cpu_bf16=True).runtime.precision == "fp32"  # safe
    # Explicit values are kept, never replaced by defaults.
    kept = resolve(RunConfig().replace(**{"train.days_per_step": 3, "data.purge_days": 30}), cuda_available=False, cpu_count=2)
    assert kept.train.days_per_step == 3 and kept.data.purge_days == 30


def test_resolve_refuses_cuda_without_a_gpu():
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve(RunConfig().replace(**{"runtime.device": "cuda"}), cuda_available=False, cpu_count=2)


def test_print_config_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "atft_core.train", "--model.hidden_size=256", "--print-config"],
                         capture_output=True, text=True, check=True)
    printed = json.loads(out.stdout)
    assert printed["model"]["hidden_size"] == 256
    assert printed["data"]["purge_days"] == 20


def test_cli_rejects_unknown_setting():
    out = subprocess.run([sys.executable, "-m", "atft_core.train", "--model.hiden_size=256", "--print-config"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown setting 'model.hiden_size'" in out.stderr


def test_every_float_field_refuses_non_finite_values():
    """Not only the fields someone thought of: each float (and float list) field, by name."""
    import typing

    from atft_core.config import field_types

    for section, cls in SECTIONS.items():
        for name, hint in field_types(cls).items():
            item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
            if item is not float:
                continue
            for bad in (float("inf"), float("-inf"), float("nan")):
                value = [bad] if item is not hint else bad
                with pytest.raises(ConfigError, match=rf"^{section}\.{name}: must be a finite number"):
                    RunConfig.from_dict({section: {name: value}})


def test_json_infinity_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"train": {"lr": Infinity}}')   # Python's json reads it; JSON proper has no such value
    with pytest.raises(ConfigError, match="train.lr: must be a finite number"):
        build_config(path)
