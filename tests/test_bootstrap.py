"""Block-bootstrap intervals: coverage of a known mean on simulated series, determinism, edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter

from atft_core import bootstrap

SIMULATIONS = 300
DAYS = 250


def _ar1(rng: np.random.Generator, phi: float, mean: float, n: int = DAYS) -> np.ndarray:
    burn = 50
    return mean + lfilter([1.0], [1.0, -phi], rng.normal(size=n + burn))[burn:]


def _overlapping(rng: np.random.Generator, horizon: int, mean: float, n: int = DAYS) -> np.ndarray:
    """Daily series of h-day sums of iid returns: neighbours share h-1 days, like h-day targets."""
    return mean * horizon + np.convolve(rng.normal(size=n + horizon - 1), np.ones(horizon), "valid")


def _coverage(series, truth: float, horizon: int) -> float:
    hits = [(iv := bootstrap.mean_interval(x, horizon)).low <= truth <= iv.high for x in series]
    return float(np.mean(hits))


def test_interval_covers_the_true_mean_of_ar1_series():
    rng = np.random.default_rng(11)
    coverage = _coverage((_ar1(rng, 0.3, 0.02) for _ in range(SIMULATIONS)), 0.02, horizon=1)
    assert 0.90 <= coverage <= 0.98, coverage


@pytest.mark.parametrize("horizon", [5, 20])
def test_interval_covers_the_true_mean_of_overlapping_h_day_series(horizon):
    rng = np.random.default_rng(12)
    coverage = _coverage((_overlapping(rng, horizon, 0.01) for _ in range(SIMULATIONS)), 0.01 * horizon, horizon)
    assert 0.88 <= coverage <= 0.98, coverage


def test_ignoring_the_overlap_would_not_cover():
    """A block of one day on a 20-day overlapping series treats days as independent: too narrow."""
    rng = np.random.default_rng(12)
    hits = []
    for _ in range(100):
        x = _overlapping(rng, 20, 0.0)
        draws = x[bootstrap.resample_indices(len(x), 1)].mean(axis=1)
        half = 1.96 * draws.std(ddof=1)
        hits.append(abs(x.mean()) <= half)
    assert np.mean(hits) < 0.6


def test_block_length_follows_the_horizon():
    assert bootstrap.block_length(1) == bootstrap.MIN_BLOCK_DAYS
    assert bootstrap.block_length(5) == max(bootstrap.MIN_BLOCK_DAYS, 10)
    assert bootstrap.block_length(20) == 40
    assert bootstrap.mean_interval(np.arange(30.0), 20).block == 30     # capped at the series length
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        bootstrap.block_length(0)


def test_resamples_are_circular_blocks():
    idx = bootstrap.resample_indices(25, 10, n_resamples=50, seed=3)
    assert idx.shape == (50, 25) and not idx.flags.writeable
    steps = np.diff(idx, axis=1) % 25
    within = np.arange(24) % 10 != 9           # inside a block every step is +1 (mod n)
    assert (steps[:, within] == 1).all()


def test_same_seed_same_interval_other_seed_close():
    x = _ar1(np.random.default_rng(5), 0.2, 0.03)
    a, b = bootstrap.mean_interval(x, 1), bootstrap.mean_interval(x, 1)
    assert a == b and a.value == pytest.approx(x.mean()) and a.low < a.value < a.high
    other = bootstrap.mean_interval(x, 1, seed=1)
    assert other != a and other.high - other.low == pytest.approx(a.high - a.low, rel=0.1)


def test_sharpe_interval_is_around_the_annualised_sharpe():
    x = np.random.default_rng(6).normal(0.002, 0.01, DAYS)
    iv = bootstrap.sharpe_interval(x, horizon=1)
    assert iv.value == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(252)) and iv.low < iv.value < iv.high
    five = bootstrap.sharpe_interval(x, horizon=5)
    assert five.value == pytest.approx(iv.value / math.sqrt(5)) and five.block == 10
    assert iv.excludes_zero() == (iv.low > 0 or iv.high < 0)
    assert iv.text(2) == f"{iv.value:.2f} [{iv.low:.2f}, {iv.high:.2f}]"


def test_undefined_statistics_have_no_interval():
    assert bootstrap.mean_interval([0.1]).value is None                # one day
    assert bootstrap.mean_interval([None, float("nan"), 0.2, 0.4]).days == 2
    flat = bootstrap.sharpe_interval(np.full(30, 0.01))                # no risk: no Sharpe
    assert flat.value is None and flat.text() == "-"
    assert bootstrap.Interval(0.5, None, None, 3, 10).text(1) == "0.5"
