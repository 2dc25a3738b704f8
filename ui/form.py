"""The New-run form, generated from the RunConfig dataclasses.

Every widget's default is the dataclass default (nothing is retyped here); the type decides
the widget. Each field is parsed on its own (`config.parse_field`), then the parsed values go
through `RunConfig.from_dict`, so every problem shows at once, once, under the field it names.

The form keeps its values when the user leaves the page and comes back: Streamlit forgets the
state of widgets that a run does not draw, so the values are also kept under `FORM_STORE`
and put back before the widgets are drawn. `prefill` loads a run's config into it ("new run
from this one").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from atft_core.config import (COMPILE_MODES, MODEL_KINDS, SECTIONS, TARGET_NORMALIZATIONS, ConfigError, RunConfig,
                              field_docs, field_types, parse_field)

from .logic import errors_by_field, flatten

COMMON = (
    "data.path", "model.kind", "model.hidden_size", "loss.rankic_weight", "loss.cs_ic_weight",
    "loss.sharpe_weight", "train.mode", "train.phase_epochs", "train.lr", "data.horizons",
)
"""Shown up front; every other field goes under 'Advanced', grouped by section."""

CHOICES: dict[str, tuple[str, ...]] = {
    "model.kind": MODEL_KINDS,
    "train.mode": ("safe", "optimized"),
    "train.optimizer": ("adamw", "adam", "sgd"),
    "train.schedule": ("cosine", "constant", "step"),
    "loss.target_normalization": TARGET_NORMALIZATIONS,
    "runtime.precision": ("auto", "fp32", "bf16", "fp16"),
    "runtime.compile": COMPILE_MODES,
}
"""String fields with a closed set of values (the same sets config.validate accepts)."""

KEY_PREFIX = "cfg."
FORM_STORE = "new_run_form"
"""Session-state key of the form's kept values ({widget key: value})."""
FORM_PAGE = "new_run_form_page"
"""Session-state key of the page that drew the form last."""
RUN_FIELDS = {"run_name": "", "run_tags": "", "run_seeds": 1}
"""The New run page's own widgets (name, tags, seeds) and their defaults, kept with the config
fields (the page draws them without a value of their own: it is in session state)."""


def _defaults() -> dict[str, Any]:
    base = RunConfig()
    return {
        f"{section}.{f.name}": getattr(getattr(base, section), f.name)
        for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
    }


def _as_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _widget_value(key: str, hint: Any, value: Any) -> Any:
    """What the widget of field `key` holds for config value `value`."""
    if key in CHOICES or key == "data.path" or hint in (bool, int):
        return value
    return _as_text(value)


def _widget(key: str, hint: Any, doc: str, datasets: list[str]) -> Any:
    """One widget for one field (its value is in session state); returns its raw value."""
    common = {"key": KEY_PREFIX + key, "help": doc}
    if key == "data.path" and datasets:
        return st.selectbox(key, list(dict.fromkeys(datasets)), format_func=lambda p: Path(p).name, **common)
    if key in CHOICES:
        return st.selectbox(key, list(CHOICES[key]), **common)
    if hint is bool:
        return st.checkbox(key, **common)
    if hint is int:
        return st.number_input(key, step=1, **common)
    # Floats and tuples are typed as text: small floats (1e-3) survive unrounded, and a bad
    # value reaches config.parse_field so the message comes from the one validator.
    return st.text_input(key, **common)


def _fit_dataset(value: Any, datasets: list[str]) -> Any:
    """The data.path option for `value`: the dataset of that file name in the data folder."""
    by_name = {Path(p).name: p for p in datasets}
    return by_name.get(Path(str(value)).name, value)


def restore(datasets: list[str], page: str = "new_run") -> None:
    """Put the kept values (or the defaults) into session state before the widgets are drawn.

    `page`: the page drawing the form (New run, or Sweep for a study's base config). Widget state
    belongs to the page that drew the widget: on another page the same key would come back empty,
    so the first run on a page puts every value back from the kept ones."""
    hints = {f"{s}.{n}": t for s, cls in SECTIONS.items() for n, t in field_types(cls).items()}
    kept = st.session_state.setdefault(FORM_STORE, {})
    if st.session_state.get(FORM_PAGE) != page:
        for wkey in [k for k in st.session_state if str(k).startswith(KEY_PREFIX) or k in RUN_FIELDS]:
            del st.session_state[wkey]
        st.session_state[FORM_PAGE] = page
    for key, default in _defaults().items():
        wkey = KEY_PREFIX + key
        if wkey in st.session_state:
            continue
        value = kept.get(wkey, _widget_value(key, hints[key], default))
        if key == "data.path" and datasets:
            value = _fit_dataset(value, datasets)
            value = value if value in datasets else _fit_dataset(default, datasets)
            value = value if value in datasets else datasets[0]
        st.session_state[wkey] = value
    for wkey, default in RUN_FIELDS.items():
        if wkey not in st.session_state:
            st.session_state[wkey] = kept.get(wkey, default)


def keep() -> None:
    """Remember the form's current values (called after the widgets are drawn)."""
    store = st.session_state.setdefault(FORM_STORE, {})
    for wkey in [KEY_PREFIX + k for k in _defaults()] + list(RUN_FIELDS):
        if wkey in st.session_state:
            store[wkey] = st.session_state[wkey]


def prefill(config: dict[str, Any], name: str = "", tags: list[str] | tuple[str, ...] = ()) -> None:
    """Load a run's (requested) config, name and tags into the form, replacing what it held.

    Values are checked by `RunConfig.from_dict` first (ConfigError if they no longer form a
    valid config, e.g. a run made by an older version with a setting since removed).
    """
    full = RunConfig.from_dict(config).to_dict()
    hints = {f"{s}.{n}": t for s, cls in SECTIONS.items() for n, t in field_types(cls).items()}
    values = {KEY_PREFIX + k: _widget_value(k, hints[k], v) for k, v in flatten(full).items()}
    values.update({"run_name": name, "run_tags": ", ".join(tags), "run_seeds": 1})
    st.session_state[FORM_STORE] = values
    for wkey in values:  # drawn again from the kept values by `restore` (which fits data.path)
        st.session_state.pop(wkey, None)


def config_form(datasets: list[str]) -> RunConfig | None:
    """Render every RunConfig field; return the validated config, or None (problems shown inline).
    Call `restore` before drawing any of the form's widgets (the page's name, tags, seeds too)."""
    hints = {f"{s}.{n}": t for s, cls in SECTIONS.items() for n, t in field_types(cls).items()}
    docs = {f"{s}.{n}": d for s, cls in SECTIONS.items() for n, d in field_docs(cls).items()}
    raw: dict[str, Any] = {}
    slots: dict[str, Any] = {}

    def draw(key: str) -> None:
        raw[key] = _widget(key, hints[key], docs.get(key, ""), datasets)
        slots[key] = st.empty()

    cols = st.columns(2)
    for i, key in enumerate(COMMON):
        with cols[i % 2]:
            draw(key)
    with st.expander("Advanced"):
        for section, cls in SECTIONS.items():
            st.markdown(f"**{section}**")
            cols = st.columns(3)
            rest = [f"{section}.{f.name}" for f in dataclasses.fields(cls) if f"{section}.{f.name}" not in COMMON]
            for i, key in enumerate(rest):
                with cols[i % 3]:
                    draw(key)
    keep()
    cfg, problems = validate_form(raw)
    if problems:
        _show_problems(problems, slots)
    return cfg


def validate_form(raw: dict[str, Any]) -> tuple[RunConfig | None, dict[str, list[str]]]:
    """(config, {} ) or (None, {field or '': [problems]}): every field parsed on its own, then
    the parsed ones validated together (a field that does not parse counts as its default)."""
    problems: dict[str, list[str]] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        try:
            parsed = parse_field(key, value)
        except ConfigError as exc:
            problems[key] = [str(exc)]
            continue
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = parsed
    try:
        cfg = RunConfig.from_dict(nested)
    except ConfigError as exc:
        for key, msgs in errors_by_field(str(exc)).items():
            problems.setdefault(key, []).extend(m for m in msgs if m not in problems.get(key, []))
        cfg = None
    return (None if problems else cfg), problems


def _show_problems(problems: dict[str, list[str]], slots: dict[str, Any]) -> None:
    """Each problem once: under its field; problems of no drawn field in the summary."""
    for key, msgs in problems.items():
        if key in slots:
            slots[key].error("\n\n".join(msgs))
    fields = [k for k in problems if k in slots]
    advanced = [k for k in fields if k not in COMMON]
    loose = [m for k, msgs in problems.items() if k not in slots for m in msgs]
    text = f"{len(fields)} setting(s) to fix before launch: {', '.join(fields)} (the reason is under each field"
    text += "; open *Advanced* for " + ", ".join(advanced) + ")." if advanced else ")."
    if loose:
        text += "\n\n" + "\n\n".join(loose)
    st.error(text if fields else "\n\n".join(loose))


def dataset_paths(data_dir: Path) -> list[str]:
    """Parquet files in the data folder (absolute paths, so the trainer's cwd does not matter)."""
    return [str(p.resolve()) for p in sorted(Path(data_dir).glob("*.parquet"))]
