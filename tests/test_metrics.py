"""Metrics against scipy.stats or a plain per-date numpy reference, to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr

from atft_core import metrics

TOL = 1e-6


def _panel(d: int = 12, n: int = 40, seed: int = 0, ties: bool = True):
    """Predictions correlated with targets, with ties, NaNs, masked cells and a 1-stock date."""
    rng = np.random.default_rng(seed)
    target = rng.normal(0, 0.02, (d, n))
    pred = 0.3 * target / 0.02 + rng.normal(size=(d, n))
    if ties:
        pred = np.round(pred, 1)  # many equal predictions
        target[:, ::7] = 0.0  # equal targets too
    mask = rng.random((d, n)) > 0.1
    pred[0, 3] = np.nan
    target[1, 5] = np.inf
    mask[2] = False
    mask[2, 0] = True  # a date with one valid stock
    mask[3] = False  # a date with none
    return pred, target, mask


def _valid_rows(pred, target, mask):
    for d in range(pred.shape[0]):
        ok = mask[d] & np.isfinite(pred[d]) & np.isfinite(target[d])
        yield d, pred[d][ok], target[d][ok]


def _ref_series(pred, target, mask, fn):
    out = np.full(pred.shape[0], np.nan)
    for d, p, t in _valid_rows(pred, target, mask):
        if len(p) >= 2:
            out[d] = fn(p, t)
    return out


def _assert_series(actual, expected):
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], atol=TOL, rtol=0)


def test_daily_ic_matches_scipy_pearson():
    pred, target, mask = _panel()
    expected = _ref_series(pred, target, mask, lambda p, t: pearsonr(p, t).statistic)
    actual = metrics.daily_ic(pred, target, mask)
    _assert_series(actual, expected)
    assert np.isnan(actual[2]) and np.isnan(actual[3])  # 1 stock, 0 stocks
    assert np.isfinite(actual[0]) and np.isfinite(actual[1])  # NaN/inf cells dropped, not the date


def test_daily_rank_ic_matches_scipy_spearman_with_ties():
    pred, target, mask = _panel()
    expected = _ref_series(pred, target, mask, lambda p, t: spearmanr(p, t).statistic)
    _assert_series(metrics.daily_rank_ic(pred, target, mask), expected)
    # and equals Pearson of average ranks by definition
    alt = _ref_series(pred, target, mask, lambda p, t: pearsonr(rankdata(p), rankdata(t)).statistic)
    _assert_series(metrics.daily_rank_ic(pred, target, mask), alt)


def test_constant_predictions_give_undefined_correlation_not_error():
    pred, target, mask = _panel()
    pred[:] = 1.0
    assert np.isnan(metrics.daily_ic(pred, target, mask)).all()
    summary = metrics.summarize(pred, target, mask)
    assert summary["ic"] is None and summary["rank_ic"] is None and summary["icir"] is None
    assert summary["pred_std"] == pytest.approx(0.0, abs=1e-12)
    # equal predictions are neither above nor below their mean, whatever the rounding
    pred[:] = 0.1
    hit = metrics.daily_hit_rate(pred, target, mask)
    ref = _ref_series(pred, target, mask, lambda p, t: np.mean(0 == np.sign(t - t.mean())))
    _assert_series(hit, ref)


def _ref_long_short(p, t, q=0.1):
    order = np.argsort(-p, kind="stable")
    k = max(1, int(math.floor(len(p) * q + 1e-9)))
    return t[order[:k]].mean() - t[order[-k:]].mean()


def test_long_short_matches_reference_and_explicit_case():
    pred, target, mask = _panel(ties=False)
    _assert_series(metrics.long_short_returns(pred, target, mask), _ref_series(pred, target, mask, _ref_long_short))
    # 20 stocks: legs of 2. Top preds are stocks 19, 18; bottom 0, 1.
    p = np.arange(20.0)[None]
    t = np.arange(20.0)[None] * 0.01
    got = metrics.long_short_returns(p, t, np.ones_like(p, bool))[0]
    assert got == pytest.approx((0.19 + 0.18) / 2 - (0.00 + 0.01) / 2, abs=1e-12)
    # 5 stocks: floor(0.5) = 0 -> legs of 1
    got = metrics.long_short_returns(p[:, :5], t[:, :5], np.ones((1, 5), bool))[0]
    assert got == pytest.approx(0.04, abs=1e-12)


def _ref_jpx(p, t):
    """The Kaggle JPX 2022 reference, written as the competition's pandas code does it."""
    n = len(p)
    size = 200 if n >= 1000 else max(1, int(n * 0.2))
    rank = np.empty(n, int)
    rank[np.argsort(-p, kind="stable")] = np.arange(n)
    weights = np.linspace(start=2, stop=1, num=size)
    by_rank = t[np.argsort(rank)]
    purchase = (by_rank[:size] * weights).sum() / weights.mean()
    short = (by_rank[::-1][:size] * weights).sum() / weights.mean()
    return purchase - short


@pytest.mark.parametrize("n", [50, 999, 1000, 1300])
def test_jpx_spread_small_and_large_universe(n):
    rng = np.random.default_rng(n)
    target = rng.normal(0, 0.02, (6, n))
    pred = target + rng.normal(0, 0.05, (6, n))
    mask = np.ones((6, n), bool)
    _assert_series(metrics.jpx_spread_returns(pred, target, mask), _ref_series(pred, target, mask, _ref_jpx))
    assert metrics.jpx_portfolio_size(n) == (200 if n >= 1000 else int(n * 0.2))


def test_jpx_spread_explicit_weights():
    # 10 stocks -> legs of 2 with weights (2, 1), mean weight 1.5.
    p = np.arange(10.0)[None]
    t = np.arange(10.0)[None]
    got = metrics.jpx_spread_returns(p, t, np.ones((1, 10), bool))[0]
    purchase = (9 * 2 + 8 * 1) / 1.5
    short = (0 * 2 + 1 * 1) / 1.5
    assert got == pytest.approx(purchase - short, abs=1e-12)


def test_hit_rate_and_pred_std_match_reference():
    pred, target, mask = _panel()
    hit = _ref_series(pred, target, mask, lambda p, t: np.mean(np.sign(p - p.mean()) == np.sign(t - t.mean())))
    _assert_series(metrics.daily_hit_rate(pred, target, mask), hit)
    _assert_series(metrics.daily_pred_std(pred, target, mask), _ref_series(pred, target, mask, lambda p, t: p.std()))


def test_summarize_matches_series_and_is_nan_free():
    pred, target, mask = _panel(d=30)
    s = metrics.summarize(pred, target, mask)
    assert set(s) == set(metrics.SUMMARY_KEYS)
    ic = metrics.daily_ic(pred, target, mask)
    ric = metrics.daily_rank_ic(pred, target, mask)
    ls = metrics.long_short_returns(pred, target, mask)
    jpx = metrics.jpx_spread_returns(pred, target, mask)
    assert s["n_days"] == 28  # dates 2 (one stock) and 3 (none) are dropped
    assert s["ic"] == pytest.approx(np.nanmean(ic), abs=TOL)
    assert s["rank_ic"] == pytest.approx(np.nanmean(ric), abs=TOL)
    assert s["icir"] == pytest.approx(np.nanmean(ic) / np.nanstd(ic, ddof=1), abs=TOL)
    assert s["rank_icir"] == pytest.approx(np.nanmean(ric) / np.nanstd(ric, ddof=1), abs=TOL)
    assert s["ls_sharpe"] == pytest.approx(np.nanmean(ls) / np.nanstd(ls, ddof=1) * math.sqrt(252), abs=TOL)
    assert s["jpx_sharpe"] == pytest.approx(np.nanmean(jpx) / np.nanstd(jpx, ddof=1), abs=TOL)
    assert s["rank_ic"] > 0.1  # planted signal is visible
    for key, value in s.items():
        assert value is None or math.isfinite(value), key


def test_summarize_single_date_gives_none_for_ratios():
    pred, target, mask = _panel(d=5)
    s = metrics.summarize(pred[:1], target[:1], mask[:1])
    assert s["n_days"] == 1 and s["ic"] is not None
    assert s["icir"] is None and s["ls_sharpe"] is None and s["jpx_sharpe"] is None


def test_summarize_horizons_names():
    pred, target, mask = _panel(d=8)
    p3 = np.stack([pred, -pred], axis=2)
    t3 = np.stack([target, target], axis=2)
    out = metrics.summarize_horizons(p3, t3, mask, (1, 5), prefix="val/")
    assert out["val/rank_ic"] == out["val/rank_ic_1d"]
    assert out["val/rank_ic_5d"] == pytest.approx(-out["val/rank_ic_1d"], abs=TOL)


def test_decile_returns_and_cumulative():
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(20, 100))
    target = pred * 0.01
    mask = np.ones_like(pred, bool)
    dec = metrics.decile_returns(pred, target, mask)
    ref = np.zeros(10)
    for d in range(20):
        order = np.argsort(pred[d])
        ref += target[d][order].reshape(10, 10).mean(axis=1) / 20
    np.testing.assert_allclose(dec, ref, atol=TOL)
    assert np.all(np.diff(dec) > 0)
    cum = metrics.cumulative_long_short(pred, target, mask)
    np.testing.assert_allclose(cum, np.cumsum(metrics.long_short_returns(pred, target, mask)), atol=TOL)
    # fewer stocks than bins: empty bins do not count, never-filled bins are NaN
    few = metrics.decile_returns(pred[:, :3], target[:, :3], mask[:, :3], n_bins=5)
    assert np.isnan(few).sum() == 2


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        metrics.daily_ic(np.zeros((2, 3)), np.zeros((2, 4)), np.ones((2, 3), bool))


def test_paired_t_matches_hand_computation():
    # d = [0.1, 0.3, 0.2, 0.4]: mean 0.25, std(ddof=1) = sqrt(0.05/3), t = 0.25 / (std / 2)
    t, n = metrics.paired_t([0.2, 0.5, 0.1, 0.6], [0.1, 0.2, -0.1, 0.2])
    assert n == 4
    assert t == pytest.approx(0.25 / (math.sqrt(0.05 / 3) / 2))
    assert t == pytest.approx(3.8729833, rel=1e-6)


def test_paired_t_uses_common_dates_only_and_handles_degenerate_input():
    # positions with a missing value on either side are dropped: d = [1, 2, 3] -> t = 2 / (1 / sqrt 3)
    t, n = metrics.paired_t([1.0, None, 3.0, float("nan"), 5.0], [0.0, 1.0, 1.0, 0.0, 2.0])
    assert n == 3 and t == pytest.approx(2 * math.sqrt(3))
    assert metrics.paired_t([0.1], [0.0]) == (None, 1)                 # one date: no std
    assert metrics.paired_t([0.2, 0.3], [0.1, 0.2])[0] is None          # constant difference
    with pytest.raises(ValueError):
        metrics.paired_t([0.1, 0.2], [0.1])


def test_rank_ic_by_group_ranks_within_each_group():
    pred, target, mask = _panel(d=10, n=40)
    groups = np.arange(40) % 3
    groups[-1] = 4                                   # a group of one stock: never a correlation; group 3 empty
    by_group = metrics.daily_rank_ic_by_group(pred, target, mask, groups)
    assert by_group.shape == (5, 10)
    for g in range(3):
        cols = groups == g
        _assert_series(by_group[g], _ref_series(pred[:, cols], target[:, cols], mask[:, cols],
                                                lambda p, t: spearmanr(p, t).statistic))
    assert np.isnan(by_group[3]).all() and np.isnan(by_group[4]).all()
    with pytest.raises(ValueError, match="groups must be"):
        metrics.daily_rank_ic_by_group(pred, target, mask, groups[:-1])
