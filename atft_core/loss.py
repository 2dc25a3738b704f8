"""Training loss: Huber + pinball + RankIC + CS-IC + Sharpe, per date, weighted over horizons.

    total = huber_weight * huber + pinball_weight * pinball
          + rank_scale * (rankic_weight * rankic + cs_ic_weight * cs_ic + sharpe_weight * sharpe)

Every term is first computed per horizon and then averaged with the horizon weights
(normalised to sum 1). The cross-sectional terms only mean something within one trading day,
so they are computed per date (rows grouped by ``batch.day``) and averaged over the dates of
the batch:

- ``huber``: Huber(point, target_norm; delta) averaged over the valid rows.
- ``pinball``: quantile loss of each quantile head against target_norm, averaged over rows
  and quantiles.
- ``rankic`` = 1 - soft Spearman: Pearson correlation of a differentiable rank of the
  prediction (``sum_j sigmoid((z_i - z_j) / temperature)`` of the per-date standardised
  prediction z, so the temperature is scale-free) with the average ranks of the target.
- ``cs_ic`` = 1 - Pearson correlation of prediction and target.
- ``sharpe`` = minus the date's risk-adjusted return of a prediction-weighted portfolio:
  weights ``w = z / sum|z|`` (dollar neutral, unit gross), return ``R = sum(w * r)`` on the raw
  target, divided by the date's cross-sectional std of r, then averaged over dates.
  This one-date Sharpe is used for every batch size on purpose: a time-series mean / std over
  the one to eight dates of a batch would change the term's scale many times over between
  one day per step (safe mode) and eight (optimized mode), and blows up as the std of a few
  numbers approaches 0; this form is bounded (|R / std| <= sqrt(n)) and has a useful gradient
  with one date per batch.

target_norm is the per-date, per-horizon z-score of the target when
``loss.target_normalization == 'cs_zscore'``; with 'cs_rank' it is the date's rank-gauss
transform of the target (average rank r of n valid rows -> Phi^-1((r - 0.5) / n)), which keeps
the order but gives every date the same normal-shaped targets, so a few extreme returns
cannot dominate the point loss; with 'none' it is the raw target. The correlations are
invariant to it and the Sharpe term always uses raw returns. With ``loss.neutralize`` the
"target" of every term above, Sharpe included, is first replaced per date and horizon by its
least-squares residual on [1, the named input features on that day]: the model is then not
rewarded for a bet on those exposures (say beta or volatility) that the day happened to pay.
Targets that are NaN are left out of every term (per horizon). A (date, horizon) with fewer
than two valid rows adds nothing to the cross-sectional terms; a horizon with none at all
counts as correlation 0, return 0 and point loss 0, i.e. a constant without gradient.

Memory: the soft rank needs every pair of stocks of a date. It is computed in row chunks of
at most ``SOFT_RANK_CHUNK_ELEMENTS`` pairs, forward and backward (a custom autograd function
saves only the n inputs), so the extra memory is about 16 MB at any n, e.g. 4,000 stocks
(16M pairs) take four chunks instead of a 64 MB matrix kept per date and horizon for backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from atft_core.config import LossConfig

VAR_EPS = 1e-10
"""Added to variances before the square root: constant predictions give correlation 0 (not
NaN) and a finite gradient; negligible against prediction or return variances (>= 1e-6)."""
MIN_GROSS = 1.0
"""Floor on sum|z| of the portfolio weights. For any non-constant date sum|z| >= sqrt(n) >= 1.4,
so the floor binds only when all predictions are equal (then the weights are 0, not 0/0)."""
SOFT_RANK_CHUNK_ELEMENTS = 1 << 22
"""Pairs (rows x stocks) evaluated at once by the soft rank: bounds its memory, not its result."""
NEUTRALIZE_RIDGE = 1e-6
"""Ridge added to the per-date normal equations of `loss.neutralize`, relative to the row
count; far below the exposures' own variance (about 1 after the dataset's z-scoring)."""
TERM_NAMES = ("huber", "pinball", "rankic", "cs_ic", "sharpe")


# ---------------------------------------------------------------------------------------------
# Per-date statistics (rows grouped by day with index_add, all horizons at once)


def _day_mean(x: Tensor, m: Tensor, day: Tensor, n_days: int) -> tuple[Tensor, Tensor]:
    """Mean of x over the valid rows of each day, and the counts. Shapes: [S, H] -> [B, H] x2."""
    mf = m.to(x.dtype)
    counts = x.new_zeros(n_days, x.shape[1]).index_add(0, day, mf)
    sums = x.new_zeros(n_days, x.shape[1]).index_add(0, day, x * mf)
    return sums / counts.clamp_min(1.0), counts


def _day_standardize(x: Tensor, m: Tensor, day: Tensor, n_days: int) -> tuple[Tensor, Tensor]:
    """Per-(day, horizon) z-score over valid rows (ddof=0), 0 where invalid; and the day std.

    Shapes: x, m [S, H], day [S] -> z [S, H], std [B, H].
    """
    # Centre in float64 so that equal values give exactly 0, not float32 rounding noise that
    # the z-score would then blow up into a spurious ranking.
    mean, _ = _day_mean(x.double(), m, day, n_days)
    centered = ((x.double() - mean[day]) * m.double()).to(x.dtype)
    var, _ = _day_mean(centered * centered, m, day, n_days)
    std = torch.sqrt(var + VAR_EPS)
    return centered / std[day], std


def _day_rank_gauss(x: Tensor, m: Tensor, day: Tensor, n_days: int) -> Tensor:
    """Per-(day, horizon) rank-gauss of x over valid rows, 0 where invalid. Shapes: [S, H] -> [S, H].

    Average ranks r (ties share theirs) of the n valid rows become Phi^-1((r - 0.5) / n).
    """
    out = torch.zeros_like(x)
    for d in range(n_days):
        rows = (day == d).nonzero(as_tuple=True)[0]
        for h in range(x.shape[1]):
            sel = rows[m[rows, h]]
            if sel.numel():
                out[sel, h] = rank_gauss(x[sel, h].double()).to(x.dtype)
    return out


def _day_residualize(y: Tensor, m: Tensor, x: Tensor, day: Tensor, n_days: int) -> Tensor:
    """Per-(day, horizon) least-squares residual of y on [1, x] over the valid rows, 0 where invalid.

    Shapes: y, m [S, H], x [S, K], day [S] -> [S, H]. Solved in float64 with a tiny ridge
    (NEUTRALIZE_RIDGE x the day's row count), so a day with fewer rows than regressors, or a
    constant exposure, still gives a defined residual instead of a singular system.
    """
    design = torch.cat([x.new_ones(x.shape[0], 1), x], dim=1).double()          # [S, K+1]
    k1 = design.shape[1]
    mf = m.double()                                                               # [S, H]
    outer = design[:, :, None] * design[:, None, :]                              # [S, K+1, K+1]
    gram = design.new_zeros(n_days, y.shape[1], k1, k1).index_add(
        0, day, outer[:, None] * mf[:, :, None, None])                           # [B, H, K+1, K+1]
    moment = design.new_zeros(n_days, y.shape[1], k1).index_add(
        0, day, design[:, None, :] * (y.double() * mf)[:, :, None])              # [B, H, K+1]
    counts = gram[:, :, 0, 0].clamp_min(1.0)
    eye = torch.eye(k1, dtype=gram.dtype, device=gram.device)
    coef = torch.linalg.solve(gram + NEUTRALIZE_RIDGE * counts[..., None, None] * eye, moment[..., None])[..., 0]
    fitted = (design[:, None, :] * coef[day]).sum(-1)                            # [S, H]
    return ((y.double() - fitted) * mf).to(y.dtype)


def _over_days(values: Tensor, defined: Tensor, neutral: float) -> Tensor:
    """Average [B, H] over the days where defined -> [H]; `neutral` for a horizon with none."""
    d = defined.to(values.dtype)
    n = d.sum(0)
    mean = (values * d).sum(0) / n.clamp_min(1.0)
    return torch.where(n > 0, mean, torch.full_like(mean, neutral))


# ---------------------------------------------------------------------------------------------
# Soft rank and soft Spearman (one cross-section)


def _row_chunks(n: int) -> range:
    return range(0, n, max(1, SOFT_RANK_CHUNK_ELEMENTS // max(n, 1)))


class _SoftRank(torch.autograd.Function):
    """r_i = sum_j sigmoid((x_i - x_j) / T), chunked; backward recomputes instead of storing.

    With s'_ij = sigmoid'((x_i - x_j) / T), which is symmetric in i and j:
    d r_i / d x_i = sum_j s'_ij / T and d r_i / d x_k = -s'_ik / T (k != i), hence
    grad_k = (g_k * sum_j s'_kj - sum_j s'_kj g_j) / T.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, temperature: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.temperature = temperature
        n = x.shape[0]
        out = torch.empty_like(x)
        step = _row_chunks(n).step
        for start in _row_chunks(n):
            rows = x[start:start + step]
            out[start:start + step] = torch.sigmoid((rows[:, None] - x[None, :]) / temperature).sum(1)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        temperature = ctx.temperature
        n = x.shape[0]
        grad = torch.empty_like(x)
        step = _row_chunks(n).step
        for start in _row_chunks(n):
            s = torch.sigmoid((x[start:start + step, None] - x[None, :]) / temperature)
            ds = s * (1.0 - s)  # [c, n]
            grad[start:start + step] = (grad_out[start:start + step] * ds.sum(1) - ds @ grad_out) / temperature
        return grad, None


def soft_rank(x: Tensor, temperature: float) -> Tensor:
    """Differentiable ranks of a 1-D tensor (0.5 .. n-0.5; ties share the average).

    Shapes: x [n] -> [n]. As temperature -> 0 this tends to the average rank minus 0.5.
    """
    if x.ndim != 1:
        raise ValueError(f"soft_rank: expected a 1-D tensor, got shape {tuple(x.shape)}")
    return _SoftRank.apply(x, float(temperature))


def average_rank(y: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor with ties averaged (as scipy.stats.rankdata). Not differentiable."""
    ordered, _ = torch.sort(y)
    below = torch.searchsorted(ordered, y, right=False)
    upto = torch.searchsorted(ordered, y, right=True)
    return (below + upto + 1).to(y.dtype) / 2.0


def rank_gauss(y: Tensor) -> Tensor:
    """Phi^-1((average rank - 0.5) / n) of a 1-D tensor: its order, with normal-shaped values."""
    return torch.special.ndtri((average_rank(y) - 0.5) / y.numel())


def _pearson_1d(x: Tensor, y: Tensor) -> Tensor:
    xc, yc = x - x.mean(), y - y.mean()
    return (xc * yc).mean() / torch.sqrt(((xc * xc).mean() + VAR_EPS) * ((yc * yc).mean() + VAR_EPS))


def soft_spearman(pred: Tensor, target: Tensor, temperature: float) -> Tensor:
    """Differentiable Spearman correlation of one cross-section (pred standardised first).

    Shapes: pred [n], target [n] -> scalar.
    """
    z = (pred - pred.mean()) / torch.sqrt(pred.var(unbiased=False) + VAR_EPS)
    return _pearson_1d(soft_rank(z, temperature), average_rank(target.to(z.dtype)))


# ---------------------------------------------------------------------------------------------
# The terms, each [H]


def _point_losses(point: Tensor, quant: Tensor, target: Tensor, m: Tensor, cfg: LossConfig,
                  quantiles: Tensor) -> tuple[Tensor, Tensor]:
    """Huber and pinball per horizon over valid rows. Shapes: [S, H], [S, H, Q] -> [H], [H]."""
    mf = m.to(point.dtype)
    n = mf.sum(0).clamp_min(1.0)
    huber = torch.nn.functional.huber_loss(point, target, reduction="none", delta=cfg.huber_delta)
    err = target[..., None] - quant  # [S, H, Q]
    pinball = torch.maximum(quantiles * err, (quantiles - 1.0) * err).mean(-1)
    return (huber * mf).sum(0) / n, (pinball * mf).sum(0) / n


def _rank_term(z_pred: Tensor, raw: Tensor, m: Tensor, day: Tensor, n_days: int, temperature: float) -> Tensor:
    """1 - soft Spearman per horizon, averaged over days. Shapes: [S, H] -> [H]."""
    rows_of_day = [(day == d).nonzero(as_tuple=True)[0] for d in range(n_days)]
    per_h = []
    # Only the (horizon, day) loop is in Python; each step is one chunked pairwise op.
    for h in range(raw.shape[1]):
        corrs = []
        for rows in rows_of_day:
            sel = rows[m[rows, h]]
            if sel.numel() >= 2:
                corrs.append(_pearson_1d(soft_rank(z_pred[sel, h], temperature), average_rank(raw[sel, h])))
        per_h.append(1.0 - torch.stack(corrs).mean() if corrs else raw.new_tensor(1.0))
    return torch.stack(per_h)


def compute_loss(
    out: Any,
    batch: Any,
    loss_cfg: LossConfig,
    quantiles: tuple[float, ...],
    rank_scale: float = 1.0,
    horizon_weights: tuple[float, ...] | None = None,
    neutralize_index: tuple[int, ...] = (),
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (scalar tensor) and the unweighted term values (floats, plus ``total``).

    ``out.point`` [S, H], ``out.quantiles`` [S, H, Q]; ``batch.day`` [S] (0..B-1) and
    ``batch.targets`` [S, H] (NaN where unknown) are all this reads from the batch, and, with
    ``neutralize_index``, the rows' own-day features ``batch.seq[batch.seq_row, batch.seq_end]``.
    ``horizon_weights`` overrides ``loss_cfg.horizon_weights``; empty means equal weights.
    ``rank_scale`` multiplies the RankIC, CS-IC and Sharpe weights (per-phase schedule).
    ``neutralize_index``: feature columns (of ``batch.seq``) whose value on each row's own day
    the target is residualised on, per date and horizon, before every term (``loss.neutralize``).
    """
    point = out.point.float()
    quant = out.quantiles.float()
    target = batch.targets.to(device=point.device, dtype=point.dtype)
    day = batch.day.to(point.device).long()
    _check_shapes(point, quant, target, day, quantiles)
    n_days = int(day.max()) + 1 if day.numel() else 0
    hw = _horizon_weights(loss_cfg, horizon_weights, point.shape[1]).to(point)

    m = torch.isfinite(target)
    raw = torch.where(m, target, torch.zeros_like(target))
    if neutralize_index:
        exposures = batch.seq[batch.seq_row, batch.seq_end][:, list(neutralize_index)]
        raw = _day_residualize(raw, m, exposures.to(device=point.device, dtype=point.dtype), day, n_days)
    z_pred, _ = _day_standardize(point, m, day, n_days)
    z_raw, raw_std = _day_standardize(raw, m, day, n_days)
    target_norm = _point_target(loss_cfg.target_normalization, raw, z_raw, m, day, n_days)
    q = torch.tensor(quantiles, dtype=point.dtype, device=point.device)
    _, counts = _day_mean(raw, m, day, n_days)
    defined = counts >= 2  # [B, H]

    terms_h: dict[str, Tensor] = {}
    terms_h["huber"], terms_h["pinball"] = _point_losses(point, quant, target_norm, m, loss_cfg, q)
    # The pairwise soft rank is the costly term: skip its backward graph when it is weighted 0.
    with torch.set_grad_enabled(torch.is_grad_enabled() and rank_scale * loss_cfg.rankic_weight != 0):
        terms_h["rankic"] = _rank_term(z_pred, raw, m, day, n_days, loss_cfg.soft_rank_temperature)
    corr, _ = _day_mean(z_pred * z_raw, m, day, n_days)  # Pearson per (day, horizon)
    terms_h["cs_ic"] = _over_days(1.0 - corr, defined, 1.0)
    gross = point.new_zeros(n_days, point.shape[1]).index_add(0, day, z_pred.abs()).clamp_min(MIN_GROSS)
    ret = point.new_zeros(n_days, point.shape[1]).index_add(0, day, z_pred * raw) / gross  # [B, H]
    terms_h["sharpe"] = _over_days(-ret / raw_std, defined, 0.0)

    terms = {name: (value * hw).sum() for name, value in terms_h.items()}
    weights = {
        "huber": loss_cfg.huber_weight,
        "pinball": loss_cfg.pinball_weight,
        "rankic": rank_scale * loss_cfg.rankic_weight,
        "cs_ic": rank_scale * loss_cfg.cs_ic_weight,
        "sharpe": rank_scale * loss_cfg.sharpe_weight,
    }
    total = sum(weights[name] * terms[name] for name in TERM_NAMES)
    values = torch.stack([terms[name].detach() for name in TERM_NAMES] + [total.detach()]).tolist()  # one sync
    return total, dict(zip(TERM_NAMES + ("total",), values))


def _point_target(normalization: str, raw: Tensor, z_raw: Tensor, m: Tensor, day: Tensor, n_days: int) -> Tensor:
    """The target of the point and quantile losses (see the module docstring)."""
    if normalization == "cs_zscore":
        return z_raw
    if normalization == "cs_rank":
        return _day_rank_gauss(raw, m, day, n_days)
    return raw


def _horizon_weights(cfg: LossConfig, explicit: tuple[float, ...] | None, n_h: int) -> Tensor:
    weights = tuple(explicit) if explicit is not None else tuple(cfg.horizon_weights)
    if not weights:
        weights = (1.0,) * n_h
    if len(weights) != n_h:
        raise ValueError(f"compute_loss: {len(weights)} horizon weights for {n_h} horizons in the model output")
    w = torch.tensor(weights, dtype=torch.float64)
    if (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"compute_loss: horizon weights must be >= 0 with a positive sum, got {list(weights)}")
    return w / w.sum()


def _check_shapes(point: Tensor, quant: Tensor, target: Tensor, day: Tensor, quantiles: tuple[float, ...]) -> None:
    if point.ndim != 2 or target.shape != point.shape:
        raise ValueError(f"compute_loss: point {tuple(point.shape)} and targets {tuple(target.shape)} must both be [S, H]")
    if quant.shape != (*point.shape, len(quantiles)):
        raise ValueError(
            f"compute_loss: quantiles output {tuple(quant.shape)} does not match [S, H, Q] = "
            f"{(*point.shape, len(quantiles))} for quantiles {list(quantiles)}"
        )
    if day.shape != point.shape[:1]:
        raise ValueError(f"compute_loss: batch.day {tuple(day.shape)} must be [S] = [{point.shape[0]}]")
