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

Memory: the soft rank needs every pair of stocks of a date. It is computed for every (date,
horizon) of the batch at once, on a [dates x horizons, most stocks of a date] grid, in row
chunks of at most ``SOFT_RANK_CHUNK_ELEMENTS`` pairs, forward and backward (a custom autograd
function saves only the inputs), so the extra memory is about 16 MB at any size instead of a
pair matrix kept per date and horizon for backward.

No host reads: the per-date terms need each row's place in its date, which the batch brings
from the host (`DayBatch.day_slot`), so nothing here waits for the device (`loss_terms`;
`compute_loss` reads the term values back once, for callers that want floats).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

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


def _day_rank_gauss(x: Tensor, m: Tensor, layout: "DayLayout") -> Tensor:
    """Per-(day, horizon) rank-gauss of x over valid rows, 0 where invalid. Shapes: [S, H] -> [S, H].

    Average ranks r (ties share theirs) of the n valid rows become Phi^-1((r - 0.5) / n).
    """
    valid = _to_grid(m, layout, False)                                           # [H, B, W]
    ranks = _masked_average_rank(_to_grid(x.double(), layout, 0.0), valid)
    n = valid.sum(-1, keepdim=True).clamp_min(1)
    gauss = torch.where(valid, torch.special.ndtri((ranks - 0.5) / n), torch.zeros_like(ranks))
    return _from_grid(gauss, layout).to(x.dtype)


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
    # solve_ex without its error check: the ridge keeps every system regular, and the check
    # would read a status flag back to the host (a device sync) each step.
    coef = torch.linalg.solve_ex(gram + NEUTRALIZE_RIDGE * counts[..., None, None] * eye, moment[..., None],
                                 check_errors=False)[0][..., 0]
    fitted = (design[:, None, :] * coef[day]).sum(-1)                            # [S, H]
    return ((y.double() - fitted) * mf).to(y.dtype)


def _over_days(values: Tensor, defined: Tensor, neutral: float) -> Tensor:
    """Average [B, H] over the days where defined -> [H]; `neutral` for a horizon with none."""
    d = defined.to(values.dtype)
    n = d.sum(0)
    mean = (values * d).sum(0) / n.clamp_min(1.0)
    return torch.where(n > 0, mean, torch.full_like(mean, neutral))


# ---------------------------------------------------------------------------------------------
# The day grid: per-date terms for all days and horizons at once, without host reads


class DayLayout(NamedTuple):
    """Where each row sits in a [days, width] grid (width = the most rows of one day).

    Per-date terms are computed on the grid [H, B, W] (cells without a row are masked), so all
    days and horizons take one pass and nothing reads a day's row count back to the host.
    """

    n_days: int
    width: int
    cell: Tensor
    """[S] day * width + the row's slot within its day."""


def day_layout(batch: Any, day: Tensor) -> DayLayout:
    """The batch's grid layout: from its host-built `day_slot` / `day_width` (make_day_batch
    sets them), else derived from `day` (reads it back to the host: batches made by hand)."""
    slot = getattr(batch, "day_slot", None)
    if slot is not None:
        return DayLayout(batch.n_days, batch.day_width, day * batch.day_width + slot.to(day.device))
    day_host = day.cpu()
    n_days = max(int(getattr(batch, "n_days", 0) or 0), int(day_host.max()) + 1 if day_host.numel() else 0)
    counts = torch.bincount(day_host, minlength=n_days)
    order = torch.argsort(day_host, stable=True)
    slot = torch.empty_like(day_host)
    slot[order] = torch.arange(day_host.numel()) - (torch.cumsum(counts, 0) - counts)[day_host[order]]
    width = int(counts.max()) if n_days else 0
    return DayLayout(n_days, width, (day_host * width + slot).to(day.device))


def _to_grid(x: Tensor, layout: DayLayout, fill: float | bool) -> Tensor:
    """Rows [S, H] -> grid [H, B, W], `fill` in the cells without a row (differentiable)."""
    grid = x.new_full((layout.n_days * layout.width, x.shape[1]), fill)
    grid = grid.index_put((layout.cell,), x)
    return grid.view(layout.n_days, layout.width, x.shape[1]).permute(2, 0, 1)


def _from_grid(grid: Tensor, layout: DayLayout) -> Tensor:
    """Grid [H, B, W] -> rows [S, H]."""
    return grid.permute(1, 2, 0).reshape(layout.n_days * layout.width, grid.shape[0])[layout.cell]


def _masked_average_rank(y: Tensor, valid: Tensor) -> Tensor:
    """Average ranks 1..n of the valid entries along the last dim (ties averaged); cells that
    are not valid rank after every valid one and are meaningless. Shapes: [..., W] -> [..., W]."""
    y = torch.where(valid, y, torch.full_like(y, float("inf"))).contiguous()
    ordered, _ = torch.sort(y, dim=-1)
    below = torch.searchsorted(ordered, y, right=False)
    upto = torch.searchsorted(ordered, y, right=True)
    return (below + upto + 1).to(y.dtype) / 2.0


def _masked_pearson(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Pearson correlation over the entries with weight 1 along the last dim. [..., W] -> [...]."""
    n = w.sum(-1, keepdim=True).clamp_min(1.0)
    xc = (x - (x * w).sum(-1, keepdim=True) / n) * w
    yc = (y - (y * w).sum(-1, keepdim=True) / n) * w
    n = n[..., 0]
    cov = (xc * yc).sum(-1) / n
    return cov / torch.sqrt(((xc * xc).sum(-1) / n + VAR_EPS) * ((yc * yc).sum(-1) / n + VAR_EPS))


# ---------------------------------------------------------------------------------------------
# Soft rank and soft Spearman


def _row_chunks(n_rows: int, row_elements: int) -> range:
    """Row starts such that a chunk holds at most SOFT_RANK_CHUNK_ELEMENTS pairs."""
    return range(0, n_rows, max(1, SOFT_RANK_CHUNK_ELEMENTS // max(row_elements, 1)))


class _SoftRank(torch.autograd.Function):
    """r_gi = sum_j w_gj sigmoid((x_gi - x_gj) / T) for each group g (a day and horizon),
    chunked over i; backward recomputes instead of storing. w is 1 for a group's valid entries
    and 0 elsewhere, so an entry that is not valid never moves another's rank.

    With s'_ij = sigmoid'((x_i - x_j) / T), which is symmetric in i and j:
    d r_i / d x_i = sum_j w_j s'_ij / T and d r_i / d x_k = -w_k s'_ik / T (k != i), hence
    grad_k = (g_k * sum_j s'_kj w_j - w_k * sum_j s'_kj g_j) / T.
    Shapes: x, w [G, W] -> [G, W].
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, temperature: float) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.temperature = temperature
        out = torch.empty_like(x)
        chunks = _row_chunks(x.shape[1], x.shape[0] * x.shape[1])
        for start in chunks:
            rows = x[:, start:start + chunks.step, None]                                # [G, c, 1]
            pairs = torch.sigmoid((rows - x[:, None, :]) / temperature)                 # [G, c, W]
            out[:, start:start + chunks.step] = torch.matmul(pairs, w[..., None])[..., 0]
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        x, w = ctx.saved_tensors
        temperature = ctx.temperature
        grad = torch.empty_like(x)
        chunks = _row_chunks(x.shape[1], x.shape[0] * x.shape[1])
        both = torch.stack([w, grad_out], dim=-1)                                        # [G, W, 2]
        for start in chunks:
            part = slice(start, start + chunks.step)
            s = torch.sigmoid((x[:, part, None] - x[:, None, :]) / temperature)
            sums = torch.matmul(s * (1.0 - s), both)                                     # [G, c, 2]
            grad[:, part] = (grad_out[:, part] * sums[..., 0] - w[:, part] * sums[..., 1]) / temperature
        return grad, None, None


def soft_rank(x: Tensor, temperature: float) -> Tensor:
    """Differentiable ranks of a 1-D tensor (0.5 .. n-0.5; ties share the average).

    Shapes: x [n] -> [n]. As temperature -> 0 this tends to the average rank minus 0.5.
    """
    if x.ndim != 1:
        raise ValueError(f"soft_rank: expected a 1-D tensor, got shape {tuple(x.shape)}")
    return _SoftRank.apply(x[None], torch.ones_like(x)[None], float(temperature))[0]


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


def _rank_term(z_pred: Tensor, raw: Tensor, m: Tensor, layout: DayLayout, temperature: float) -> Tensor:
    """1 - soft Spearman per horizon, averaged over the days with >= 2 valid rows. [S, H] -> [H].

    Every (horizon, day) is one row of the grid, so the whole batch is one chunked pairwise op.
    """
    n_h = raw.shape[1]
    valid = _to_grid(m, layout, False).reshape(n_h * layout.n_days, layout.width)      # [G, W]
    w = valid.to(z_pred.dtype)
    soft = _SoftRank.apply(_to_grid(z_pred, layout, 0.0).reshape(valid.shape), w, float(temperature))
    ranks = _masked_average_rank(_to_grid(raw, layout, 0.0).reshape(valid.shape), valid)
    corr = _masked_pearson(soft, ranks.to(soft.dtype), w).view(n_h, layout.n_days)      # [H, B]
    defined = (w.sum(-1) >= 2).view(n_h, layout.n_days)
    return _over_days((1.0 - corr).T, defined.T, 1.0)


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
    Reading the terms back costs one host-device sync; the trainer uses `loss_terms`, which
    leaves them on the device.
    """
    total, terms = loss_terms(out, batch, loss_cfg, quantiles, rank_scale, horizon_weights, neutralize_index)
    return total, dict(zip(TERM_NAMES + ("total",), terms.tolist()))


def loss_terms(
    out: Any,
    batch: Any,
    loss_cfg: LossConfig,
    quantiles: tuple[float, ...],
    rank_scale: float = 1.0,
    horizon_weights: tuple[float, ...] | None = None,
    neutralize_index: tuple[int, ...] = (),
    share: "LossShare | None" = None,
) -> tuple[Tensor, Tensor]:
    """`compute_loss` without reading anything back to the host: (total, terms [6]) where
    terms holds TERM_NAMES then the total, detached. Nothing in here waits for the device.

    ``share`` (data-parallel training, atft_core.distributed): this process's part of a step
    whose days are split over several processes; each term is weighted so that the parts add
    up to the loss of the whole step (see `LossShare`).
    """
    point = out.point.float()
    quant = out.quantiles.float()
    target = batch.targets.to(device=point.device, dtype=point.dtype)
    day = batch.day.to(point.device).long()
    _check_shapes(point, quant, target, day, quantiles)
    layout = day_layout(batch, day)
    n_days = layout.n_days
    hw = _constant(_horizon_weights(loss_cfg, horizon_weights, point.shape[1]), point.device, point.dtype)

    m = torch.isfinite(target)
    raw = torch.where(m, target, torch.zeros_like(target))
    if neutralize_index:
        exposures = batch.seq[batch.seq_row, batch.seq_end][:, list(neutralize_index)]
        raw = _day_residualize(raw, m, exposures.to(device=point.device, dtype=point.dtype), day, n_days)
    z_pred, _ = _day_standardize(point, m, day, n_days)
    z_raw, raw_std = _day_standardize(raw, m, day, n_days)
    target_norm = _point_target(loss_cfg.target_normalization, raw, z_raw, m, layout)
    q = _constant(tuple(quantiles), point.device, point.dtype)
    _, counts = _day_mean(raw, m, day, n_days)
    defined = counts >= 2  # [B, H]

    terms_h: dict[str, Tensor] = {}
    terms_h["huber"], terms_h["pinball"] = _point_losses(point, quant, target_norm, m, loss_cfg, q)
    # The pairwise soft rank is the costly term: skip its backward graph when it is weighted 0.
    with torch.set_grad_enabled(torch.is_grad_enabled() and rank_scale * loss_cfg.rankic_weight != 0):
        terms_h["rankic"] = _rank_term(z_pred, raw, m, layout, loss_cfg.soft_rank_temperature)
    corr, _ = _day_mean(z_pred * z_raw, m, day, n_days)  # Pearson per (day, horizon)
    terms_h["cs_ic"] = _over_days(1.0 - corr, defined, 1.0)
    gross = point.new_zeros(n_days, point.shape[1]).index_add(0, day, z_pred.abs()).clamp_min(MIN_GROSS)
    ret = point.new_zeros(n_days, point.shape[1]).index_add(0, day, z_pred * raw) / gross  # [B, H]
    terms_h["sharpe"] = _over_days(-ret / raw_std, defined, 0.0)
    if share is not None:
        terms_h = {name: value * share.weight(name).to(value) for name, value in terms_h.items()}

    terms = {name: (value * hw).sum() for name, value in terms_h.items()}
    weights = {
        "huber": loss_cfg.huber_weight,
        "pinball": loss_cfg.pinball_weight,
        "rankic": rank_scale * loss_cfg.rankic_weight,
        "cs_ic": rank_scale * loss_cfg.cs_ic_weight,
        "sharpe": rank_scale * loss_cfg.sharpe_weight,
    }
    total = sum(weights[name] * terms[name] for name in TERM_NAMES)
    return total, torch.stack([terms[name].detach() for name in TERM_NAMES] + [total.detach()])


class LossShare(NamedTuple):
    """One process's share of a step's loss when the step's days are split over processes.

    Huber and pinball are means over a horizon's valid rows, the ranking terms means over its
    days with >= 2 valid rows; a process computes them over its own rows and days, so its term
    is weighted by its share of the step's rows (`rows` [H]) or days (`days` [H]). The
    weighted terms of all processes add up to the term of the whole step (a horizon that no
    process has any of gets 1 / processes each, so its neutral value adds up unchanged).
    """

    rows: Tensor
    days: Tensor

    def weight(self, term: str) -> Tensor:
        return self.rows if term in ("huber", "pinball") else self.days


def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """A small constant tensor on `device`, made once: a fresh one each step would be a
    host-to-device copy, which waits for the device."""
    values = tuple(float(v) for v in values)
    if torch.compiler.is_compiling():   # a constant of the compiled graph (dynamo skips the cache)
        return torch.tensor(values, dtype=dtype, device=device)
    return _cached_constant(values, torch.device(device), dtype)


@functools.lru_cache(maxsize=64)
def _cached_constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).to(device=device, dtype=dtype)


def _point_target(normalization: str, raw: Tensor, z_raw: Tensor, m: Tensor, layout: DayLayout) -> Tensor:
    """The target of the point and quantile losses (see the module docstring)."""
    if normalization == "cs_zscore":
        return z_raw
    if normalization == "cs_rank":
        return _day_rank_gauss(raw, m, layout)
    return raw


def _horizon_weights(cfg: LossConfig, explicit: tuple[float, ...] | None, n_h: int) -> tuple[float, ...]:
    """The horizon weights, normalised to sum 1 (plain floats: checked without a tensor)."""
    weights = tuple(explicit) if explicit is not None else tuple(cfg.horizon_weights)
    if not weights:
        weights = (1.0,) * n_h
    if len(weights) != n_h:
        raise ValueError(f"compute_loss: {len(weights)} horizon weights for {n_h} horizons in the model output")
    total = math.fsum(weights)
    if any(w < 0 for w in weights) or not total > 0:
        raise ValueError(f"compute_loss: horizon weights must be >= 0 with a positive sum, got {list(weights)}")
    return tuple(w / total for w in weights)


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
