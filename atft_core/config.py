"""One typed, strict run configuration from the edge (UI or CLI) down to the trainer.

`RunConfig` is a tree of frozen dataclasses. It is built once at an entry point, from
defaults + an optional JSON file (which may name only the fields it changes) + dotted
overrides such as ``--model.hidden_size=256``; unknown keys, wrong types and contradictory
values raise `ConfigError` with a message that names the field. `resolve()` then fills every
"auto" value (device, purge, days per step, horizon weights, threads) so the *effective*
config that is saved with a run states exactly what ran. Code below the entry points takes
this object and nothing else: no environment variables, no argv, no tunable literals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

MODEL_KINDS = ("atft_gat_fan", "reversal_1d", "reversal_5d", "momentum_20d", "low_vol", "ridge", "factor")
"""`model.kind` values: the deep model, single-factor baselines, a ridge regression and any input
feature as a one-line factor (`model.factor`)."""
FACTOR_SIGNS = (1, -1, 0)
"""`model.factor_sign` values: as given (1, -1) or chosen on the training days (0)."""

TARGET_NORMALIZATIONS = ("cs_zscore", "cs_rank", "none")
"""`loss.target_normalization` values (see atft_core.loss)."""

PHASE_NAMES = ("baseline", "adaptive_norm", "gat", "finetune")
"""Training phases in order: 0 no FAN / no GAT, 1 adds FAN, 2 adds GAT, 3 fine-tunes all."""

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_THREADS = 1024
"""Upper bound of `runtime.num_threads`: far beyond any CPU, well below what exhausts memory
(100,000 threads made the dataset reader fail with "malloc failed")."""
MAX_DEVICES = 64
"""Upper bound of `runtime.devices` (processes of one data-parallel run): eight 8-GPU hosts."""
COMPILE_MODES = ("off", "model", "step")
"""`runtime.compile` values (atft_core/compiled.py)."""


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or contradicts another setting."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which columns, and how dates are split."""

    path: str = "data/demo.parquet"
    """Model-ready parquet written by `python -m atft_core.data build` or `demo`."""
    features: tuple[str, ...] = ()
    """Feature columns to use; empty means every `feat_*` column in the file."""
    expected_feature_count: int = 0
    """If > 0, refuse to train unless exactly this many features are loaded."""
    horizons: tuple[int, ...] = (1, 5, 10, 20)
    """Forward-return horizons in trading days; each needs a `target_{h}d` column."""
    lookback: int = 20
    """Days of history the encoder sees for each prediction (the window ends at day t)."""
    start: str = ""
    """First date used (ISO `YYYY-MM-DD`); empty means the first date in the file."""
    end: str = ""
    """Last date used (ISO); empty means the last date in the file."""
    train_end: str = ""
    """Last training date (ISO). With `val_end`, splits by date instead of fractions."""
    val_end: str = ""
    """Last validation date (ISO); the test segment follows after the purge."""
    train_fraction: float = 0.7
    """Share of dates for training when no split dates are given."""
    val_fraction: float = 0.15
    """Share of dates for validation when no split dates are given; the rest is test."""
    purge_days: int = 0
    """Days dropped between segments; 0 = auto (longest horizon + execution lag). Never less."""
    embargo_days: int = 5
    """Extra days dropped after the purge, against serial correlation across the boundary."""
    execution_lag: int = 0
    """0: label Close(t)->Close(t+h); 1: Close(t+1)->Close(t+1+h), as JPX 2022 scored."""
    min_stocks_per_day: int = 20
    """Dates with fewer valid stocks are skipped: cross-sectional metrics need a cross-section."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of ATFT-GAT-FAN (or which baseline to run instead)."""

    kind: str = "atft_gat_fan"
    """One of MODEL_KINDS; baselines go through the same data, splits, metrics and run folder."""
    hidden_size: int = 64
    """Width of the encoder, GAT and heads; the parameter count scales with it."""
    encoder_layers: int = 1
    """Stacked LSTM layers in the temporal encoder."""
    encoder_heads: int = 4
    """Heads of the encoder's temporal self-attention; must divide hidden_size."""
    encoder_dropout: float = 0.1
    """Dropout inside the encoder (variable selection, LSTM output, attention)."""
    fan_top_k: int = 3
    """Frequencies FAN removes per stock and feature (FFT top-K amplitude); 0 turns FAN off."""
    use_gat: bool = True
    """Use the graph attention block at all (False is the GAT-off ablation)."""
    gat_layers: int = 2
    """Stacked GATv2Conv layers."""
    gat_heads: int = 4
    """Attention heads per GAT layer; must divide hidden_size."""
    gat_dropout: float = 0.1
    """Dropout on GAT attention coefficients and outputs."""
    graph_top_k: int = 10
    """Edges per stock to its most correlated peers (trailing returns)."""
    graph_corr_window: int = 60
    """Trailing days of returns used for the correlation graph."""
    graph_rebuild_interval: int = 5
    """Rebuild the graph every this many days; in between the last graph (built from the past) is reused."""
    graph_sector_edges: bool = True
    """Add edges between stocks of the same Sector33Code."""
    graph_max_sector_edges: int = 10
    """Cap on same-sector edges per stock (nearest by correlation), to bound graph size."""
    gate_init: float = 0.5
    """Initial residual-gate alpha in (0, 1): share of the GAT output in the fused vector."""
    gate_learnable: bool = True
    """Learn alpha (True) or keep it fixed at gate_init (False)."""
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    """Quantile levels of the pinball heads, each in (0, 1), increasing."""
    ridge_alpha: float = 1.0
    """L2 penalty of the ridge baseline (model.kind = 'ridge')."""
    factor: str = ""
    """With model.kind = 'factor': the input feature that is the score (e.g. feat_fin_ey); it must
    be among the loaded features. Empty for every other kind."""
    factor_sign: int = 1
    """With model.kind = 'factor': 1 ranks high values of model.factor first, -1 low ones; 0 takes
    the sign whose mean daily RankIC on the training days (first horizon) is positive."""


@dataclass(frozen=True)
class LossConfig:
    """Weights of every loss term; each term is also logged on its own."""

    huber_weight: float = 1.0
    """Weight of the Huber point loss."""
    huber_delta: float = 1.0
    """Huber threshold, in units of the (normalised) target."""
    pinball_weight: float = 0.5
    """Weight of the quantile (pinball) loss."""
    rankic_weight: float = 0.5
    """Weight of (1 - differentiable Spearman correlation) per date. 0.5, not the old system's
    0.2: higher validation RankIC in 12 of 12 paired seeds over two windows on real data
    (bench/quality_analysis.md, sixth round)."""
    cs_ic_weight: float = 0.15
    """Weight of (1 - cross-sectional Pearson correlation) per date."""
    sharpe_weight: float = 0.05
    """Weight of the negative Sharpe of a prediction-weighted long-short portfolio."""
    horizon_weights: tuple[float, ...] = ()
    """Weight per horizon (same order as data.horizons); empty = equal weights."""
    soft_rank_temperature: float = 0.1
    """Temperature of the sigmoid soft rank used by the RankIC term (smaller = sharper)."""
    target_normalization: str = "cs_zscore"
    """Point/quantile targets: 'cs_zscore' (per-date z-score), 'cs_rank' (per-date rank-gauss:
    ranks mapped to normal quantiles) or 'none' (raw returns)."""
    neutralize: tuple[str, ...] = ()
    """Input features whose same-day exposure is taken out of the training target, e.g.
    feat_beta_60, feat_vol_20: per date and horizon every loss term sees the residual of a
    least-squares fit of the target on [1, these features at t] instead of the target. Empty =
    off. Validation, test metrics and early stopping always use the raw targets."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, phases, early stopping and the execution mode."""

    mode: str = "safe"
    """'safe': single process, one thread, deterministic. 'optimized': panel on device, AMP on CUDA."""
    optimizer: str = "adamw"
    """'adamw', 'adam' or 'sgd'."""
    lr: float = 1e-3
    """Base learning rate (each phase scales it by phase_lr_scale)."""
    weight_decay: float = 1e-4
    """Weight decay of the optimiser."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    ema_decay: float = 0.0
    """0 = off; else validate, keep as best and predict with an exponential moving average of the
    weights, updated after every optimiser step with this decay (atft_core/ema.py)."""
    schedule: str = "cosine"
    """Learning-rate schedule within each phase: 'cosine', 'constant' or 'step'."""
    step_gamma: float = 0.5
    """With schedule 'step': lr multiplier at each epoch boundary."""
    phase_epochs: tuple[int, ...] = (1, 1, 3, 1)
    """Epochs of phases 0 baseline, 1 adaptive norm, 2 GAT, 3 fine-tune (0 skips a phase)."""
    phase_lr_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 0.3)
    """Learning-rate multiplier per phase."""
    phase_rank_loss_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    """Multiplier per phase on the RankIC, CS-IC and Sharpe loss weights."""
    days_per_step: int = 0
    """Whole trading days per optimiser step; 0 = auto (safe 1, optimized 8)."""
    early_stopping_patience: int = 3
    """Stop after this many epochs without a better validation RankIC; 0 disables."""
    early_stopping_min_delta: float = 0.0
    """Improvement in validation RankIC needed to count as better."""
    log_every_steps: int = 50
    """Also log train/loss every this many optimiser steps."""
    degenerate_std_threshold: float = 1e-6
    """Warn when the mean per-date prediction std on validation falls below this."""
    stop_on_degenerate: bool = False
    """End the run as failed (instead of only warning) when predictions degenerate."""
    alarm_gat_grad_norm: float = 1e-5
    """Health alarm (a status.json warning): the GAT layers' mean gradient norm over an epoch of a
    GAT phase below this means the graph attention has almost stopped learning. 0 turns it off."""
    alarm_alpha_margin: float = 0.01
    """Health alarm: the residual gate alpha ending an epoch of a GAT phase within this distance of
    0 or 1 (the fusion ignores the graph, or the encoder). 0 turns it off."""
    alarm_pred_std_ratio: float = 0.1
    """Health alarm: the validation prediction std below this fraction of its first epoch's value
    (the predictions flatten out). 0 turns it off."""
    alarm_loss_rise: float = 1.0
    """Health alarm: an epoch's train/loss above its lowest value so far by more than this multiple
    of that value's magnitude (1.0: the loss doubled) means it diverges. 0 turns it off."""
    train_eval_days: int = 128
    """Training days on which every epoch also logs the validation metrics per horizon
    (train/rank_ic_<h>d, ...), so over- or under-fitting shows per horizon: a fixed, evenly
    spread sample, in runs of days_per_step consecutive days. 0 turns it off."""


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the run executes."""

    device: str = "auto"
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    precision: str = "auto"
    """'auto' (optimized mode: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 or
    AMX); else fp32), 'fp32', 'bf16' or 'fp16' (CUDA only)."""
    seed: int = 0
    """Seed for torch, numpy and Python's random."""
    num_threads: int = 0
    """CPU threads for torch, per process; 0 = auto (safe 1, optimized all cores shared out over
    the runtime.devices processes)."""
    heartbeat_seconds: float = 5.0
    """How often the trainer refreshes status.json while running."""
    compile: str = "off"
    """torch.compile of the training step (atft_core/compiled.py): 'off'; 'model' (the model's
    forward, its backward through AOTAutograd); 'step' (forward and loss as one compiled
    function). With either, day batches are padded to size buckets so that compiled graphs are
    reused (a few compiles per run, each costing seconds to minutes at the start); validation and
    predictions stay eager. Only in train.mode 'optimized' (safe mode stays eager and
    bit-reproducible) and with runtime.devices 1. See docs/benchmarks.md for what it gains: on
    the CPU nothing; on a GPU it is measured by bench/gpu_session.sh."""
    devices: int = 1
    """Processes that train this one run together, data-parallel (torch DistributedDataParallel;
    atft_core/distributed.py): each takes its part of every step's days and the gradients are
    averaged so that a step is the same step as in one process. On CUDA one GPU each (the first
    N visible ones; backend nccl); on the CPU N processes of runtime.num_threads threads each
    (backend gloo). Only the first process writes the run folder. 1 = one process."""
    collective_timeout_seconds: float = 1800.0
    """With runtime.devices > 1: the longest a process waits for the others in a collective (the
    gradient average, the stop vote, the first process's validation result) before the run
    fails; it must exceed one validation plus checkpoint. A process that dies is noticed within
    seconds regardless (the first process watches the others); this bounds a hang."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; see each section's fields."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build from a (possibly partial) nested dict; unknown keys are errors."""
        return _build(cls, values, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for JSON."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of the whole config."""
        return json.dumps(dataclasses.asdict(self), indent=indent, sort_keys=False)

    def replace(self, **dotted: Any) -> "RunConfig":
        """Copy with dotted fields changed, e.g. ``cfg.replace(**{"model.hidden_size": 256})``."""
        values = self.to_dict()
        for key, value in dotted.items():
            section, name = _split_key(key)
            values[section][name] = list(value) if isinstance(value, tuple) else value
        return RunConfig.from_dict(values)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "runtime": RuntimeConfig,
}


def field_docs(section_cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field), for UIs and --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(section_cls))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = nxt.value.value.strip()  # type: ignore[attr-defined]
    return docs


@functools.lru_cache(maxsize=None)
def field_types(section_cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config section."""
    return typing.get_type_hints(section_cls)


# ---------------------------------------------------------------------------------------------
# Strict construction


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys in {where or 'config'}: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, raw in values.items():
        path = _join(where, name)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw, path)
        else:
            kwargs[name] = _coerce(raw, hint, path)
    return cls(**kwargs)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check `value` against `hint`, allowing only lossless conversions (int -> float)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list of {item_type.__name__}, got {value!r}")
        return tuple(_coerce(v, item_type, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(hint, types.UnionType):  # pragma: no cover - no unions in the config today
        raise ConfigError(f"{path}: unsupported type {hint}")
    raise ConfigError(f"{path}: unsupported type {hint}")


# ---------------------------------------------------------------------------------------------
# Validation: every rule names the field and says what to do.


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for values that are out of range or contradict each other."""
    problems = _problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def _non_finite(cfg: RunConfig) -> list[str]:
    """Every float field (and float list item) that is NaN or infinite, by name. JSON has no such
    values and no setting means anything at infinity, so they are refused before any other rule."""
    found = []
    for section, cls in SECTIONS.items():
        for name, hint in field_types(cls).items():
            value = getattr(getattr(cfg, section), name)
            items = value if typing.get_origin(hint) is tuple else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in items):
                found.append(f"{section}.{name}: must be a finite number, got {_shown(value)}")
    return found


def _shown(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, tuple) else str(value)


def _date_problem(name: str, value: str) -> str | None:
    """Why `value` is not a usable ISO date for data.`name` (None when it is one, or empty)."""
    if value == "":
        return None
    if not _ISO_DATE.match(value):
        return f"data.{name}: expected YYYY-MM-DD, got {value!r}"
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        return f"data.{name}: {value} is not a calendar date ({exc})"
    return None


def _problems(cfg: RunConfig) -> list[str]:  # noqa: C901 - a flat list of rules reads best
    d, m, lo, t, r = cfg.data, cfg.model, cfg.loss, cfg.train, cfg.runtime
    non_finite = _non_finite(cfg)
    if non_finite:  # the range rules below would only repeat these
        return non_finite
    p: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            p.append(message)

    need(bool(d.path.strip()), "data.path: give the dataset parquet to train on")
    need(len(set(d.features)) == len(d.features), "data.features: a feature is listed twice")
    need(all(f.startswith("feat_") for f in d.features), "data.features: names must start with 'feat_'")
    need(d.expected_feature_count >= 0, "data.expected_feature_count: must be >= 0 (0 = no check)")
    need(
        not d.features or d.expected_feature_count in (0, len(d.features)),
        f"data.expected_feature_count={d.expected_feature_count} but data.features lists {len(d.features)}",
    )
    need(len(d.horizons) > 0, "data.horizons: give at least one horizon")
    need(all(h >= 1 for h in d.horizons), "data.horizons: every horizon must be >= 1 day")
    need(len(set(d.horizons)) == len(d.horizons), "data.horizons: a horizon is listed twice")
    need(list(d.horizons) == sorted(d.horizons), "data.horizons: list them in increasing order")
    need(1 <= d.lookback <= 512, "data.lookback: must be between 1 and 512 days")
    bad_dates = {name: why for name in ("start", "end", "train_end", "val_end")
                 if (why := _date_problem(name, getattr(d, name)))}
    p.extend(bad_dates.values())
    need(bool(d.train_end) == bool(d.val_end), "data.train_end and data.val_end: give both or neither")
    if d.train_end and d.val_end and not {"train_end", "val_end"} & bad_dates.keys():
        need(d.train_end < d.val_end, "data.train_end must be before data.val_end")
    if d.start and d.end and not {"start", "end"} & bad_dates.keys():
        need(d.start <= d.end, f"data.start={d.start} is after data.end={d.end}")
    need(0.0 < d.train_fraction < 1.0, "data.train_fraction: must be in (0, 1)")
    need(0.0 < d.val_fraction < 1.0, "data.val_fraction: must be in (0, 1)")
    need(d.train_fraction + d.val_fraction < 1.0, "data.train_fraction + data.val_fraction must leave room for a test segment")
    need(d.execution_lag in (0, 1), "data.execution_lag: must be 0 or 1")
    if d.horizons and d.purge_days != 0:
        need(
            d.purge_days >= max(d.horizons) + d.execution_lag,
            f"data.purge_days={d.purge_days} is shorter than the longest horizon "
            f"({max(d.horizons)}) + execution lag ({d.execution_lag}): training targets would "
            "overlap the next segment. Use 0 (auto) or a larger value",
        )
    need(d.purge_days >= 0, "data.purge_days: must be >= 0 (0 = auto)")
    need(d.embargo_days >= 0, "data.embargo_days: must be >= 0")
    need(d.min_stocks_per_day >= 2, "data.min_stocks_per_day: must be >= 2 for a cross-section")

    need(m.kind in MODEL_KINDS, f"model.kind: expected one of {', '.join(MODEL_KINDS)}, got {m.kind!r}")
    need(m.hidden_size >= 4, "model.hidden_size: must be >= 4")
    need(m.encoder_layers >= 1, "model.encoder_layers: must be >= 1")
    need(m.encoder_heads >= 1 and m.hidden_size % max(m.encoder_heads, 1) == 0,
         f"model.encoder_heads={m.encoder_heads} must divide model.hidden_size={m.hidden_size}")
    need(m.gat_heads >= 1 and m.hidden_size % max(m.gat_heads, 1) == 0,
         f"model.gat_heads={m.gat_heads} must divide model.hidden_size={m.hidden_size}")
    for name in ("encoder_dropout", "gat_dropout"):
        need(0.0 <= getattr(m, name) < 1.0, f"model.{name}: must be in [0, 1)")
    need(m.fan_top_k >= 0, "model.fan_top_k: must be >= 0 (0 turns FAN off)")
    need(m.fan_top_k <= d.lookback // 2, f"model.fan_top_k={m.fan_top_k}: at most lookback/2 = {d.lookback // 2} frequencies exist")
    need(m.gat_layers >= 1, "model.gat_layers: must be >= 1 (use model.use_gat=false to turn GAT off)")
    need(m.graph_top_k >= 1, "model.graph_top_k: must be >= 1")
    need(m.graph_corr_window >= 5, "model.graph_corr_window: must be >= 5 days")
    need(m.graph_rebuild_interval >= 1, "model.graph_rebuild_interval: must be >= 1")
    need(m.graph_max_sector_edges >= 0, "model.graph_max_sector_edges: must be >= 0")
    need(0.0 < m.gate_init < 1.0, "model.gate_init: alpha must be strictly between 0 and 1")
    need(len(m.quantiles) > 0, "model.quantiles: give at least one quantile (e.g. 0.5)")
    need(all(0.0 < q < 1.0 for q in m.quantiles), "model.quantiles: each must be in (0, 1)")
    need(list(m.quantiles) == sorted(set(m.quantiles)), "model.quantiles: list distinct values in increasing order")
    need(m.ridge_alpha >= 0.0, "model.ridge_alpha: must be >= 0")
    if m.kind == "factor":
        need(m.factor.startswith("feat_"), f"model.factor: name the input feature to score (a feat_* column), got {m.factor!r}")
    else:
        need(not m.factor, f"model.factor: only model.kind='factor' uses it; model.kind={m.kind!r} would ignore it")
    need(m.factor_sign in FACTOR_SIGNS, f"model.factor_sign: expected 1, -1 or 0 (chosen on training), got {m.factor_sign!r}")

    for name in ("huber_weight", "pinball_weight", "rankic_weight", "cs_ic_weight", "sharpe_weight"):
        need(getattr(lo, name) >= 0.0, f"loss.{name}: must be >= 0")
    need(lo.huber_delta > 0.0, "loss.huber_delta: must be > 0")
    need(lo.soft_rank_temperature > 0.0, "loss.soft_rank_temperature: must be > 0")
    need(lo.target_normalization in TARGET_NORMALIZATIONS,
         f"loss.target_normalization: one of {list(TARGET_NORMALIZATIONS)}")
    need(len(set(lo.neutralize)) == len(lo.neutralize), "loss.neutralize: a feature is listed twice")
    need(all(f.startswith("feat_") for f in lo.neutralize), "loss.neutralize: names must start with 'feat_'")
    need(not lo.neutralize or m.kind == "atft_gat_fan",
         f"loss.neutralize: only the deep model's loss uses it; model.kind={m.kind!r} would ignore it")
    need(
        not lo.horizon_weights or len(lo.horizon_weights) == len(d.horizons),
        f"loss.horizon_weights has {len(lo.horizon_weights)} values for {len(d.horizons)} horizons {list(d.horizons)}",
    )
    need(all(w >= 0 for w in lo.horizon_weights), "loss.horizon_weights: must be >= 0")
    need(not lo.horizon_weights or sum(lo.horizon_weights) > 0, "loss.horizon_weights: at least one must be > 0")
    need(
        lo.huber_weight + lo.pinball_weight + lo.rankic_weight + lo.cs_ic_weight + lo.sharpe_weight > 0,
        "loss: every term weight is 0, nothing to train on",
    )

    need(t.mode in ("safe", "optimized"), f"train.mode: 'safe' or 'optimized', got {t.mode!r}")
    need(t.optimizer in ("adamw", "adam", "sgd"), f"train.optimizer: 'adamw', 'adam' or 'sgd', got {t.optimizer!r}")
    need(t.lr > 0.0, "train.lr: must be > 0")
    need(t.weight_decay >= 0.0, "train.weight_decay: must be >= 0")
    need(t.grad_clip >= 0.0, "train.grad_clip: must be >= 0 (0 disables clipping)")
    need(0.0 <= t.ema_decay < 1.0, "train.ema_decay: must be in [0, 1) (0 disables the weight average)")
    need(t.schedule in ("cosine", "constant", "step"), f"train.schedule: 'cosine', 'constant' or 'step', got {t.schedule!r}")
    need(0.0 < t.step_gamma <= 1.0, "train.step_gamma: must be in (0, 1]")
    for name in ("phase_epochs", "phase_lr_scale", "phase_rank_loss_scale"):
        need(len(getattr(t, name)) == len(PHASE_NAMES), f"train.{name}: give {len(PHASE_NAMES)} values, one per phase {PHASE_NAMES}")
    need(all(e >= 0 for e in t.phase_epochs), "train.phase_epochs: must be >= 0")
    need(sum(t.phase_epochs) >= 1, "train.phase_epochs: at least one epoch in total")
    need(all(s > 0 for s in t.phase_lr_scale), "train.phase_lr_scale: must be > 0")
    need(all(s >= 0 for s in t.phase_rank_loss_scale), "train.phase_rank_loss_scale: must be >= 0")
    need(t.days_per_step >= 0, "train.days_per_step: must be >= 0 (0 = auto)")
    need(t.early_stopping_patience >= 0, "train.early_stopping_patience: must be >= 0 (0 disables)")
    need(t.early_stopping_min_delta >= 0.0, "train.early_stopping_min_delta: must be >= 0")
    need(t.log_every_steps >= 1, "train.log_every_steps: must be >= 1")
    need(t.degenerate_std_threshold >= 0.0, "train.degenerate_std_threshold: must be >= 0")
    need(t.alarm_gat_grad_norm >= 0.0, "train.alarm_gat_grad_norm: must be >= 0 (0 turns the alarm off)")
    need(0.0 <= t.alarm_alpha_margin < 0.5, "train.alarm_alpha_margin: must be in [0, 0.5) (0 turns the alarm off)")
    need(0.0 <= t.alarm_pred_std_ratio < 1.0, "train.alarm_pred_std_ratio: must be in [0, 1) (0 turns the alarm off)")
    need(t.alarm_loss_rise >= 0.0, "train.alarm_loss_rise: must be >= 0 (0 turns the alarm off)")
    need(t.train_eval_days >= 0, "train.train_eval_days: must be >= 0 (0 turns it off)")

    need(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", r.device)), f"runtime.device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {r.device!r}")
    need(r.precision in ("auto", "fp32", "bf16", "fp16"), f"runtime.precision: 'auto', 'fp32', 'bf16' or 'fp16', got {r.precision!r}")
    need(not (r.precision == "fp16" and r.device == "cpu"), "runtime.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    need(0 <= r.num_threads <= MAX_THREADS, f"runtime.num_threads: must be between 0 (auto) and {MAX_THREADS}, "
                                            f"got {r.num_threads}")
    need(r.heartbeat_seconds > 0, "runtime.heartbeat_seconds: must be > 0")
    need(1 <= r.devices <= MAX_DEVICES, f"runtime.devices: must be between 1 and {MAX_DEVICES}, got {r.devices}")
    need(r.devices == 1 or ":" not in r.device,
         f"runtime.devices={r.devices} uses cuda:0..{r.devices - 1}: give runtime.device 'cuda' (or 'auto'), "
         f"not {r.device!r} (choose the GPUs with CUDA_VISIBLE_DEVICES)")
    need(r.collective_timeout_seconds > 0, "runtime.collective_timeout_seconds: must be > 0")
    need(r.compile in COMPILE_MODES, f"runtime.compile: one of {', '.join(COMPILE_MODES)}, got {r.compile!r}")
    need(r.compile == "off" or r.devices == 1,
         f"runtime.compile={r.compile!r} with runtime.devices={r.devices}: compiled data-parallel training is not "
         "supported; use runtime.compile='off' or runtime.devices=1")
    need(r.compile == "off" or t.mode == "optimized",
         f"runtime.compile={r.compile!r} needs train.mode='optimized' (safe mode runs eager, bit-reproducible); "
         "use runtime.compile='off' or train.mode='optimized'")
    need(r.compile == "off" or m.kind == "atft_gat_fan",
         f"runtime.compile: only the deep model's training step is compiled; model.kind={m.kind!r} would ignore it")
    return p


# ---------------------------------------------------------------------------------------------
# Resolution of "auto" values (the effective config is what gets saved with a run)


def resolve(cfg: RunConfig, *, cuda_available: bool, cpu_count: int, cpu_bf16: bool = False) -> RunConfig:
    """Return the effective config: every 'auto' value replaced by what will actually run.

    Machine facts are passed in (not probed here) so that resolution is a pure function;
    `cpu_bf16`: the CPU computes bf16 natively (atft_core.system.cpu_has_native_bf16).
    """
    d, lo, t, r = cfg.data, cfg.loss, cfg.train, cfg.runtime
    if r.device.startswith("cuda") and not cuda_available:
        raise ConfigError(f"runtime.device={r.device!r} but no CUDA device is available; use 'auto' or 'cpu'")
    device = ("cuda" if cuda_available else "cpu") if r.device == "auto" else r.device
    on_cuda = device.startswith("cuda")
    if r.precision == "fp16" and not on_cuda:
        raise ConfigError("runtime.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    precision = r.precision
    if precision == "auto":
        # bf16 autocast pays off on CUDA and on CPUs with bf16 instructions (bench_model here:
        # 1.2x per step without the GAT, 1.1x with it); safe mode stays fp32 and deterministic.
        precision = "bf16" if t.mode == "optimized" and (on_cuda or cpu_bf16) else "fp32"
    threads = r.num_threads or (1 if t.mode == "safe" else max(1, cpu_count // r.devices))
    days_per_step = t.days_per_step or (1 if t.mode == "safe" else 8)
    purge = d.purge_days or (max(d.horizons) + d.execution_lag)
    horizon_weights = lo.horizon_weights or tuple(1.0 for _ in d.horizons)
    return cfg.replace(**{
        "runtime.device": device,
        "runtime.precision": precision,
        "runtime.num_threads": threads,
        "train.days_per_step": days_per_step,
        "data.purge_days": purge,
        "loss.horizon_weights": horizon_weights,
    })


# ---------------------------------------------------------------------------------------------
# Entry-point helpers: JSON files and dotted CLI overrides


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON config file (partial is fine) into a dict, with a clear error if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        values = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {p}: expected a JSON object at the top level")
    # A saved run config carries resolved facts beside the config; accept it as input too.
    return values.get("config", values) if "resolved" in values else values


def parse_overrides(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split argv into dotted overrides {'model.hidden_size': '256'} and the remaining args.

    Accepts ``--section.name=value`` and ``--section.name value``.
    """
    overrides: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "." in key and key.split(".", 1)[0] in SECTIONS:
            if "=" in arg:
                overrides[key] = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                overrides[key] = args[i + 1]
                i += 1
            else:
                raise ConfigError(f"--{key}: missing value")
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def merge_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides to a nested dict (a copy); unknown sections/keys are errors."""
    merged = json.loads(json.dumps(values))
    for key, value in overrides.items():
        section, name = _split_key(key)
        merged.setdefault(section, {})[name] = value
    return merged


def parse_field(key: str, value: Any) -> Any:
    """Setting `key` ('section.name') parsed from `value` (a form's text, a JSON value) with the
    rules of `RunConfig.from_dict`; ConfigError naming the field if it does not parse. Range and
    cross-field rules stay `validate`'s: a form parses every field first, so that one bad
    field does not hide the problems of the others."""
    section, name = _split_key(key)
    return _coerce(value, field_types(SECTIONS[section])[name], key)


def build_config(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults <- JSON file <- dotted overrides, validated."""
    values = load_config_file(config_file) if config_file else {}
    return RunConfig.from_dict(merge_overrides(values, overrides or {}))


def feature_index(names: Sequence[str], loaded: Sequence[str], setting: str) -> tuple[int, ...]:
    """Columns of the loaded features named by a setting; a name not loaded is a ConfigError
    (the trainer raises it before training, the pre-flight shows it before launch)."""
    missing = [n for n in names if n not in loaded]
    if missing:
        raise ConfigError(f"{setting}: {missing[:10]} not among the {len(loaded)} loaded features "
                          f"(data.features or the dataset's feat_* columns)")
    return tuple(list(loaded).index(n) for n in names)


def _split_key(key: str) -> tuple[str, str]:
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown setting {key!r}: use section.name with section one of {', '.join(SECTIONS)}")
    section, name = parts
    if name not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        known = ", ".join(f.name for f in dataclasses.fields(SECTIONS[section]))
        raise ConfigError(f"unknown setting {key!r}; valid keys in {section}: {known}")
    return section, name
