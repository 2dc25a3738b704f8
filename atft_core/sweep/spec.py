"""What a study is: its base config, search space, objective, size, pruner, sampler and how its
workers watch each other. One strict, frozen `StudySpec`, checked whole before anything is made,
and kept in the Optuna study (user attribute ``atft_spec``) so every worker, on any machine,
runs the same study.

The objective is the best value over a trial's epochs of one VALIDATION metric (default
``val/rank_ic_1d``, the 1-day horizon's mean daily RankIC); the test split never enters a
choice, so test metrics are refused here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from atft_core.config import ConfigError, RunConfig, parse_field
from atft_core.metrics import SUMMARY_KEYS
from atft_core.sweep.space import Param, check_space

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,23}")
"""At most 24 characters: the tags sweep-<name> and confirm-<name> must stay within a tag's 32."""
DEFAULT_METRIC = "val/rank_ic_1d"
DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("median", "percentile", "none")
SAMPLERS = ("tpe", "random")
MAX_TRIALS = 10_000
METRIC_KEYS = tuple(k for k in SUMMARY_KEYS if k != "n_days")
"""What the trainer logs per validation epoch as ``val/<key>`` and ``val/<key>_<h>d`` (and val/loss)."""
SPEC_ATTR = "atft_spec"
"""The study's user attribute holding its spec."""


@dataclass(frozen=True)
class StudySpec:
    """A study: trials of `base` with the `space` fields sampled, judged on `metric`."""

    name: str
    """The study's name (letters, digits, '_', '-', '.'): its tag ``sweep-<name>`` on every trial run."""
    base: dict[str, Any]
    """The base config as requested (a partial RunConfig dict); each trial sets the searched fields."""
    space: tuple[Param, ...]
    """The searched fields (`atft_core.sweep.space`)."""
    n_trials: int = 20
    """Trials the study runs in all (a trial retried after its worker died counts once)."""
    parallel: int = 1
    """Trials one worker keeps in flight (its queue's slots decide how many train at once)."""
    metric: str = DEFAULT_METRIC
    """The validation metric whose best epoch is a trial's value."""
    direction: str = "maximize"
    """'maximize' or 'minimize' `metric`."""
    pruner: str = "median"
    """'median' (Optuna's MedianPruner), 'percentile' or 'none': stops a trial whose best value so far
    is worse than the median (percentile) of the other trials' at the same epoch."""
    pruner_startup_trials: int = 4
    """No pruning until this many trials have finished."""
    pruner_warmup_epochs: int = 1
    """No trial is pruned before this many of its epochs."""
    pruner_percentile: float = 25.0
    """With pruner 'percentile': prune below this percentile of the other trials (0-100)."""
    sampler: str = "tpe"
    """'tpe' (Optuna's TPESampler) or 'random'."""
    seed: int = 0
    """Seed of the sampler; trial n samples with seed + n, so workers never repeat each other."""
    heartbeat_seconds: int = 10
    """How often a worker tells the storage that its trials are alive."""
    grace_seconds: int = 60
    """A running trial with no heartbeat for this long has lost its worker: it fails, and is retried."""
    max_retries: int = 1
    """How often a trial whose worker died is run again (with the same settings)."""
    force: bool = False
    """Launch trials despite pre-flight warnings (never failures)."""
    note: str = ""
    """Free text shown with the study."""

    def __post_init__(self) -> None:
        check_spec(self)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["space"] = [p.to_dict() for p in self.space]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StudySpec":
        """Strict: an unknown key is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ConfigError(f"study: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        space = tuple(p if isinstance(p, Param) else Param.from_dict(p) for p in values.get("space", ()))
        return cls(**{**values, "space": space})

    @property
    def horizon(self) -> int | None:
        """The horizon of the objective metric (``val/rank_ic_5d`` -> 5), None for the first one."""
        match = re.fullmatch(r"val/.+_(\d+)d", self.metric)
        return int(match.group(1)) if match else None

    def base_config(self) -> RunConfig:
        return RunConfig.from_dict(self.base)


def check_spec(spec: StudySpec) -> None:
    """ConfigError (naming the setting) for anything that would make a study that cannot run."""
    if not isinstance(spec.name, str) or not STUDY_NAME.fullmatch(spec.name):
        raise ConfigError(f"study name {spec.name!r}: 1-24 letters, digits, '_', '-', '.' (starting with a letter "
                          "or digit)")
    for name, low, high in (("n_trials", 1, MAX_TRIALS), ("parallel", 1, 64), ("pruner_startup_trials", 0, MAX_TRIALS),
                            ("pruner_warmup_epochs", 0, 10_000), ("heartbeat_seconds", 1, 3600),
                            ("grace_seconds", 2, 86_400), ("max_retries", 0, 10), ("seed", 0, 2**31 - 1)):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"study.{name}: an integer from {low} to {high}, got {value!r}")
    if spec.grace_seconds < 2 * spec.heartbeat_seconds:
        raise ConfigError(f"study.grace_seconds={spec.grace_seconds} must be at least twice study.heartbeat_seconds="
                          f"{spec.heartbeat_seconds}: one late heartbeat must not fail a live trial")
    for name, allowed in (("direction", DIRECTIONS), ("pruner", PRUNERS), ("sampler", SAMPLERS)):
        if getattr(spec, name) not in allowed:
            raise ConfigError(f"study.{name}: one of {', '.join(allowed)}, got {getattr(spec, name)!r}")
    if not isinstance(spec.pruner_percentile, (int, float)) or not 0.0 < spec.pruner_percentile < 100.0:
        raise ConfigError(f"study.pruner_percentile: a number in (0, 100), got {spec.pruner_percentile!r}")
    if not isinstance(spec.base, dict):
        raise ConfigError(f"study.base: a config object, got {type(spec.base).__name__}")
    base = spec.base_config()
    check_metric(spec.metric, spec.direction, _horizon_sets(base, spec.space))
    check_space(spec.base, list(spec.space))


def check_metric(metric: str, direction: str, horizon_sets: list[tuple[int, ...]]) -> None:
    """The objective must be a validation metric the trainer logs, for a horizon every trial has."""
    if not isinstance(metric, str) or not metric.startswith("val/"):
        raise ConfigError(f"study.metric: {metric!r} is not a validation metric (val/...); the test split never "
                          "chooses anything")
    key = metric[len("val/"):]
    match = re.fullmatch(r"(.+)_(\d+)d", key)
    name, horizon = (match.group(1), int(match.group(2))) if match else (key, None)
    if name not in (*METRIC_KEYS, "loss") or (name == "loss" and horizon is not None):
        choices = ", ".join(f"val/{k}_<h>d" for k in METRIC_KEYS)
        raise ConfigError(f"study.metric: {metric!r} is not logged by the trainer; use val/loss or one of {choices}")
    if name == "loss" and direction != "minimize":
        raise ConfigError("study.metric: val/loss is minimised; set study.direction=minimize")
    for horizons in horizon_sets:
        if horizon is not None and horizon not in horizons:
            raise ConfigError(f"study.metric: {metric} needs the {horizon}-day horizon, but data.horizons can be "
                              f"{', '.join(map(str, horizons))}")


def _horizon_sets(base: RunConfig, space: tuple[Param, ...]) -> list[tuple[int, ...]]:
    """Every data.horizons a trial can have."""
    searched = next((p for p in space if p.name == "data.horizons"), None)
    if searched is None:
        return [base.data.horizons]
    return [tuple(parse_field("data.horizons", c)) for c in searched.choices]
