"""Turnover, net returns and break-even cost of the decile book against hand-made panels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atft_core import bootstrap, costs, metrics

N = 20
"""Stocks of the hand-made panel: deciles of two stocks each."""


def _books(*books: tuple[list[int], list[int]]) -> np.ndarray:
    """Predictions [D, N] whose day d ranks books[d][0] highest (in that order) and books[d][1]
    lowest, the other stocks in between."""
    pred = np.zeros((len(books), N))
    for d, (long, short) in enumerate(books):
        pred[d, long] = [100.0 - i for i in range(len(long))]
        pred[d, short] = [-100.0 - i for i in range(len(short))]
    return pred


def test_long_short_weights_are_the_deciles():
    pred = _books(([0, 1], [2, 3]))
    w = metrics.long_short_weights(pred, np.ones_like(pred, bool))
    assert w[0, [0, 1]].tolist() == [0.5, 0.5] and w[0, [2, 3]].tolist() == [-0.5, -0.5]
    assert np.count_nonzero(w) == 4 and w.sum() == 0.0


def test_turnover_of_a_known_rebalancing():
    # day 0: long {0, 1}, short {2, 3}; day 1: long {0, 4} (one of two long names replaced),
    # short {2, 3}; day 2: the book flipped (every position replaced); day 3 = day 2.
    pred = _books(([0, 1], [2, 3]), ([0, 4], [2, 3]), ([2, 3], [0, 4]), ([2, 3], [0, 4]))
    mask = np.ones_like(pred, bool)
    w = metrics.long_short_weights(pred, mask)
    assert sorted(np.flatnonzero(w[1] > 0)) == [0, 4] and sorted(np.flatnonzero(w[1] < 0)) == [2, 3]
    tau = costs.book_turnover(w, horizon=1)
    assert np.isnan(tau[0])                     # no earlier book
    assert tau[1:].tolist() == [0.25, 1.0, 0.0]  # 1 of 4 positions; all 4 (flip); none
    tau2 = costs.book_turnover(w, horizon=2)    # a 2-day book replaces the one of 2 days before
    assert np.isnan(tau2[:2]).all() and tau2[2:].tolist() == [1.0, 1.0]
    book = costs.book_costs(np.full(4, 0.01), tau, horizon=1, cost_bps=(0.0,))
    assert book.turnover == pytest.approx(1.25 / 3) and book.turnover_per_day == pytest.approx(1.25 / 3)
    assert book.holding_days == pytest.approx(3 / 1.25)


def test_a_day_without_a_book_has_no_turnover():
    w = metrics.long_short_weights(_books(*[([0, 1], [2, 3])] * 3), np.array([[True] * N, [False] * N, [True] * N]))
    assert np.isnan(costs.book_turnover(w, 1)[1:]).all()


def test_net_return_at_a_known_cost():
    gross = np.array([0.010, -0.002, 0.004])
    tau = np.array([0.25, 1.0, 0.0])
    # replacing a quarter of the book trades 1.0 of one leg's capital (sell + buy, both legs):
    # at 10 bp per side that is 10 bp; the full flip trades 4.0 = 40 bp
    np.testing.assert_allclose(costs.net_returns(gross, tau, 10.0), [0.009, -0.006, 0.004], rtol=0, atol=1e-15)


def test_cost_table_matches_a_direct_computation_per_horizon():
    rng = np.random.default_rng(3)
    target = rng.normal(0, 0.02, (60, N))
    pred = target + rng.normal(0, 0.03, (60, N))
    mask = rng.random((60, N)) > 0.05
    for h in (1, 5):
        w = metrics.long_short_weights(pred, mask & np.isfinite(target))
        gross = metrics.long_short_returns(pred, target, mask)
        tau = costs.book_turnover(w, h)
        book = costs.book_costs(gross, tau, h, cost_bps=(0, 5, 10, 20))
        # direct: for each day with an earlier book, sets of names and the returns
        nets = {c: [] for c in (0, 5, 10, 20)}
        taus = []
        for d in range(h, 60):
            changed = np.abs(w[d] - w[d - h]).sum() / 4
            taus.append(changed)
            for c in nets:
                nets[c].append(gross[d] - 4 * changed * c / 1e4)
        assert book.days == 60 - h and book.turnover == pytest.approx(np.mean(taus))
        assert book.turnover_per_day == pytest.approx(np.mean(taus) / h)
        for level in book.levels:
            net = np.array(nets[level.cost_bps])
            assert level.mean_daily == pytest.approx(net.mean() / h)
            assert level.annual == pytest.approx(net.mean() / h * 252)
            assert level.sharpe.value == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252 / h))
        assert [lv.cost_bps for lv in book.levels] == [0.0, 5.0, 10.0, 20.0]


def test_one_day_gross_sharpe_is_the_logged_long_short_sharpe():
    rng = np.random.default_rng(4)
    target = rng.normal(0, 0.02, (40, N))
    pred = target + rng.normal(0, 0.02, (40, N))
    mask = np.ones_like(pred, bool)
    gross = metrics.long_short_returns(pred, target, mask)
    tau = costs.book_turnover(metrics.long_short_weights(pred, mask), 1)
    zero = costs.book_costs(gross, tau, 1, (0,)).levels[0].sharpe.value
    logged = metrics.summarize(pred[1:], target[1:], mask[1:])["ls_sharpe"]    # the days with a turnover
    assert zero == pytest.approx(logged)


def test_break_even_cost_makes_the_net_sharpe_zero():
    gross = np.array([0.004, 0.001, 0.003, -0.001, 0.002])
    tau = np.array([0.5, 0.2, 0.4, 0.3, 0.1])
    c = costs.break_even_bps(gross, tau)
    assert c == pytest.approx(0.0018 / (4 * 0.3) * 1e4)          # 15 bp per side
    level = costs.book_costs(gross, tau, 1, (c,)).levels[0]
    assert level.mean_daily == pytest.approx(0.0, abs=1e-15) and level.sharpe.value == pytest.approx(0.0, abs=1e-9)
    assert costs.break_even_bps(gross, np.zeros(5)) is None       # a book that never trades
    assert costs.break_even_bps(-gross, tau) < 0                  # loses before costs


@pytest.mark.parametrize("text, message", [
    ("abc", "'abc' is not a number"), ("-5", "from 0 to 1000"), ("nan", "from 0 to 1000"),
    ("inf", "from 0 to 1000"), ("5000", "from 0 to 1000"), ("", "at least one"), (" , ", "at least one"),
    (",".join(str(i) for i in range(9)), "at most 8"),
])
def test_bad_cost_levels_are_refused_naming_the_value(text, message):
    with pytest.raises(costs.CostLevelsError, match=message) as info:
        costs.parse_cost_bps(text)
    assert str(info.value).startswith("costs: ")


def test_cost_levels_parse_sorted_and_unique():
    assert costs.parse_cost_bps("20, 0, 5,10, 5") == (0.0, 5.0, 10.0, 20.0)
    assert costs.parse_cost_bps([2.5]) == (2.5,)
    assert costs.parse_cost_bps(costs.DEFAULT_COST_BPS) == (0.0, 5.0, 10.0, 20.0)


def test_cost_table_of_an_empty_series_is_undefined_not_an_error():
    book = costs.book_costs(np.array([np.nan]), np.array([np.nan]), 1)
    assert book.days == 0 and book.turnover is None and book.break_even_bps is None
    assert all(lv.mean_daily is None and lv.sharpe == bootstrap.Interval(None, None, None, 0, 1) for lv in book.levels)
