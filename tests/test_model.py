"""ATFT-GAT-FAN: shapes, parameter counts, phases, gate, FAN, causality, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atft_core.batching import DayBatch
from atft_core.config import ModelConfig
from atft_core.graph import build_graph
from atft_core.model import ATFTGATFAN, ModelOutput
from atft_core.nn.encoder import LastStepAttention
from atft_core.nn.fan import FrequencyAdaptiveNorm

N_FEATURES, LOOKBACK = 5, 8
SMALL = ModelConfig(hidden_size=8, encoder_heads=2, gat_heads=2, graph_top_k=2, graph_max_sector_edges=1)


def make_batch(cfg: ModelConfig, days: int = 2, stocks: int = 6, n_features: int = N_FEATURES,
               lookback: int = LOOKBACK, n_horizons: int = 2, seed: int = 0) -> DayBatch:
    """`days` whole days of `stocks` rows each, with real graphs from random returns."""
    g = torch.Generator().manual_seed(seed)
    sectors = torch.arange(stocks) % 2
    edges, attrs = [], []
    for b in range(days):
        ei, ea = build_graph(torch.randn(20, stocks, generator=g), torch.ones(stocks, dtype=torch.bool), sectors, cfg)
        edges.append(ei + b * stocks)
        attrs.append(ea)
    s = days * stocks
    return DayBatch.from_windows(x=torch.randn(s, lookback, n_features, generator=g),
                    day=torch.arange(days).repeat_interleave(stocks), day_index=torch.arange(days),
                    stock=torch.arange(stocks).repeat(days), targets=torch.randn(s, n_horizons, generator=g),
                    edge_index=torch.cat(edges, 1), edge_attr=torch.cat(attrs))


def build(cfg: ModelConfig = SMALL, n_horizons: int = 2, seed: int = 0, **changes) -> ATFTGATFAN:
    torch.manual_seed(seed)
    return ATFTGATFAN(dataclasses.replace(cfg, **changes), N_FEATURES, n_horizons)


@pytest.mark.parametrize("changes,n_horizons", [
    ({}, 2), ({"hidden_size": 16, "encoder_layers": 2}, 1), ({"quantiles": (0.5,)}, 3),
    ({"use_gat": False}, 2), ({"fan_top_k": 0, "gat_layers": 1, "gat_heads": 4}, 4),
    ({"encoder_heads": 1, "gate_learnable": False}, 2),
])
def test_output_shapes(changes, n_horizons):
    model = build(n_horizons=n_horizons, **changes)
    batch = make_batch(model.cfg, n_horizons=n_horizons)
    out = model(batch)
    q = len(model.cfg.quantiles)
    assert isinstance(out, ModelOutput)
    assert out.point.shape == (batch.n_rows, n_horizons)
    assert out.quantiles.shape == (batch.n_rows, n_horizons, q)
    assert out.alpha.dim() == 0 and torch.isfinite(out.alpha)
    assert out.feature_weights.shape == (batch.n_rows, N_FEATURES)
    assert torch.isfinite(out.point).all() and torch.isfinite(out.quantiles).all()


def test_parameter_count_follows_config():
    base = build().count_parameters()
    assert build(hidden_size=32).count_parameters() > build(hidden_size=16).count_parameters() > base
    assert build(ModelConfig(hidden_size=256)).count_parameters() > build(ModelConfig(hidden_size=64)).count_parameters()
    for changes in ({"encoder_layers": 2}, {"gat_layers": 3}, {"quantiles": (0.1, 0.3, 0.5, 0.9)},
                    {"use_gat": False}):
        assert build(**changes).count_parameters() != base, changes
    assert build(n_horizons=3).count_parameters() > base
    # GATv2's weights are hidden x hidden whatever the head count (heads split the width), so
    # gat_heads changes the layers' structure and output, not the parameter count.
    four_heads = build(gat_heads=4)
    assert all(conv.heads == 4 for conv in four_heads.graph.layers)
    batch = make_batch(SMALL)
    assert not torch.allclose(build().eval()(batch).point, four_heads.eval()(batch).point)


def test_gat_params_have_grad_only_from_phase_2():
    model = build()
    batch = make_batch(model.cfg)
    for phase in (0, 1, 2, 3):
        model.zero_grad(set_to_none=True)
        model.set_phase(phase)
        out = model(batch)
        (out.point.square().mean() + out.quantiles.square().mean()).backward()
        grads = [p.grad for p in model.gat_parameters()]
        if phase < 2:
            assert all(g is None for g in grads), phase
        else:
            norm = torch.sqrt(sum(g.square().sum() for g in grads if g is not None))
            assert all(g is not None for g in grads) and norm > 0, phase
    with pytest.raises(ValueError, match="phase"):
        model.set_phase(4)


def test_fan_changes_output_and_zero_equals_off():
    batch = make_batch(SMALL)
    on = build(fan_top_k=2).eval()
    zero = build(fan_top_k=0).eval()
    zero.load_state_dict(on.state_dict())
    on.set_phase(1)
    zero.set_phase(1)
    off_by_phase = build(fan_top_k=2).eval()
    off_by_phase.load_state_dict(on.state_dict())
    off_by_phase.set_phase(0)
    assert torch.equal(zero(batch).point, off_by_phase(batch).point)
    assert not torch.allclose(on(batch).point, zero(batch).point)
    other_k = build(fan_top_k=3).eval()
    other_k.load_state_dict(on.state_dict())
    other_k.set_phase(1)
    assert not torch.allclose(on(batch).point, other_k(batch).point)


@pytest.mark.parametrize("length,k", [(8, 1), (8, 3), (7, 2), (20, 3), (6, 4), (1, 1)])
def test_fan_matches_fft_reference_at_every_step(length, k):
    seq = torch.randn(4, length + 5, 3, dtype=torch.float64)
    residual, summary = FrequencyAdaptiveNorm(k)(seq, length)
    assert residual.shape == (4, 6, 3) and summary.shape == (4, 6, 6)
    for step in range(length - 1, seq.shape[1]):
        window = seq[:, step - length + 1:step + 1]                        # days <= step only
        spectrum = torch.fft.rfft(window, dim=1)
        top = spectrum.abs().topk(min(k, spectrum.shape[1]), dim=1).indices
        keep = torch.zeros(spectrum.shape, dtype=torch.bool).scatter_(1, top, True)
        removed = torch.fft.irfft(spectrum * keep, n=length, dim=1)
        i = step - length + 1
        torch.testing.assert_close(residual[:, i], seq[:, step] - removed[:, -1])
        torch.testing.assert_close(summary[:, i], torch.cat([removed[:, -1], removed.square().mean(1).sqrt()], -1))


def test_shared_histories_equal_one_window_per_row():
    """Rows of consecutive days read from one stock history give what a window per row gives
    for the first day (the same L steps), and stay causal for the later ones."""
    model = build(use_gat=False).eval()
    stocks, days, lookback = 3, 4, LOOKBACK
    seq = torch.randn(stocks, days + 2 * lookback - 2, N_FEATURES)
    stock = torch.arange(stocks).repeat(days)
    day = torch.arange(days).repeat_interleave(stocks)
    common = dict(day=day, day_index=torch.arange(days), stock=stock, targets=torch.zeros(len(day), 2),
                  edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, 2))
    shared = DayBatch(seq=seq, seq_row=stock, seq_end=2 * lookback - 2 + day, lookback=lookback, **common)
    windows = torch.stack([seq[s, d:d + 2 * lookback - 1] for d, s in zip(day.tolist(), stock.tolist())])
    per_row = DayBatch(seq=windows, seq_row=torch.arange(len(day)), seq_end=torch.full((len(day),), 2 * lookback - 2),
                       lookback=lookback, **common)
    torch.testing.assert_close(shared.x, per_row.x)
    first = day == 0
    torch.testing.assert_close(model(shared).point[first], model(per_row).point[first])
    later = seq.clone()
    later[:, 2 * lookback - 1:] += 5.0                                     # days after day 0
    moved = model(dataclasses.replace(shared, seq=later)).point
    torch.testing.assert_close(moved[first], model(shared).point[first])
    assert not torch.allclose(moved[~first], model(shared).point[~first])


def test_last_step_attention_equals_causal_multihead_attention():
    torch.manual_seed(0)
    hidden, heads, length = 8, 2, 5
    ours = LastStepAttention(hidden, heads, dropout=0.0)
    ref = torch.nn.MultiheadAttention(hidden, heads, batch_first=True)
    with torch.no_grad():
        w = ref.in_proj_weight
        w[:hidden], w[hidden:2 * hidden], w[2 * hidden:] = ours.q.weight, ours.k.weight, ours.v.weight
        b = ref.in_proj_bias
        b[:hidden], b[2 * hidden:] = ours.q.bias, ours.v.bias
        b[hidden:2 * hidden] = torch.randn(hidden)     # a key bias cancels in the softmax
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    seq = torch.randn(3, length, hidden)
    causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
    expected, _ = ref(seq, seq, seq, attn_mask=causal)
    torch.testing.assert_close(ours(seq), expected[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gate_init", [0.1, 0.5, 0.8])
def test_gate_init_sets_alpha(gate_init):
    out = build(gate_init=gate_init)(make_batch(SMALL))
    assert out.alpha.item() == pytest.approx(gate_init, abs=1e-6)


@pytest.mark.parametrize("learnable", [True, False])
def test_gate_learnable_moves_alpha_only_when_learnable(learnable):
    model = build(gate_learnable=learnable)
    batch = make_batch(model.cfg)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = model(batch).alpha.item()
    out = model(batch)
    (out.point - batch.targets).square().mean().backward()
    opt.step()
    after = model(batch).alpha.item()
    assert (after != before) == learnable
    assert any(p is model.gate.logit for p in model.parameters()) == learnable
    model.set_phase(0)
    assert model(batch).alpha.item() == pytest.approx(after), "alpha is reported with the GAT off too"


def neighbours_within(edge_index: torch.Tensor, start: int, hops: int) -> set[int]:
    reached = {start}
    for _ in range(hops):
        reached |= {int(d) for s, d in edge_index.T.tolist() if s in reached}
    return reached


@pytest.mark.parametrize("gat_layers", [1, 2])
@pytest.mark.parametrize("use_gat", [True, False])
def test_last_step_change_moves_only_the_stock_and_its_graph_neighbours(gat_layers, use_gat):
    model = build(gat_layers=gat_layers, use_gat=use_gat, graph_top_k=1, graph_max_sector_edges=0).eval()
    batch = make_batch(model.cfg, days=3, stocks=8)
    j = 9                                   # a row of day 1
    changed = dataclasses.replace(batch, seq=batch.seq.clone())
    changed.seq[j, -1] += 3.0   # from_windows: row j's own history ends at its day
    diff = (model(batch).point - model(changed).point).abs().amax(1)
    moved = set(torch.nonzero(diff > 0).flatten().tolist())
    allowed = neighbours_within(batch.edge_index, j, gat_layers) if use_gat else {j}
    assert j in moved and moved <= allowed
    assert all(batch.day[r] == batch.day[j] for r in moved), "a change leaked into another day"
    if use_gat:
        assert len(moved) > 1, "graph neighbours should feel the change"


def test_isolated_rows_and_empty_graph():
    model = build().eval()
    batch = make_batch(SMALL)
    empty = dataclasses.replace(batch, edge_index=torch.zeros(2, 0, dtype=torch.long),
                                edge_attr=torch.zeros(0, 2))
    out = model(empty)
    assert torch.isfinite(out.point).all()


def test_graph_block_equals_plain_pyg_gatv2():
    """The padded edge projection is only a faster GEMM, and the self loops added once by the
    block are those each PyG layer adds itself: same output, gradients and state dict keys as
    a plain stack of PyG GATv2Conv layers (add_self_loops=True) holding the same weights."""
    import torch.nn.functional as F
    from torch_geometric.nn import GATv2Conv

    from atft_core.nn.gat import GraphBlock
    cfg = dataclasses.replace(SMALL, gat_dropout=0.0, gat_layers=2)
    torch.manual_seed(0)
    block = GraphBlock(cfg)
    plain = torch.nn.ModuleList()
    for conv in block.layers:
        plain.append(GATv2Conv(8, 4, heads=2, concat=True, edge_dim=2, dropout=0.0, add_self_loops=True))
        plain[-1].load_state_dict(conv.state_dict())
    assert [k.split(".", 1)[1] for k in block.state_dict()] == list(plain.state_dict())
    batch = make_batch(cfg, days=3, stocks=7)
    h = torch.randn(batch.n_rows, 8)
    theirs = h
    for conv in plain:
        theirs = theirs + F.elu(conv(theirs, batch.edge_index, batch.edge_attr))
    ours = block(h, batch.edge_index, batch.edge_attr)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for (name, p), q in zip(block.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_deterministic_with_fixed_seed():
    batch = make_batch(SMALL)
    outs = []
    for _ in range(2):
        model = build(seed=7).train()
        torch.manual_seed(1)                 # dropout masks
        outs.append(model(batch).point)
    assert torch.equal(outs[0], outs[1])
    eval_model = build(seed=7).eval()
    assert torch.equal(eval_model(batch).point, eval_model(batch).point)
    assert not torch.equal(build(seed=8).eval()(batch).point, eval_model(batch).point)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        ATFTGATFAN(ModelConfig(kind="ridge"), N_FEATURES, 1)
    model = build()
    batch = make_batch(SMALL, n_features=N_FEATURES + 1)
    with pytest.raises(ValueError, match="x"):
        model(batch)
