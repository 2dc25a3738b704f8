"""Shared test fixtures: a small demo dataset built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from atft_core.data.demo import make_demo

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Real J-Quants files (../shared/data); tests that need them skip when absent."""


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A 60-stock x 260-day demo dataset (raw files in demo_raw/ beside it); returns its path."""
    out = tmp_path_factory.mktemp("demo") / "demo.parquet"
    make_demo(out, n_stocks=60, n_days=260, seed=7)
    return out
