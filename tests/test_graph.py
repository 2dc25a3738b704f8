"""Stock graph: correctness against numpy, structure, sector edges, no look-ahead, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atft_core.config import ModelConfig
from atft_core.graph import GraphCache, build_graph


def factor_returns(days: int, n: int, sectors: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Returns with a sector factor, so same-sector stocks correlate."""
    g = torch.Generator().manual_seed(seed)
    n_sectors = int(sectors.max()) + 1
    factor = torch.randn(days, n_sectors, generator=g)
    return 0.01 * factor[:, sectors.clamp_min(0)] + 0.01 * torch.randn(days, n, generator=g)


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.T.tolist()))


@pytest.fixture
def market():
    n = 24
    sectors = torch.arange(n) % 4
    returns = factor_returns(40, n, sectors)
    return returns, torch.ones(n, dtype=torch.bool), sectors


@pytest.mark.parametrize("sector_edges", [True, False])
@pytest.mark.parametrize("top_k", [1, 3, 30])
def test_structure_symmetric_no_self_loops_no_duplicates(market, sector_edges, top_k):
    returns, valid, sectors = market
    cfg = ModelConfig(graph_top_k=top_k, graph_sector_edges=sector_edges, graph_max_sector_edges=2)
    ei, ea = build_graph(returns, valid, sectors, cfg)
    edges = edge_set(ei)
    assert ei.dtype == torch.long and ea.shape == (ei.shape[1], 2) and ea.dtype == torch.float32
    assert len(edges) == ei.shape[1], "duplicate edges"
    assert all(i != j for i, j in edges), "self loop"
    assert all((j, i) in edges for i, j in edges), "not symmetric"
    assert torch.isfinite(ea).all()


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_top_k_matches_numpy_correlation(market, top_k):
    returns, valid, sectors = market
    cfg = ModelConfig(graph_top_k=top_k, graph_sector_edges=False)
    ei, ea = build_graph(returns, valid, sectors, cfg)
    corr = np.corrcoef(returns.double().numpy().T)
    np.fill_diagonal(corr, -np.inf)
    top = np.argsort(-corr, axis=1)[:, :top_k]
    expected = {(i, int(j)) for i in range(corr.shape[0]) for j in top[i]}
    expected |= {(j, i) for i, j in expected}
    assert edge_set(ei) == expected
    src, dst = ei
    np.testing.assert_allclose(ea[:, 0].numpy(), corr[src.numpy(), dst.numpy()], atol=1e-5)
    np.testing.assert_array_equal(ea[:, 1].numpy(), (sectors[src] == sectors[dst]).float().numpy())


def test_sector_edges_toggle_and_cap(market):
    returns, valid, sectors = market
    off = ModelConfig(graph_top_k=1, graph_sector_edges=False)
    on = ModelConfig(graph_top_k=1, graph_sector_edges=True, graph_max_sector_edges=2)
    e_off = edge_set(build_graph(returns, valid, sectors, off)[0])
    ei_on, ea_on = build_graph(returns, valid, sectors, on)
    e_on = edge_set(ei_on)
    assert e_off < e_on
    assert all(sectors[i] == sectors[j] for i, j in e_on - e_off), "extra edges must be same-sector"
    assert ea_on[:, 1].sum() > 0
    # Each stock links to its 2 most correlated same-sector peers (and, by cap, to few others).
    corr = np.corrcoef(returns.double().numpy().T)
    for i in range(len(sectors)):
        peers = [j for j in range(len(sectors)) if j != i and sectors[j] == sectors[i]]
        best = sorted(peers, key=lambda j: -corr[i, j])[:2]
        assert all((i, j) in e_on for j in best)
    directed_cap = len(sectors) * (on.graph_top_k + on.graph_max_sector_edges)
    assert len(e_on) <= 2 * directed_cap
    capped = edge_set(build_graph(returns, valid, sectors, ModelConfig(graph_top_k=1, graph_max_sector_edges=0))[0])
    assert capped == e_off, "graph_max_sector_edges=0 adds no sector edges"


def test_invalid_and_constant_stocks_get_no_correlation_edges(market):
    returns, valid, sectors = market
    returns = returns.clone()
    valid = valid.clone()
    valid[0] = False                  # not trading at the anchor
    returns[:, 1] = 0.0               # no variation: correlation undefined
    returns[5, 2] = float("nan")      # a missing value must not poison anything
    sectors = sectors.clone()
    sectors[3] = -1                   # unknown sector
    cfg = ModelConfig(graph_top_k=3, graph_sector_edges=True, graph_max_sector_edges=2)
    ei, ea = build_graph(returns, valid, sectors, cfg)
    assert torch.isfinite(ea).all()
    for stock in (0, 1):
        touching = (ei[0] == stock)
        assert touching.any(), "a stock without correlation still gets sector edges"
        assert (ea[touching, 1] == 1).all() and (ea[touching, 0] == 0).all()
    assert (ei[0] == 2).any()
    off = ModelConfig(graph_top_k=3, graph_sector_edges=False)
    ei_off, _ = build_graph(returns, valid, sectors, off)
    assert not ((ei_off == 0) | (ei_off == 1)).any()
    # Unknown sector: never flagged same-sector.
    assert (ea[(ei[0] == 3) | (ei[1] == 3), 1] == 0).all()


def test_empty_and_tiny_inputs():
    cfg = ModelConfig()
    ei, ea = build_graph(torch.randn(10, 1), torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.long), cfg)
    assert ei.shape == (2, 0) and ea.shape == (0, 2)
    ei, _ = build_graph(torch.randn(10, 5), torch.zeros(5, dtype=torch.bool), torch.full((5,), -1), cfg)
    assert ei.shape == (2, 0)
    with pytest.raises(ValueError, match="stocks"):
        build_graph(torch.randn(10, 5), torch.ones(4, dtype=torch.bool), torch.zeros(5, dtype=torch.long), cfg)


def make_cache(days=30, n=16, interval=5, window=8, seed=0):
    sectors = torch.arange(n) % 3
    returns = factor_returns(days, n, sectors, seed)
    valid = torch.ones(days, n, dtype=torch.bool)
    cfg = ModelConfig(graph_rebuild_interval=interval, graph_corr_window=window, graph_top_k=2,
                      graph_max_sector_edges=1)
    return returns, valid, sectors, cfg


@pytest.mark.parametrize("interval,days,built", [(5, range(10, 20), 2), (1, range(3, 9), 6),
                                                 (4, range(1, 11), 3)])
def test_cache_rebuild_interval_counters(interval, days, built):
    returns, valid, sectors, cfg = make_cache(interval=interval)
    cache = GraphCache(returns, valid, sectors, cfg, "cpu")
    for t in days:
        cache.for_day(t)
    assert cache.stats()["built"] == built
    assert cache.stats()["reused"] == len(days) - built
    cache.reset_stats()
    assert cache.stats()["built"] == 0 and cache.stats()["reused"] == 0
    cache.for_day(days[0])
    assert cache.stats() == {"built": 0, "reused": 1, "cached": built}


def test_cache_uses_only_past_returns():
    returns, valid, sectors, cfg = make_cache(interval=5, window=8)
    cache = GraphCache(returns, valid, sectors, cfg)
    t = 13
    anchor = cache.anchor(t)
    assert anchor == 10
    expected = build_graph(returns[anchor - cfg.graph_corr_window + 1:anchor + 1], valid[anchor], sectors, cfg)
    got = cache.for_day(t)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    # Everything after the anchor (including days t, t+1, ... up to the panel end) changes:
    # the graph of every day in [anchor, anchor + interval) stays identical.
    future = returns.clone()
    future[anchor + 1:] = torch.randn_like(future[anchor + 1:])
    valid_future = valid.clone()
    valid_future[anchor + 1:, :4] = False
    perturbed = GraphCache(future, valid_future, sectors, cfg)
    for day in range(anchor, anchor + cfg.graph_rebuild_interval):
        a, b = cache.for_day(day), perturbed.for_day(day)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # Changing a return inside the window does change it (the test can fail).
    past = returns.clone()
    past[anchor - 2:anchor + 1] = torch.randn(3, returns.shape[1])
    changed = GraphCache(past, valid, sectors, cfg).for_day(t)
    assert not (torch.equal(changed[0], got[0]) and torch.equal(changed[1], got[1]))


def test_cache_early_days_and_bounds():
    returns, valid, sectors, cfg = make_cache(interval=1, window=8)
    cache = GraphCache(returns, valid, sectors, cfg)
    ei, _ = cache.for_day(0)       # window of one day: no measurable correlation
    assert ei.shape[0] == 2
    assert cache.for_day(3)[0].shape[1] > 0
    with pytest.raises(IndexError, match="outside"):
        cache.for_day(len(returns))
    with pytest.raises(ValueError, match="sectors"):
        GraphCache(returns, valid, sectors[:-1], cfg)
