"""Config flow: every RunConfig field changes what it controls, through the code that reads it.

`PROBES` maps each dotted field to ``(changed_value, probe)`` or ``(changed_value, probe, given)``.
A probe takes the *requested* config and returns an observable computed by the real consumer
of the field (load_panel, make_splits, eligible_days, GraphCache, ATFTGATFAN, fit_baseline,
resolve, Trainer.train_epoch / validate / fit / _track_best / _check_degenerate / check_health,
StatusFile, _autocast_factory, _configure_torch). ``given`` are settings applied on *both* sides, for a field
that only acts together with another one (``train.step_gamma`` needs ``schedule='step'``).
A field that the code ignores leaves its observable unchanged and fails here; a new field
without a probe fails `test_every_field_has_a_probe`.

Expensive observables (panel loading, one tiny trainer epoch) are cached per config, and
`test_probes_are_deterministic` recomputes every default observable from scratch so that no
difference found above can come from run-to-run noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import torch

from atft_core.baselines import fit_baseline
from atft_core.batching import make_day_batch
from atft_core.config import PHASE_NAMES, SECTIONS, ConfigError, RunConfig, resolve
from atft_core.data.demo import make_demo
from atft_core.data.errors import DataError
from atft_core.data.panel import load_panel
from atft_core.data.splits import make_splits
from atft_core.distributed import collective_timeout
from atft_core.graph import GraphCache
from atft_core.inference import ModelPredictor, eligible_days
from atft_core.model import ATFTGATFAN
from atft_core.run_files import MetricsWriter, RunFiles, StatusFile, read_json
from atft_core.train import Trainer, TrainingFailed, _autocast_factory, _configure_torch, _seed_everything

TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 1, 0),
    "train.days_per_step": 4,
}
CPU_COUNT = 4
"""Machine fact handed to resolve(): fixed, so resolution does not depend on the test machine."""
TRAIN_DAYS, VAL_DAYS = 8, 4
"""The tiny trainer sees only this many training / validation days: two steps of four days."""
MODEL_DAYS = (100, 101)
"""Panel days of the fixed batch that model and graph probes look at."""
HEARTBEAT_WAIT = 1.0
"""Seconds to wait for a status heartbeat (the default 5 s interval gives none in that time)."""


class Raised(NamedTuple):
    """Observable of a consumer that refused the config (compared like any other value)."""

    error: str


class OtherDataset:
    """Placeholder for `data.path`'s changed value: a second demo dataset (module fixture)."""


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (DataError, ConfigError, TrainingFailed, ValueError) as exc:
        return Raised(type(exc).__name__)


def _effective(cfg: RunConfig) -> RunConfig:
    """The config the trainer runs with (run_training resolves before building the Trainer)."""
    return resolve(cfg, cuda_available=False, cpu_count=CPU_COUNT)


# ---------------------------------------------------------------------------------------------
# Cached shared work (cleared by the determinism test)

_CACHED: list[Any] = []


def _cached(fn):
    wrapped = functools.lru_cache(maxsize=None)(fn)
    _CACHED.append(wrapped)
    return wrapped


def _clear_caches() -> None:
    for fn in _CACHED:
        fn.cache_clear()


@_cached
def _panel(data_cfg):
    return load_panel(data_cfg)


@contextlib.contextmanager
def _trainer(cfg: RunConfig):
    """A real Trainer on the effective config in a temporary run folder, with few days.

    The global seed is fixed (not cfg.runtime.seed) so that the seed probe sees only the
    Trainer's own use of the seed (the day order of each epoch).
    """
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp))
        files.checkpoints.mkdir(parents=True)
        _seed_everything(0)
        trainer = Trainer(_effective(cfg), files, cfg.to_dict(), StatusFile(files, cfg.runtime.heartbeat_seconds))
        trainer.train_days = trainer.train_days[:TRAIN_DAYS]
        trainer.val_days = trainer.val_days[:VAL_DAYS]
        yield trainer


# ---------------------------------------------------------------------------------------------
# Observables


def _panel_obs(cfg: RunConfig) -> Any:
    def load():
        p = _panel(cfg.data)
        return {"features": p.feature_names, "shape": tuple(p.features.shape), "dates": p.dates,
                "targets": p.targets, "fingerprint": p.fingerprint}
    return _outcome(load)


def _splits_obs(cfg: RunConfig) -> Any:
    eff = _effective(cfg)
    return _outcome(lambda: dataclasses.astuple(make_splits(_panel(eff.data).dates, eff.data)))


def _eligible_obs(cfg: RunConfig) -> np.ndarray:
    eff = _effective(cfg)
    panel = _panel(eff.data)
    return eligible_days(panel, make_splits(panel.dates, eff.data).train, eff)


@_cached
def _lookback_obs(cfg: RunConfig) -> dict[str, Any]:
    eff = _effective(cfg)
    panel = _panel(eff.data)
    torch.manual_seed(0)
    model = ATFTGATFAN(eff.model, len(panel.feature_names), len(eff.data.horizons))
    predictor = ModelPredictor(model, panel, eff, None, None, torch.device("cpu"), contextlib.nullcontext)
    return {"eligible": eligible_days(panel, np.arange(12), eff), "pred": predictor(np.array(MODEL_DAYS))}


@_cached
def _model_obs(cfg: RunConfig) -> dict[str, Any]:
    """Parameter count and one forward pass (all phases on, dropout active) of a seeded model."""
    eff = _effective(cfg)
    panel = _panel(eff.data)
    torch.manual_seed(0)
    model = ATFTGATFAN(eff.model, len(panel.feature_names), len(eff.data.horizons))
    graphs = GraphCache(panel.returns, panel.valid, panel.sectors, eff.model) if eff.model.use_gat else None
    batch = make_day_batch(panel, torch.tensor(MODEL_DAYS), eff.data.lookback, graphs, "cpu")
    model.train()
    model.set_phase(len(PHASE_NAMES) - 1)
    torch.manual_seed(1)
    out = model(batch)
    return {"n_params": model.count_parameters(), "point": out.point.detach(),
            "quantiles": out.quantiles.detach(), "alpha": out.alpha}


@_cached
def _graph_obs(cfg: RunConfig) -> dict[str, Any]:
    eff = _effective(cfg)
    panel = _panel(eff.data)
    cache = GraphCache(panel.returns, panel.valid, panel.sectors, eff.model)
    edges = [cache.for_day(t)[0] for t in range(100, 107)]
    return {"edges": edges, "stats": cache.stats()}


@_cached
def _epoch_obs(cfg: RunConfig, phase: int = 0, epoch_in_phase: int = 0) -> dict[str, Any]:
    """One real Trainer.train_epoch (two steps) plus the validation loss, on the tiny trainer."""
    with _trainer(cfg) as trainer, MetricsWriter(trainer.files.metrics) as metrics:
        values = trainer.train_epoch(phase, epoch_in_phase, metrics)
        values = {k: v for k, v in values.items() if k not in ("epoch_seconds", "samples_per_second")
                  and not k.startswith("memory/")}
        values["val/loss"] = trainer.validate(phase)["val/loss"]
        values["steps"] = trainer.progress.step
        values["logged_steps"] = len(trainer.files.metrics.read_text().splitlines())
        values["optimizer"] = type(trainer.optimizer).__name__
        values["params"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return values


@_cached
def _fit_obs(cfg: RunConfig) -> tuple[str, int, int]:
    """Trainer.fit over every phase: final state, epochs run, epochs skipped by early stopping."""
    with _trainer(cfg) as trainer, MetricsWriter(trainer.files.metrics) as metrics:
        state = trainer.fit(0, metrics)
        return state, trainer.progress.epoch, trainer.progress.skipped_epochs


def _kind_obs(cfg: RunConfig) -> tuple[bool, str, int]:
    with _trainer(cfg) as trainer:
        return trainer.is_deep, type(trainer.model).__name__, trainer.epochs_planned


def _ridge_obs(cfg: RunConfig) -> torch.Tensor:
    eff = _effective(cfg)
    panel = _panel(eff.data)
    return fit_baseline(eff, panel, make_splits(panel.dates, eff.data).train).state_dict()["weights"]


def _factor_obs(cfg: RunConfig) -> np.ndarray:
    """The factor baseline's validation scores."""
    eff = _effective(cfg)
    panel = _panel(eff.data)
    splits = make_splits(panel.dates, eff.data)
    return fit_baseline(eff, panel, splits.train).predict(panel, splits.val)


def _track_best_obs(cfg: RunConfig) -> tuple[float, int, int]:
    """Feed three validation RankICs to Trainer._track_best (+0.02, then +0.01)."""
    with _trainer(cfg) as trainer:
        for epoch, rank_ic in enumerate((0.10, 0.12, 0.13), start=1):
            trainer.progress.epoch = epoch
            trainer._track_best(rank_ic)
        p = trainer.progress
        return p.best_rank_ic, p.best_epoch, p.bad_epochs


def _degenerate_obs(cfg: RunConfig) -> tuple[Any, Any]:
    """Trainer._check_degenerate with a validation prediction std of 1e-3: warning / failure."""
    with _trainer(cfg) as trainer:
        outcome = _outcome(lambda: trainer._check_degenerate(1e-3))
        return outcome, bool((read_json(trainer.files.status) or {}).get("warnings"))


def _health_obs(cfg: RunConfig) -> tuple[str, ...]:
    """Trainer.check_health over two GAT-phase epochs whose metrics raise no alarm at the defaults:
    the warnings it leaves in status.json."""
    epochs = ({"gat/grad_norm": 0.01, "gat/alpha": 0.45, "val/pred_std": 0.1, "train/loss": 1.0},
              {"gat/grad_norm": 0.01, "gat/alpha": 0.45, "val/pred_std": 0.05, "train/loss": 1.1})
    with _trainer(cfg) as trainer:
        for epoch, values in enumerate(epochs, start=1):
            trainer.check_health(epoch, 2, values)
        return tuple((read_json(trainer.files.status) or {}).get("warnings", ()))


@_cached
def _train_sample_obs(cfg: RunConfig) -> dict[str, Any]:
    """Trainer.validate: the metrics it logs on its sample of training days."""
    with _trainer(cfg) as trainer:
        return {k: v for k, v in trainer.validate(0).items() if k.startswith("train/")}


def _resolved(*dotted: str, cuda_available: bool = False) -> Callable[[RunConfig], tuple]:
    def probe(cfg: RunConfig) -> tuple:
        eff = resolve(cfg, cuda_available=cuda_available, cpu_count=CPU_COUNT)
        return tuple(getattr(getattr(eff, s), n) for s, n in (d.split(".") for d in dotted))
    probe.__name__ = f"resolve->{','.join(dotted)}"
    return probe


def _threads_obs(cfg: RunConfig) -> int:
    """torch threads after _configure_torch(effective config); the global state is restored."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        _configure_torch(_effective(cfg))
        return torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _precision_obs(cfg: RunConfig) -> torch.dtype:
    """dtype of a linear layer's output under the trainer's autocast context."""
    eff = _effective(cfg)
    layer = torch.nn.Linear(4, 4)
    with _autocast_factory(eff, torch.device(eff.runtime.device))():
        return layer(torch.ones(2, 4)).dtype


def _heartbeat_obs(cfg: RunConfig) -> bool:
    """Whether StatusFile's heartbeat thread refreshed status.json within HEARTBEAT_WAIT seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp))
        status = StatusFile(files, cfg.runtime.heartbeat_seconds)
        status.set(state="running")
        first = read_json(files.status)["updated"]
        status.start()
        deadline = time.monotonic() + HEARTBEAT_WAIT
        beat = False
        while not beat and time.monotonic() < deadline:
            time.sleep(0.02)
            beat = (read_json(files.status) or {}).get("updated", first) != first
        status.close()
        status._thread.join(timeout=5)  # before the folder goes away
        return beat


def _compile_obs(cfg: RunConfig) -> tuple:
    """What the trainer's step calls as the model, and whether its batches are padded."""
    with _trainer(cfg) as trainer:
        return type(trainer.step.forward).__name__, trainer.batcher(0).pad


def _key(source: Callable[..., dict], *keys: str, **kwargs: Any) -> Callable[[RunConfig], Any]:
    """Probe that reads `keys` of a (cached) observable dict."""
    def probe(cfg: RunConfig) -> Any:
        values = source(cfg, **kwargs)
        return tuple(values[k] for k in keys)
    probe.__name__ = f"{source.__name__}[{','.join(keys)}]"
    return probe


_LOSS = _key(_epoch_obs, "train/loss", "val/loss")
_LR = _key(_epoch_obs, "lr")
_PARAMS = _key(_epoch_obs, "params")
_MODEL_PARAMS = _key(_model_obs, "n_params")
_MODEL_OUT = _key(_model_obs, "point", "quantiles", "alpha")
_GRAPH = _key(_graph_obs, "edges", "stats")

DATED_SPLITS = {"data.train_end": "2016-08-31", "data.val_end": "2016-10-31"}

PROBES: dict[str, tuple] = {
    "data.path": (OtherDataset, _panel_obs),
    "data.features": (("feat_ret_1d", "feat_ret_5d", "feat_vol_20"), _panel_obs),
    "data.expected_feature_count": (3, _panel_obs),
    "data.horizons": ((1, 5), _panel_obs),
    "data.lookback": (8, _key(_lookback_obs, "eligible", "pred")),
    "data.start": ("2016-03-01", _panel_obs),
    "data.end": ("2016-10-31", _panel_obs),
    "data.train_end": ("2016-07-29", _splits_obs, DATED_SPLITS),
    "data.val_end": ("2016-10-14", _splits_obs, DATED_SPLITS),
    "data.train_fraction": (0.6, _splits_obs),
    "data.val_fraction": (0.2, _splits_obs),
    "data.purge_days": (25, _splits_obs),
    "data.embargo_days": (10, _splits_obs),
    "data.execution_lag": (1, _panel_obs),
    "data.min_stocks_per_day": (61, _eligible_obs),

    "model.kind": ("ridge", _kind_obs),
    "model.hidden_size": (12, _MODEL_PARAMS),
    "model.encoder_layers": (2, _MODEL_PARAMS),
    "model.encoder_heads": (4, _MODEL_OUT),
    "model.encoder_dropout": (0.5, _MODEL_OUT),
    "model.fan_top_k": (1, _MODEL_OUT),
    "model.use_gat": (False, _MODEL_PARAMS),
    "model.gat_layers": (1, _MODEL_PARAMS),
    "model.gat_heads": (4, _MODEL_OUT),
    "model.gat_dropout": (0.5, _MODEL_OUT),
    "model.graph_top_k": (3, _GRAPH),
    "model.graph_corr_window": (40, _GRAPH),
    "model.graph_rebuild_interval": (1, _GRAPH),
    "model.graph_sector_edges": (False, _GRAPH),
    "model.graph_max_sector_edges": (1, _GRAPH),
    "model.gate_init": (0.8, _key(_model_obs, "alpha", "point")),
    "model.gate_learnable": (False, _MODEL_PARAMS),
    "model.quantiles": ((0.25, 0.75), _key(_model_obs, "n_params", "quantiles")),
    "model.ridge_alpha": (1e4, _ridge_obs, {"model.kind": "ridge"}),
    "model.factor": ("feat_vol_20", _factor_obs, {"model.kind": "factor", "model.factor": "feat_ret_1d"}),
    "model.factor_sign": (-1, _factor_obs, {"model.kind": "factor", "model.factor": "feat_ret_1d"}),

    "loss.huber_weight": (2.0, _LOSS),
    "loss.huber_delta": (0.05, _key(_epoch_obs, "loss/huber", "val/loss")),
    "loss.pinball_weight": (2.0, _LOSS),
    "loss.rankic_weight": (1.0, _LOSS),
    "loss.cs_ic_weight": (1.0, _LOSS),
    "loss.sharpe_weight": (1.0, _LOSS),
    "loss.horizon_weights": ((4.0, 3.0, 2.0, 1.0), _LOSS),
    "loss.soft_rank_temperature": (1.0, _key(_epoch_obs, "loss/rankic", "val/loss")),
    "loss.target_normalization": ("none", _key(_epoch_obs, "loss/huber", "val/loss")),
    "loss.neutralize": (("feat_beta_60", "feat_vol_20"), _key(_epoch_obs, "loss/cs_ic", "val/loss")),

    "train.mode": ("optimized", _resolved("runtime.num_threads", "runtime.precision", cuda_available=True)),
    "train.optimizer": ("sgd", _key(_epoch_obs, "optimizer", "params")),
    "train.lr": (1e-2, _key(_epoch_obs, "lr", "params")),
    "train.weight_decay": (0.5, _PARAMS),
    "train.grad_clip": (1e-3, _PARAMS, {"train.optimizer": "sgd"}),
    "train.ema_decay": (0.5, _key(_epoch_obs, "val/loss")),   # validation reads the averaged weights
    "train.schedule": ("constant", _LR),
    "train.step_gamma": (0.25, _key(_epoch_obs, "lr", epoch_in_phase=1), {"train.schedule": "step"}),
    "train.phase_epochs": ((2, 1, 1, 0), _LR),
    "train.phase_lr_scale": ((0.5, 1.0, 1.0, 0.3), _LR),
    "train.phase_rank_loss_scale": ((0.5, 1.0, 1.0, 1.0), _key(_epoch_obs, "train/loss")),
    "train.days_per_step": (2, _key(_epoch_obs, "steps", "val/loss")),
    "train.early_stopping_patience": (1, _fit_obs,
                                      {"train.phase_epochs": (3, 0, 0, 0), "train.early_stopping_min_delta": 1.0}),
    "train.early_stopping_min_delta": (0.015, _track_best_obs),
    "train.log_every_steps": (1, _key(_epoch_obs, "logged_steps")),
    "train.degenerate_std_threshold": (1.0, _degenerate_obs),
    "train.stop_on_degenerate": (True, _degenerate_obs, {"train.degenerate_std_threshold": 1.0}),
    "train.alarm_gat_grad_norm": (1.0, _health_obs),
    "train.alarm_alpha_margin": (0.49, _health_obs),
    "train.alarm_pred_std_ratio": (0.9, _health_obs),
    "train.alarm_loss_rise": (0.05, _health_obs),
    "train.train_eval_days": (16, _train_sample_obs),

    "runtime.device": ("cpu", _resolved("runtime.device", cuda_available=True)),
    "runtime.precision": ("bf16", _precision_obs),
    "runtime.seed": (1, _PARAMS),
    "runtime.num_threads": (2, _threads_obs),
    "runtime.heartbeat_seconds": (0.05, _heartbeat_obs),
    # The processes themselves are tests/test_distributed.py's: here, the threads each one gets.
    "runtime.devices": (2, _resolved("runtime.num_threads"), {"train.mode": "optimized"}),
    "runtime.collective_timeout_seconds": (5.0, collective_timeout),
    "runtime.compile": ("model", _compile_obs, {"train.mode": "optimized"}),
}


def _entry(name: str) -> tuple[Any, Callable[[RunConfig], Any], dict[str, Any]]:
    changed, probe, *rest = PROBES[name]
    return changed, probe, (rest[0] if rest else {})


def _field(cfg: RunConfig, name: str) -> Any:
    section, field = name.split(".")
    return getattr(getattr(cfg, section), field)


def _same(a: Any, b: Any) -> bool:
    """Exact equality of nested observables (tensors, arrays, dicts, sequences, scalars)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return _same(a.detach().cpu().numpy(), b.detach().cpu().numpy()) if a.dtype != torch.bfloat16 \
            else _same(a.float(), b.float())
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and not isinstance(a, Raised):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------------------
# Fixtures and tests


@pytest.fixture(scope="module")
def base_cfg(demo_dataset) -> RunConfig:
    return RunConfig().replace(**{"data.path": str(demo_dataset), **TINY})


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("other") / "other.parquet"
    make_demo(out, n_stocks=30, n_days=260, seed=11)
    return out


def test_every_field_has_a_probe():
    fields = {f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert not fields - set(PROBES), f"fields without a probe in PROBES: {sorted(fields - set(PROBES))}"
    assert not set(PROBES) - fields, f"PROBES names fields RunConfig does not have: {sorted(set(PROBES) - fields)}"


@pytest.mark.parametrize("name", list(PROBES))
def test_changing_a_field_changes_what_it_controls(name, base_cfg, other_dataset):
    changed, probe, given = _entry(name)
    changed = str(other_dataset) if changed is OtherDataset else changed
    before_cfg = base_cfg.replace(**given)
    after_cfg = before_cfg.replace(**{name: changed})
    assert _field(before_cfg, name) != _field(after_cfg, name), f"{name}: the changed value equals the default"
    before = probe(before_cfg)
    assert not isinstance(before, Raised), f"{name}: {probe.__name__} refused the default config: {before}"
    after = probe(after_cfg)
    assert not _same(before, after), (
        f"{name}: changing it from {_field(before_cfg, name)!r} to {changed!r} left {probe.__name__} unchanged "
        "(the field is ignored by the code that should use it)")


def test_probes_are_deterministic(base_cfg):
    """The default observables, recomputed without caches, are identical: differences are real."""
    first = {name: PROBES[name][1](base_cfg.replace(**_entry(name)[2])) for name in PROBES}
    _clear_caches()
    for name in PROBES:
        again = PROBES[name][1](base_cfg.replace(**_entry(name)[2]))
        assert _same(first[name], again), f"{name}: {PROBES[name][1].__name__} differs between two identical runs"
