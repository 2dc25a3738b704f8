"""A study's search space: which `RunConfig` fields vary, over which range or list of values.

    parse_param("train.lr=1e-4..1e-2:log") -> Param        # the command line's form
    Param.from_dict({"name": "model.hidden_size", "low": 8, "high": 32, "step": 8})
    check_space(base, params) -> None                       # ConfigError naming the field
    trial_values(trial, params) -> {"train.lr": 0.003, ...} # one trial's settings (Optuna)
    trial_config(base, values) -> RunConfig

A parameter is a float or int range (``low..high``, with ``:log`` or ``:step=N``) over a numeric
field, or a list of choices (``a|b|c``) over any field; the field's type decides how every value
is read (`config.parse_field`), so a tuple field takes choices such as ``1,1,0,0|2,1,0,0``.

`check_space` refuses, before anything is created, a field RunConfig does not have, a range that
is empty or upside down, and a value the field rejects, alone or beside another parameter's value
(``model.hidden_size=10`` with ``model.encoder_heads=4``), each with the field named.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from atft_core.config import SECTIONS, ConfigError, RunConfig, field_types, merge_overrides, parse_field

MAX_PARAMS = 32
"""Most parameters one study searches."""
MAX_CHOICES = 256
"""Most choices of one categorical parameter."""
MAX_PROBES = 64
"""Most values of one parameter that `check_space` tries (an int range with more is tried at its
ends, its step's first values and its middle)."""
MAX_PAIR_CHECKS = 400
"""Most pairs of values that `check_space` tries together (about a second of validation)."""


@dataclass(frozen=True)
class Param:
    """One searched field: a range (`low`, `high`, `log`, `step`) or a list of `choices`."""

    name: str
    """The field, ``section.name`` as in ``--section.name=value``."""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    """Sample the range on a log scale (needs low > 0; no step)."""
    step: float | int | None = None
    """Only values low, low + step, ...; high - low must be a multiple of it."""
    choices: tuple[Any, ...] = field(default_factory=tuple)
    """The values to choose from, each as the field reads it."""

    @property
    def is_range(self) -> bool:
        return not self.choices

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuple-valued choices as lists)."""
        if self.choices:
            return {"name": self.name, "choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}
        out: dict[str, Any] = {"name": self.name, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Param":
        """From `to_dict`'s form (a JSON space file, the Sweep page); values parsed by the field's type."""
        if not isinstance(values, dict) or not isinstance(values.get("name"), str):
            raise ConfigError(f"search space: each parameter is an object with a 'name', got {values!r}")
        name = values["name"]
        unknown = set(values) - {"name", "low", "high", "log", "step", "choices"}
        if unknown:
            raise ConfigError(f"{name}: unknown key(s) {sorted(unknown)} in the search space; use low, high, log, "
                              "step or choices")
        if "choices" in values:
            if set(values) & {"low", "high", "log", "step"}:
                raise ConfigError(f"{name}: give either choices or a range (low, high), not both")
            choices = values["choices"]
            if not isinstance(choices, (list, tuple)):
                raise ConfigError(f"{name}: choices must be a list, got {choices!r}")
            return _choices(name, list(choices))
        if "low" not in values or "high" not in values:
            raise ConfigError(f"{name}: give a range (low and high) or a list of choices")
        log = values.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{name}: log must be true or false, got {log!r}")
        return _range(name, values["low"], values["high"], log, values.get("step"))

    def describe(self) -> str:
        """The command line's form: ``train.lr=0.0001..0.01:log``."""
        if self.choices:
            return f"{self.name}=" + "|".join(_text(c) for c in self.choices)
        extra = ":log" if self.log else f":step={self.step}" if self.step is not None else ""
        return f"{self.name}={self.low}..{self.high}{extra}"


def parse_param(text: str) -> Param:
    """A parameter as the command line gives it: ``name=low..high[:log|:step=N]`` or ``name=a|b|c``."""
    name, sep, spec = text.partition("=")
    name = name.strip().removeprefix("--")
    if not sep or not spec.strip():
        raise ConfigError(f"search parameter {text!r}: use name=low..high (options :log, :step=N) or name=a|b|c")
    if "|" in spec:
        return _choices(name, [c.strip() for c in spec.split("|")])
    bounds, *options = spec.split(":")
    if ".." not in bounds:
        raise ConfigError(f"{name}: {spec!r} is neither a range low..high nor choices a|b; a fixed value belongs in "
                          f"the base config (--{name}={spec})")
    low, high = (b.strip() for b in bounds.split("..", 1))
    log, step = False, None
    for option in (o.strip() for o in options):
        if option == "log":
            log = True
        elif option.startswith("step="):
            step = option[len("step="):]
        else:
            raise ConfigError(f"{name}: unknown range option {option!r}; use :log or :step=N")
    return _range(name, low, high, log, step)


def _field_type(name: str) -> Any:
    section, _, key = name.partition(".")
    if section not in SECTIONS or key not in field_types(SECTIONS[section]):
        parse_field(name, None)   # raises the config's own "unknown setting" message
    return field_types(SECTIONS[section])[key]


def _range(name: str, low: Any, high: Any, log: bool, step: Any) -> Param:
    hint = _field_type(name)
    if hint not in (int, float):
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} is a {kind} setting: search it with a list of choices (a|b), not a range")
    low, high = parse_field(name, low), parse_field(name, high)
    if step is not None:
        step = parse_field(name, step)
    return Param(name, low, high, log, step)


def _choices(name: str, raw: list[Any]) -> Param:
    _field_type(name)
    if not raw:
        raise ConfigError(f"{name}: empty choice list; give at least one value, or a range low..high")
    return Param(name, choices=tuple(parse_field(name, c) for c in raw))


def _is_int(p: Param) -> bool:
    return isinstance(p.low, int) and not isinstance(p.low, bool)


def _text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


# ---------------------------------------------------------------------------------------------
# Checking a space against RunConfig


def check_space(base: dict[str, Any], params: list[Param] | tuple[Param, ...]) -> None:
    """Refuse (ConfigError, naming the field) a space that cannot give valid runs of `base` (a
    requested config, partial dict): see the module doc. Pure: nothing is written."""
    if not params:
        raise ConfigError("search space: give at least one parameter (e.g. --param train.lr=1e-4..1e-2:log)")
    if len(params) > MAX_PARAMS:
        raise ConfigError(f"search space: at most {MAX_PARAMS} parameters, got {len(params)}")
    names = [p.name for p in params]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{twice[0]}: searched twice; give each field one range or list")
    for param in params:
        _check_shape(param)
    probes = {p.name: probe_values(p) for p in params}
    for param in params:
        for value in probes[param.name]:
            _check_values(base, {param.name: value}, param)
    _check_pairs(base, params, probes)


def _check_shape(p: Param) -> None:
    if p.choices:
        if len(p.choices) > MAX_CHOICES:
            raise ConfigError(f"{p.name}: at most {MAX_CHOICES} choices, got {len(p.choices)}")
        seen = [_text(c) for c in p.choices]
        if twice := sorted({c for c in seen if seen.count(c) > 1}):
            raise ConfigError(f"{p.name}: choice {twice[0]} is listed twice")
        return
    if p.low > p.high:
        raise ConfigError(f"{p.name}: low {p.low} > high {p.high}")
    if p.low == p.high:
        raise ConfigError(f"{p.name}: empty range {p.low}..{p.high}; a fixed value belongs in the base config "
                          f"(--{p.name}={p.low})")
    if p.log and p.low <= 0:
        raise ConfigError(f"{p.name}: a log range needs low > 0, got {p.low}")
    if p.log and p.step is not None:
        raise ConfigError(f"{p.name}: give :log or :step, not both")
    if p.step is not None:
        if not p.step > 0:
            raise ConfigError(f"{p.name}: step must be > 0, got {p.step}")
        count = (p.high - p.low) / p.step
        if abs(count - round(count)) > 1e-9 * max(1.0, abs(count)):
            raise ConfigError(f"{p.name}: high - low ({p.high} - {p.low}) is not a multiple of step {p.step}")


def probe_values(p: Param) -> list[Any]:
    """The values of `p` that `check_space` tries: every choice; an int range's every value (up to
    MAX_PROBES, else its ends, its first steps and its middle); a float range's ends."""
    if p.choices:
        return list(p.choices)
    if _is_int(p):
        step = int(p.step or 1)
        count = (p.high - p.low) // step + 1
        if count <= MAX_PROBES:
            return list(range(p.low, p.high + 1, step))
        return sorted({p.low, p.low + step, p.low + 2 * step, p.low + (count // 2) * step, p.high})
    return [p.low, p.high]


def _check_values(base: dict[str, Any], values: dict[str, Any], param: Param, other: Param | None = None) -> None:
    try:
        trial_config(base, values)
    except ConfigError as exc:
        shown = " with ".join(f"{k}={_text(v)}" for k, v in values.items())
        where = param.describe() + (f" and {other.describe()}" if other else "")
        raise ConfigError(f"search space: {shown} (from {where}) is refused: {exc}") from None


def _check_pairs(base: dict[str, Any], params: list[Param] | tuple[Param, ...], probes: dict[str, list[Any]]) -> None:
    """Values of two parameters together (most rules that join fields join two); a deterministic
    sample when there are more pairs than MAX_PAIR_CHECKS."""
    pairs = [(a, b, va, vb) for a, b in itertools.combinations(params, 2)
             for va, vb in itertools.product(probes[a.name], probes[b.name])]
    stride = max(1, math.ceil(len(pairs) / MAX_PAIR_CHECKS))
    for a, b, va, vb in pairs[::stride]:
        _check_values(base, {a.name: va, b.name: vb}, a, b)


# ---------------------------------------------------------------------------------------------
# Trials


def trial_config(base: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """The run config of one trial: `base` with the searched fields set (ConfigError if invalid)."""
    return RunConfig.from_dict(requested_config(base, values))


def requested_config(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`base` with the searched fields set, as the run's requested config (plain JSON values)."""
    return merge_overrides(base, {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})


def distribution(p: Param) -> Any:
    """The Optuna distribution of `p`. Optuna's choices are scalars: a tuple value is its text."""
    import optuna.distributions as dist

    if p.choices:
        return dist.CategoricalDistribution([_text(c) if isinstance(c, tuple) else c for c in p.choices])
    if _is_int(p):
        return dist.IntDistribution(p.low, p.high, log=p.log, step=int(p.step or 1))
    return dist.FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def field_value(p: Param, optuna_value: Any) -> Any:
    """The field's value for what Optuna suggested (a tuple choice's text read back)."""
    return parse_field(p.name, optuna_value)


def trial_values(trial: Any, params: list[Param] | tuple[Param, ...]) -> dict[str, Any]:
    """Suggest every parameter on an Optuna trial; returns {field: value as the field reads it}."""
    values = {}
    for p in params:
        d = distribution(p)
        if p.choices:
            suggested = trial.suggest_categorical(p.name, d.choices)
        elif _is_int(p):
            suggested = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
        else:
            suggested = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
        values[p.name] = field_value(p, suggested)
    return values
