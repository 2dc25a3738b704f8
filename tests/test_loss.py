"""compute_loss: every weight, horizon weights, rank scale, per-date grouping, NaN and degenerate
inputs, and each term against a plain reference computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import norm, pearsonr, rankdata, spearmanr

from atft_core import loss as loss_mod
from atft_core.config import LossConfig
from atft_core.loss import TERM_NAMES, average_rank, compute_loss, soft_rank, soft_spearman

QUANTILES = (0.1, 0.5, 0.9)
WEIGHT_FIELDS = {
    "huber": "huber_weight",
    "pinball": "pinball_weight",
    "rankic": "rankic_weight",
    "cs_ic": "cs_ic_weight",
    "sharpe": "sharpe_weight",
}


def _batch(day: torch.Tensor, targets: torch.Tensor):
    """A real DayBatch (only day and targets matter here)."""
    from atft_core.batching import DayBatch
    s = day.shape[0]
    n_days = int(day.max()) + 1
    return DayBatch.from_windows(x=torch.zeros(s, 1, 1), day=day, day_index=torch.arange(n_days),
                                 stock=torch.arange(s), targets=targets, edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, 2))


def _case(n_per_day=(60, 50, 40), n_h=2, seed=0, signal=0.5):
    """Point / quantile predictions with some skill on returns-scaled targets, several days."""
    g = torch.Generator().manual_seed(seed)
    day = torch.cat([torch.full((n,), d, dtype=torch.long) for d, n in enumerate(n_per_day)])
    s = day.shape[0]
    targets = 0.02 * torch.randn(s, n_h, generator=g) + 0.01 * day[:, None]  # day-level drift
    point = signal * targets / 0.02 + torch.randn(s, n_h, generator=g)
    quant = point[..., None] + torch.tensor([-1.0, 0.0, 1.0]) + 0.3 * torch.randn(s, n_h, 3, generator=g)
    out = SimpleNamespace(point=point.requires_grad_(), quantiles=quant.requires_grad_())
    return out, _batch(day, targets)


def _only(term: str, weight: float = 1.0, **extra) -> LossConfig:
    values = {f: 0.0 for f in WEIGHT_FIELDS.values()}
    values[WEIGHT_FIELDS[term]] = weight
    return LossConfig(**values, **extra)


@pytest.mark.parametrize("term", TERM_NAMES)
def test_each_weight_scales_exactly_its_term(term):
    out, batch = _case()
    base_total, base = compute_loss(out, batch, LossConfig(), QUANTILES)
    alone, terms = compute_loss(out, batch, _only(term, 0.7), QUANTILES)
    assert alone.item() == pytest.approx(0.7 * base[term], rel=1e-5, abs=1e-6)
    assert terms[term] == pytest.approx(base[term], rel=1e-6)
    field = WEIGHT_FIELDS[term]
    bumped = LossConfig(**{field: getattr(LossConfig(), field) + 0.25})
    total, _ = compute_loss(out, batch, bumped, QUANTILES)
    assert total.item() - base_total.item() == pytest.approx(0.25 * base[term], rel=1e-4, abs=1e-6)


def test_total_is_weighted_sum_of_reported_terms():
    out, batch = _case()
    cfg = LossConfig()
    total, t = compute_loss(out, batch, cfg, QUANTILES, rank_scale=0.5)
    expected = (cfg.huber_weight * t["huber"] + cfg.pinball_weight * t["pinball"]
                + 0.5 * (cfg.rankic_weight * t["rankic"] + cfg.cs_ic_weight * t["cs_ic"] + cfg.sharpe_weight * t["sharpe"]))
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert t["total"] == pytest.approx(total.item(), rel=1e-6)


def test_rank_scale_scales_only_ranking_terms():
    out, batch = _case()
    cfg = LossConfig()
    t1, terms = compute_loss(out, batch, cfg, QUANTILES, rank_scale=1.0)
    t3, _ = compute_loss(out, batch, cfg, QUANTILES, rank_scale=3.0)
    t0, _ = compute_loss(out, batch, cfg, QUANTILES, rank_scale=0.0)
    ranking = cfg.rankic_weight * terms["rankic"] + cfg.cs_ic_weight * terms["cs_ic"] + cfg.sharpe_weight * terms["sharpe"]
    assert t3.item() - t1.item() == pytest.approx(2.0 * ranking, rel=1e-4, abs=1e-6)
    assert t0.item() == pytest.approx(cfg.huber_weight * terms["huber"] + cfg.pinball_weight * terms["pinball"], rel=1e-5)


def test_horizon_weights_select_and_shift():
    out, batch = _case(n_h=2)
    cfg = LossConfig()
    equal, _ = compute_loss(out, batch, cfg, QUANTILES)
    first, terms_first = compute_loss(out, batch, cfg, QUANTILES, horizon_weights=(1.0, 0.0))
    second, _ = compute_loss(out, batch, cfg, QUANTILES, horizon_weights=(0.0, 2.0))
    # Weight on one horizon only == a model with that horizon alone.
    alone_out = SimpleNamespace(point=out.point[:, :1], quantiles=out.quantiles[:, :1])
    alone, terms_alone = compute_loss(alone_out, _batch(batch.day, batch.targets[:, :1]), cfg, QUANTILES)
    assert first.item() == pytest.approx(alone.item(), rel=1e-5)
    for name in TERM_NAMES:
        assert terms_first[name] == pytest.approx(terms_alone[name], rel=1e-5, abs=1e-7)
    assert equal.item() == pytest.approx((first.item() + second.item()) / 2, rel=1e-5)
    assert first.item() != pytest.approx(second.item(), rel=1e-3)
    # The config's horizon weights are used when no explicit ones are given.
    via_cfg, _ = compute_loss(out, batch, LossConfig(horizon_weights=(3.0, 0.0)), QUANTILES)
    assert via_cfg.item() == pytest.approx(first.item(), rel=1e-6)
    with pytest.raises(ValueError, match="horizon weights"):
        compute_loss(out, batch, cfg, QUANTILES, horizon_weights=(1.0,))


def test_terms_match_reference_computation():
    out, batch = _case(n_h=1)
    total, t = compute_loss(out, batch, LossConfig(), QUANTILES)
    p = out.point.detach().double().numpy()[:, 0]
    q = out.quantiles.detach().double().numpy()[:, 0, :]
    y = batch.targets.double().numpy()[:, 0]
    day = batch.day.numpy()
    hub, pin, ic, sharpe, n_rows = 0.0, 0.0, [], [], 0
    for d in np.unique(day):
        pd_, qd, yd = p[day == d], q[day == d], y[day == d]
        z = (yd - yd.mean()) / yd.std()
        e = np.abs(pd_ - z)
        hub += np.where(e < 1.0, 0.5 * e**2, e - 0.5).sum()
        err = z[:, None] - qd
        qs = np.array(QUANTILES)
        pin += np.maximum(qs * err, (qs - 1) * err).mean(axis=1).sum()
        n_rows += len(yd)
        ic.append(pearsonr(pd_, yd).statistic)
        w = (pd_ - pd_.mean()) / np.abs(pd_ - pd_.mean()).sum()
        sharpe.append((w * yd).sum() / yd.std())
    assert t["huber"] == pytest.approx(hub / n_rows, rel=1e-4)
    assert t["pinball"] == pytest.approx(pin / n_rows, rel=1e-4)
    assert t["cs_ic"] == pytest.approx(1 - np.mean(ic), abs=1e-5)
    assert t["sharpe"] == pytest.approx(-np.mean(sharpe), abs=1e-5)
    assert t["sharpe"] < 0 and t["cs_ic"] < 1  # predictions have skill


def test_target_normalization_affects_point_terms_only():
    out, batch = _case()
    _, z = compute_loss(out, batch, LossConfig(target_normalization="cs_zscore"), QUANTILES)
    _, raw = compute_loss(out, batch, LossConfig(target_normalization="none"), QUANTILES)
    assert z["huber"] != pytest.approx(raw["huber"], rel=1e-3)
    assert z["pinball"] != pytest.approx(raw["pinball"], rel=1e-3)
    for name in ("rankic", "cs_ic", "sharpe"):
        assert z[name] == pytest.approx(raw[name], rel=1e-6)


def test_rank_gauss_target_matches_reference():
    """cs_rank: the point loss's target is Phi^-1((rank - 0.5) / n) per date, NaN rows left out."""
    out, batch = _case(n_h=1)
    batch.targets[3, 0] = float("nan")
    batch.targets[5, 0] = batch.targets[7, 0]  # a tie on day 0 shares its average rank
    _, t = compute_loss(out, batch, LossConfig(target_normalization="cs_rank", huber_delta=0.5), QUANTILES)
    p = out.point.detach().double().numpy()[:, 0]
    y = batch.targets.double().numpy()[:, 0]
    day = batch.day.numpy()
    hub, n_rows = 0.0, 0
    for d in np.unique(day):
        ok = (day == d) & np.isfinite(y)
        g = norm.ppf((rankdata(y[ok]) - 0.5) / ok.sum())
        e = np.abs(p[ok] - g)
        hub += np.where(e < 0.5, 0.5 * e**2, 0.5 * (e - 0.25)).sum()
        n_rows += ok.sum()
    assert t["huber"] == pytest.approx(hub / n_rows, rel=1e-5)
    _, z = compute_loss(out, batch, LossConfig(target_normalization="cs_zscore", huber_delta=0.5), QUANTILES)
    assert t["huber"] != pytest.approx(z["huber"], rel=1e-3)
    for name in ("rankic", "cs_ic", "sharpe"):
        assert t[name] == pytest.approx(z[name], rel=1e-6)


def test_soft_spearman_approaches_scipy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, generator=g, dtype=torch.float64)
    y = x + torch.randn(200, generator=g, dtype=torch.float64)
    exact = spearmanr(x.numpy(), y.numpy()).statistic
    errors = [abs(soft_spearman(x, y, t).item() - exact) for t in (3.0, 0.01)]
    assert errors[1] < 0.02
    assert errors[1] < errors[0]
    # Soft ranks become the average ranks (minus 0.5), ties included.
    v = torch.tensor([0.3, -1.0, 2.0, 0.3, 5.0], dtype=torch.float64)
    np.testing.assert_allclose(soft_rank(v, 1e-4).numpy(), rankdata(v.numpy()) - 0.5, atol=1e-6)
    np.testing.assert_allclose(average_rank(v).numpy(), rankdata(v.numpy()))


def test_soft_rank_gradient_and_chunking(monkeypatch):
    x = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: soft_rank(a, 0.7), (x,))
    g = torch.randn(9, dtype=torch.float64)
    full = soft_rank(x, 0.7)
    (grad_full,) = torch.autograd.grad((full * g).sum(), x)
    monkeypatch.setattr(loss_mod, "SOFT_RANK_CHUNK_ELEMENTS", 20)  # 2 rows per chunk
    chunked = soft_rank(x, 0.7)
    (grad_chunked,) = torch.autograd.grad((chunked * g).sum(), x)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(grad_chunked, grad_full)


def test_perfect_order_gives_zero_ranking_losses():
    out, batch = _case(signal=0.0)
    perfect = SimpleNamespace(point=(batch.targets * 50).clone().requires_grad_(), quantiles=out.quantiles)
    _, t = compute_loss(perfect, batch, LossConfig(soft_rank_temperature=0.01), QUANTILES)
    assert t["rankic"] < 0.01
    assert t["cs_ic"] == pytest.approx(0.0, abs=1e-5)
    assert t["sharpe"] < 0


@pytest.mark.parametrize("term", TERM_NAMES)
def test_gradient_finite_and_nonzero_for_each_term(term):
    out, batch = _case()
    total, _ = compute_loss(out, batch, _only(term), QUANTILES)
    total.backward()
    grad = out.quantiles.grad if term == "pinball" else out.point.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("term", ["rankic", "cs_ic", "sharpe"])
def test_single_day_batch_has_useful_gradient(term):
    out, batch = _case(n_per_day=(80,))
    total, terms = compute_loss(out, batch, _only(term), QUANTILES)
    total.backward()
    assert math.isfinite(terms[term])
    assert torch.isfinite(out.point.grad).all() and out.point.grad.abs().sum() > 0


def test_nan_targets_are_ignored():
    out, batch = _case(n_h=2)
    targets = batch.targets.clone()
    drop = torch.zeros(targets.shape[0], dtype=torch.bool)
    drop[::4] = True
    targets[drop] = float("nan")
    total, terms = compute_loss(out, _batch(batch.day, targets), LossConfig(), QUANTILES)
    kept = ~drop
    sub_out = SimpleNamespace(point=out.point[kept], quantiles=out.quantiles[kept])
    ref_total, ref_terms = compute_loss(sub_out, _batch(batch.day[kept], batch.targets[kept]), LossConfig(), QUANTILES)
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)
    for name in TERM_NAMES:
        assert terms[name] == pytest.approx(ref_terms[name], rel=1e-5, abs=1e-7)
    total.backward()
    assert torch.isfinite(out.point.grad).all()
    assert (out.point.grad[drop] == 0).all()  # masked rows get no gradient at all
    # Per horizon: NaN only in horizon 0 leaves horizon 1's loss unchanged.
    targets = batch.targets.clone()
    targets[::3, 0] = float("nan")
    a, _ = compute_loss(out, _batch(batch.day, targets), LossConfig(), QUANTILES, horizon_weights=(0.0, 1.0))
    b, _ = compute_loss(out, batch, LossConfig(), QUANTILES, horizon_weights=(0.0, 1.0))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_constant_predictions_do_not_produce_nan():
    out, batch = _case()
    const = SimpleNamespace(point=torch.full_like(out.point, 0.3).requires_grad_(),
                            quantiles=torch.full_like(out.quantiles, 0.3).requires_grad_())
    total, terms = compute_loss(const, batch, LossConfig(), QUANTILES)
    assert terms["rankic"] == pytest.approx(1.0, abs=1e-6)
    assert terms["cs_ic"] == pytest.approx(1.0, abs=1e-6)
    assert terms["sharpe"] == pytest.approx(0.0, abs=1e-6)
    total.backward()
    assert all(math.isfinite(v) for v in terms.values())
    assert torch.isfinite(const.point.grad).all() and torch.isfinite(const.quantiles.grad).all()


def test_days_with_one_stock_or_all_nan_horizon_are_safe():
    day = torch.tensor([0, 1, 1, 1], dtype=torch.long)  # day 0 has a single stock
    targets = torch.tensor([[0.01, float("nan")], [0.02, float("nan")], [-0.01, float("nan")], [0.0, float("nan")]])
    out = SimpleNamespace(point=torch.randn(4, 2, requires_grad=True), quantiles=torch.randn(4, 2, 3))
    total, terms = compute_loss(out, _batch(day, targets), LossConfig(), QUANTILES)
    total.backward()
    assert math.isfinite(total.item()) and torch.isfinite(out.point.grad).all()


def test_correlations_are_per_date_not_pooled():
    # Within each day prediction and target agree perfectly, but the day with the higher mean
    # prediction has the lower mean target: pooled over both days the correlation is negative.
    base = torch.linspace(-1, 1, 20)
    targets = torch.cat([0.01 * base - 0.5, 0.01 * base + 0.5])[:, None]
    point = torch.cat([base + 5.0, base - 5.0])[:, None]
    out = SimpleNamespace(point=point, quantiles=point[..., None].repeat(1, 1, 3))
    per_day = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    _, t_days = compute_loss(out, _batch(per_day, targets), LossConfig(), QUANTILES)
    _, t_pool = compute_loss(out, _batch(torch.zeros(40, dtype=torch.long), targets), LossConfig(), QUANTILES)
    assert t_days["cs_ic"] == pytest.approx(0.0, abs=1e-5)
    assert t_pool["cs_ic"] > 1.5
    assert t_days["rankic"] < 0.1 and t_pool["rankic"] > 1.0


def test_shape_errors_are_clear():
    out, batch = _case()
    with pytest.raises(ValueError, match="quantiles"):
        compute_loss(out, batch, LossConfig(), (0.5,))


def _exposed_batch(seed=0):
    """Three days; feature 0 drives half of the target, feature 1 is noise; some targets NaN."""
    from atft_core.batching import DayBatch
    g = torch.Generator().manual_seed(seed)
    day = torch.cat([torch.full((n,), d, dtype=torch.long) for d, n in enumerate((80, 70, 60))])
    s = day.shape[0]
    feats = torch.randn(s, 2, generator=g)
    target = 0.02 * feats[:, :1] + 0.02 * torch.randn(s, 2, generator=g)   # [S, 2 horizons]
    target[::7, 1] = float("nan")
    batch = DayBatch.from_windows(x=feats[:, None, :], day=day, day_index=torch.arange(3), stock=torch.arange(s),
                                  targets=target, edge_index=torch.zeros(2, 0, dtype=torch.long),
                                  edge_attr=torch.zeros(0, 2))
    return batch, feats


def test_day_residualize_is_orthogonal_to_the_exposures_per_date_and_horizon():
    batch, feats = _exposed_batch()
    m = torch.isfinite(batch.targets)
    y = torch.where(m, batch.targets, torch.zeros_like(batch.targets))
    resid = loss_mod._day_residualize(y, m, feats, batch.day, 3)
    assert torch.all(resid[~m] == 0)
    for d in range(3):
        for h in range(2):
            rows = (batch.day == d) & m[:, h]
            design = torch.cat([torch.ones(int(rows.sum()), 1), feats[rows]], 1).double()
            expected = y[rows, h].double() - design @ torch.linalg.lstsq(design, y[rows, h].double()[:, None]).solution[:, 0]
            np.testing.assert_allclose(resid[rows, h].numpy(), expected.numpy(), atol=1e-6)
            assert torch.allclose(design.T @ resid[rows, h].double(), torch.zeros(3, dtype=torch.float64), atol=1e-5)  # ridge: lambda*n*beta


def test_neutralize_takes_the_named_exposure_out_of_every_term():
    """A prediction that is exactly the exposure scores well on the raw target and gets no
    credit once that exposure is neutralised; an empty index changes nothing."""
    batch, feats = _exposed_batch()
    bet = feats[:, :1].repeat(1, 2)
    out = SimpleNamespace(point=bet.clone().requires_grad_(), quantiles=bet[..., None].repeat(1, 1, 3))
    cfg = LossConfig()
    _, raw_terms = compute_loss(out, batch, cfg, QUANTILES)
    _, same = compute_loss(out, batch, cfg, QUANTILES, neutralize_index=())
    _, neutral = compute_loss(out, batch, cfg, QUANTILES, neutralize_index=(0,))
    assert same == raw_terms
    assert raw_terms["cs_ic"] < 0.6 and raw_terms["sharpe"] < -0.5        # the bet pays on raw targets
    assert neutral["cs_ic"] == pytest.approx(1.0, abs=1e-4)             # ... and is worth nothing after
    assert neutral["sharpe"] == pytest.approx(0.0, abs=1e-4)
    _, other = compute_loss(out, batch, cfg, QUANTILES, neutralize_index=(1,))
    assert other["cs_ic"] < 0.6                                           # noise feature: the bet still pays
