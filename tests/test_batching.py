"""Day batches: rows, windows, targets and per-day edges gathered from a small panel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atft_core.batching import DayBatch, make_day_batch
from atft_core.config import ModelConfig
from atft_core.graph import GraphCache

from atft_core.data.panel import Panel


def make_panel(days=12, n=7, n_features=3, horizons=(1, 5), seed=0):
    """A panel with recognisable values: feature f of stock s on day d = d*1000 + s*10 + f."""
    g = torch.Generator().manual_seed(seed)
    d, s, f = torch.meshgrid(torch.arange(days), torch.arange(n), torch.arange(n_features), indexing="ij")
    features = (d * 1000 + s * 10 + f).float()
    valid = torch.rand(days, n, generator=g) > 0.25
    features = features * valid[..., None]
    targets = torch.randn(days, n, len(horizons), generator=g)
    targets[torch.rand(days, n, len(horizons), generator=g) < 0.1] = float("nan")
    fields = dict(
        dates=np.datetime64("2024-01-01") + np.arange(days),
        codes=[f"{1000 + i}0" for i in range(n)],
        feature_names=tuple(f"feat_{i}" for i in range(n_features)),
        features=features, valid=valid, targets=targets,
        returns=0.01 * torch.randn(days, n, generator=g) * valid,
        sectors=torch.arange(n) % 2, horizons=tuple(horizons), fingerprint="test")
    return Panel(**fields)


@pytest.mark.parametrize("lookback", [1, 3, 5])
@pytest.mark.parametrize("day_indices", [[6], [4, 9, 11], [0, 2, 7]])
def test_rows_windows_and_targets_are_panel_slices(lookback, day_indices):
    panel = make_panel()
    batch = make_day_batch(panel, day_indices, lookback, None, "cpu")
    expected_rows = [(b, s) for b, t in enumerate(day_indices) if t >= lookback - 1
                     for s in range(panel.valid.shape[1]) if panel.valid[t, s]]
    assert list(zip(batch.day.tolist(), batch.stock.tolist())) == expected_rows
    assert batch.day_index.tolist() == day_indices
    assert batch.x.shape == (len(expected_rows), lookback, panel.features.shape[2])
    for row, (b, s) in enumerate(expected_rows):
        t = day_indices[b]
        assert torch.equal(batch.x[row], panel.features[t - lookback + 1:t + 1, s])
        assert torch.equal(batch.targets[row].nan_to_num(-9), panel.targets[t, s].nan_to_num(-9))
    assert batch.edge_index.shape == (2, 0) and batch.edge_attr.shape == (0, 2)


def test_invalid_stocks_and_short_history_excluded():
    panel = make_panel()
    panel.valid[8, 3] = False
    batch = make_day_batch(panel, [8, 1], lookback=4, graphs=None, device="cpu")
    assert 3 not in batch.stock[batch.day == 0].tolist()
    assert (batch.day == 1).sum() == 0, "day 1 has no full 4-day window"
    assert batch.n_days == 2 and batch.n_rows == int(panel.valid[8].sum())


def test_edges_reindexed_within_days_and_never_cross():
    """Edges between a day's rows are that day's graph re-indexed; an edge of a stock absent
    that day joins the sink (index S) at both ends, so the edge count is the graphs' own."""
    panel = make_panel(days=20, n=9)
    cfg = ModelConfig(graph_top_k=3, graph_corr_window=6, graph_rebuild_interval=2, graph_max_sector_edges=2)
    cache = GraphCache(panel.returns, panel.valid, panel.sectors, cfg)
    days = [9, 10, 15, 17]
    batch = make_day_batch(panel, days, 3, cache, "cpu")
    sink = batch.n_rows
    src, dst = batch.edge_index
    assert batch.edge_index.shape[1] == sum(cache.for_day(t)[0].shape[1] for t in days)
    assert batch.edge_attr.shape == (src.numel(), 2)
    to_sink = (src == sink) | (dst == sink)
    assert to_sink.any() and torch.equal(src[to_sink], dst[to_sink]), "a sink edge touches a real row"
    real = ~to_sink
    src, dst, attr = src[real], dst[real], batch.edge_attr[real]
    assert torch.equal(batch.day[src], batch.day[dst]), "an edge crosses days"
    for b, t in enumerate(days):
        ei, ea = cache.for_day(t)
        present = panel.valid[t]
        keep = present[ei[0]] & present[ei[1]]
        expected = {(int(i), int(j)): tuple(a.tolist()) for (i, j), a in zip(ei[:, keep].T, ea[keep])}
        in_day = batch.day[src] == b
        got = {(int(batch.stock[i]), int(batch.stock[j])): tuple(a.tolist())
               for i, j, a in zip(src[in_day], dst[in_day], attr[in_day])}
        assert got == expected


def test_sink_edges_change_no_real_row():
    """The GAT over a batch equals the GAT over the same rows with the absent stocks' edges
    dropped (the old contract): the sink only ever talks to itself."""
    from atft_core.nn.gat import GraphBlock
    panel = make_panel(days=20, n=9)
    cfg = ModelConfig(hidden_size=8, gat_heads=2, gat_dropout=0.0, graph_top_k=3, graph_corr_window=6,
                      graph_rebuild_interval=4, graph_max_sector_edges=2)
    batch = make_day_batch(panel, [9, 10, 11], 3, GraphCache(panel.returns, panel.valid, panel.sectors, cfg), "cpu")
    src, dst = batch.edge_index
    real = (src < batch.n_rows) & (dst < batch.n_rows)
    assert not real.all()
    torch.manual_seed(0)
    block = GraphBlock(cfg).eval()
    h = torch.randn(batch.n_rows, 8)
    torch.testing.assert_close(block(h, batch.edge_index, batch.edge_attr),
                               block(h, batch.edge_index[:, real], batch.edge_attr[real]))


def test_to_device_and_errors():
    panel = make_panel()
    batch = make_day_batch(panel, torch.tensor([5, 6]), 2, None, "cpu")
    moved = batch.to("cpu")
    assert isinstance(moved, DayBatch) and torch.equal(moved.x, batch.x)
    with pytest.raises(IndexError, match="day indices"):
        make_day_batch(panel, [99], 2, None, "cpu")
    with pytest.raises(ValueError, match="lookback"):
        make_day_batch(panel, [5], 0, None, "cpu")


@pytest.mark.parametrize("lookback,top_k", [(3, 1), (4, 2), (1, 1)])
def test_precomputed_fan_gives_what_the_model_computes_itself(lookback, top_k):
    """The trainer's once-per-run FAN equals the per-batch one, for days near the panel start
    (zero context) and later ones, and a mismatched setting is refused."""
    from atft_core.model import ATFTGATFAN
    from atft_core.nn.fan import precompute_fan
    panel = make_panel(days=30, n_features=3)
    panel.features = torch.randn_like(panel.features) * panel.valid[..., None]
    torch.manual_seed(0)
    model = ATFTGATFAN(ModelConfig(hidden_size=8, encoder_heads=2, fan_top_k=top_k, use_gat=False), 3, 2).eval()
    fan = precompute_fan(panel.features, lookback, top_k)
    for days in ([lookback - 1, lookback, lookback + 1], [20, 21, 22, 23]):
        plain = make_day_batch(panel, days, lookback, None, "cpu")
        cached = make_day_batch(panel, days, lookback, None, "cpu", fan)
        assert plain.fan_seq is None and cached.fan_seq.shape == (plain.seq.shape[0], plain.seq.shape[1] - lookback + 1, 3)
        torch.testing.assert_close(model(cached).point, model(plain).point)
    with pytest.raises(ValueError, match="window"):
        make_day_batch(panel, [10], lookback + 1, None, "cpu", fan)
    other = ATFTGATFAN(ModelConfig(hidden_size=8, encoder_heads=2, fan_top_k=top_k + 1, use_gat=False), 3, 2)
    with pytest.raises(ValueError, match="fan_top_k"):
        other(make_day_batch(panel, [10], lookback, None, "cpu", fan))
