"""The New-run form, generated from the RunConfig dataclasses.

Every widget's default is the dataclass default (nothing is retyped here); the type decides
the widget. The form returns the raw values as a nested dict, which `RunConfig.from_dict`
validates; problems are then shown under the widget of the field they name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from atft_core.config import MODEL_KINDS, SECTIONS, TARGET_NORMALIZATIONS, ConfigError, RunConfig, field_docs, field_types

from .logic import errors_by_field

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
}
"""String fields with a closed set of values (the same sets config.validate accepts)."""

KEY_PREFIX = "cfg."


def _defaults() -> dict[str, Any]:
    base = RunConfig()
    return {
        f"{section}.{f.name}": getattr(getattr(base, section), f.name)
        for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
    }


def _as_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _widget(key: str, hint: Any, default: Any, doc: str, datasets: list[str]) -> Any:
    """One widget for one field; returns its raw value (strings are parsed by from_dict)."""
    wkey = KEY_PREFIX + key
    common = {"key": wkey, "help": doc}
    if key == "data.path" and datasets:
        options = list(dict.fromkeys(datasets))
        names = [Path(o).name for o in options]
        index = names.index(Path(default).name) if Path(default).name in names else 0
        return st.selectbox(key, options, index=index, format_func=lambda p: Path(p).name, **common)
    if key in CHOICES:
        options = list(CHOICES[key])
        return st.selectbox(key, options, index=options.index(default), **common)
    if hint is bool:
        return st.checkbox(key, value=default, **common)
    if hint is int:
        return st.number_input(key, value=default, step=1, **common)
    # Floats and tuples are typed as text: small floats (1e-3) survive unrounded, and a bad
    # value reaches RunConfig.from_dict so the message comes from the one validator.
    return st.text_input(key, value=_as_text(default), **common)


def config_form(datasets: list[str]) -> RunConfig | None:
    """Render every RunConfig field; return the validated config, or None (problems shown inline)."""
    defaults = _defaults()
    hints = {f"{s}.{n}": t for s, cls in SECTIONS.items() for n, t in field_types(cls).items()}
    docs = {f"{s}.{n}": d for s, cls in SECTIONS.items() for n, d in field_docs(cls).items()}
    raw: dict[str, Any] = {}
    slots: dict[str, Any] = {}

    def draw(key: str) -> None:
        raw[key] = _widget(key, hints[key], defaults[key], docs.get(key, ""), datasets)
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
    nested: dict[str, Any] = {}
    for key, value in raw.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    try:
        return RunConfig.from_dict(nested)
    except ConfigError as exc:
        problems = errors_by_field(str(exc))
        for field_key, msgs in problems.items():
            if field_key in slots:
                slots[field_key].error("\n\n".join(msgs))
        st.error(f"Invalid settings: {exc}")
        return None


def dataset_paths(data_dir: Path) -> list[str]:
    """Parquet files in the data folder (absolute paths, so the trainer's cwd does not matter)."""
    return [str(p.resolve()) for p in sorted(Path(data_dir).glob("*.parquet"))]
