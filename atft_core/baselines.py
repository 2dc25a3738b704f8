"""Simple baselines that go through the same data, splits, metrics and run folder as the model.

- Single factors (``model.kind`` = ``reversal_1d``, ``reversal_5d``, ``momentum_20d``,
  ``low_vol``): the score is one feature of the panel with a sign. Each factor has a
  conventional orientation (reversal = minus the past return, low volatility = minus the
  volatility); the sign is then checked on the *training days only*: if the oriented factor's
  mean daily RankIC against the first horizon's target is negative there, it is flipped.
  Validation and test days never influence the choice.
- Any input feature (``model.kind = 'factor'``, ``model.factor`` = the feat_* column): the score
  is ``model.factor_sign`` x the feature, as given for a sign of 1 or -1; a sign of 0 is chosen
  on the training days as above (the sign with a positive mean daily RankIC).
- Ridge (``model.kind = 'ridge'``): one linear weight vector per horizon on all features of the
  day, fitted in closed form in float64 on the training days' valid rows,
  ``w = (X'X + ridge_alpha I)^-1 X'y`` (alpha on the sum of squares, as scikit-learn's Ridge).
  y is the target normalised per date as ``loss.target_normalization`` says, as for the deep
  model's point loss: z-score ('cs_zscore', the default), rank-gauss ('cs_rank') or raw ('none').
  No intercept: features are cross-sectionally normalised, so an intercept would shift every
  stock of a date alike and could not change any ranking.

Every baseline predicts ``[days, stocks, horizons]`` with NaN where a stock is not valid, and
round-trips through ``state_dict()`` / ``Baseline.from_state`` (plain tensors and primitives, so
checkpoints load with ``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from atft_core import metrics
from atft_core.config import RunConfig
from atft_core.loss import rank_gauss

FACTORS: dict[str, tuple[tuple[str, ...], float]] = {
    "reversal_1d": (("feat_ret_1d",), -1.0),
    "reversal_5d": (("feat_ret_5d",), -1.0),
    "momentum_20d": (("feat_ret_20d",), 1.0),
    "low_vol": (("feat_vol_20", "feat_vol_20d"), -1.0),
}
"""kind -> (feature names to look for, first found wins; conventional orientation)."""
RIDGE_KIND = "ridge"
FACTOR_KIND = "factor"
"""Any feature as a factor (model.factor, model.factor_sign)."""
DAY_CHUNK = 64
"""Days gathered at once when accumulating the ridge normal equations (bounds memory only)."""
STATE_VERSION = 1


class Baseline:
    """A fitted baseline: ``predict``, ``state_dict``, ``describe``; rebuild with ``from_state``."""

    kind: str

    def predict(self, panel: Any, day_indices: np.ndarray) -> np.ndarray:
        """Scores for the given panel days. Shapes: -> [len(day_indices), N, H], NaN where invalid."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and primitives, safe for ``torch.load(weights_only=True)``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was fitted, for the log and the run's config (JSON-serialisable)."""
        raise NotImplementedError

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Baseline":
        """Rebuild a baseline from ``state_dict()`` output."""
        kind = state.get("kind")
        if kind in FACTORS or kind == FACTOR_KIND:
            return FactorBaseline(
                kind=kind, feature=state["feature"], sign=float(state["sign"]),
                default_sign=float(state["default_sign"]), train_rank_ic=state["train_rank_ic"],
                train_days=int(state["train_days"]),
            )
        if kind == RIDGE_KIND:
            return RidgeBaseline(
                feature_names=tuple(state["feature_names"]), weights=state["weights"].double(),
                alpha=float(state["alpha"]), n_rows=tuple(int(n) for n in state["n_rows"]),
                # checkpoints written before the setting reached the ridge used z-scores
                target_normalization=str(state.get("target_normalization", "cs_zscore")),
            )
        raise ValueError(f"Baseline.from_state: unknown baseline kind {kind!r}; "
                         f"expected one of {sorted([*FACTORS, RIDGE_KIND, FACTOR_KIND])}")


# ---------------------------------------------------------------------------------------------
# Panel access


def _feature_index(panel: Any, names: tuple[str, ...], kind: str) -> tuple[int, str]:
    available = list(panel.feature_names)
    for name in names:
        if name in available:
            return available.index(name), name
    raise ValueError(
        f"baseline {kind!r} needs feature {' or '.join(names)}, which the panel does not have "
        f"({len(available)} features loaded: {', '.join(available[:12])}{' ...' if len(available) > 12 else ''}); "
        "include it in data.features or use a dataset that has it"
    )


def _days(panel: Any, day_indices: np.ndarray) -> torch.Tensor:
    days = torch.as_tensor(np.asarray(day_indices, dtype=np.int64).reshape(-1), device=panel.valid.device)
    n_days = panel.valid.shape[0]
    if days.numel() and (int(days.min()) < 0 or int(days.max()) >= n_days):
        raise IndexError(f"baseline: day indices must be in 0..{n_days - 1}")
    return days


def _usable_days(panel: Any, train_days: np.ndarray, min_stocks: int) -> np.ndarray:
    """Training days with at least `min_stocks` valid stocks (as the trainer skips thinner days)."""
    days = _days(panel, train_days)
    counts = panel.valid[days].sum(1).cpu().numpy()
    return days.cpu().numpy()[counts >= min_stocks]


def _with_nan(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores [B, N, H] with NaN where the stock is invalid (valid [B, N])."""
    return np.where(valid[..., None], scores, np.nan)


# ---------------------------------------------------------------------------------------------
# Single factors


@dataclass
class FactorBaseline(Baseline):
    """score = sign * feature, the same for every horizon."""

    kind: str
    feature: str
    sign: float
    """Multiplier applied to the feature: conventional orientation x training-day check."""
    default_sign: float
    train_rank_ic: float | None
    """Mean daily RankIC of the conventionally oriented factor on the training days (horizon 1)."""
    train_days: int

    def predict(self, panel: Any, day_indices: np.ndarray) -> np.ndarray:
        idx, _ = _feature_index(panel, (self.feature,), self.kind)
        days = _days(panel, day_indices)
        feat = panel.features[days][..., idx].double().cpu().numpy()          # [B, N]
        valid = panel.valid[days].cpu().numpy()
        n_h = panel.targets.shape[2]
        scores = np.repeat((self.sign * feat)[..., None], n_h, axis=2)       # [B, N, H]
        return _with_nan(scores, valid)

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": STATE_VERSION, "kind": self.kind, "feature": self.feature, "sign": self.sign,
                "default_sign": self.default_sign, "train_rank_ic": self.train_rank_ic,
                "train_days": self.train_days}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "feature": self.feature, "sign": self.sign,
                "flipped_on_train": self.sign != self.default_sign, "train_rank_ic": self.train_rank_ic,
                "train_days": self.train_days}


def fit_factor(kind: str, panel: Any, train_days: np.ndarray, names: tuple[str, ...] | None = None,
               sign: float | None = None) -> FactorBaseline:
    """Orient a single factor on the training days (RankIC vs the first horizon's target).

    A named kind (FACTORS) brings its features and conventional sign, flipped when the oriented
    factor's training RankIC is negative. `names` and `sign` (model.factor, model.factor_sign)
    give them instead: a sign of 1 or -1 is kept as given, 0 takes the positive one on training.
    """
    default_names, default_sign = FACTORS.get(kind, ((), 1.0))
    names = names or default_names
    fixed = sign is not None and sign != 0
    default_sign = float(sign) if fixed else default_sign
    idx, feature = _feature_index(panel, names, kind)
    days = _days(panel, train_days)
    score = default_sign * panel.features[days][..., idx].double().cpu().numpy()   # [D, N]
    target = panel.targets[days][..., 0].double().cpu().numpy()
    valid = panel.valid[days].cpu().numpy()
    rank_ic = metrics.summarize(score, target, valid)["rank_ic"] if len(score) else None
    flip = not fixed and rank_ic is not None and rank_ic < 0
    return FactorBaseline(kind=kind, feature=feature, sign=-default_sign if flip else default_sign,
                          default_sign=default_sign, train_rank_ic=rank_ic, train_days=len(score))


# ---------------------------------------------------------------------------------------------
# Ridge


@dataclass
class RidgeBaseline(Baseline):
    """score_h = features @ weights[:, h]."""

    feature_names: tuple[str, ...]
    weights: torch.Tensor
    """[F, H] float64."""
    alpha: float
    n_rows: tuple[int, ...]
    """Training rows per horizon."""
    target_normalization: str = "cs_zscore"
    """How the targets were normalised per date for the fit (loss.target_normalization)."""

    kind: str = RIDGE_KIND

    def predict(self, panel: Any, day_indices: np.ndarray) -> np.ndarray:
        if tuple(panel.feature_names) != self.feature_names:
            raise ValueError(
                f"ridge baseline was fitted on {len(self.feature_names)} features that differ from the "
                f"panel's {len(panel.feature_names)}; load the panel with the same data.features"
            )
        days = _days(panel, day_indices)
        x = panel.features[days].double().cpu()                                # [B, N, F]
        scores = (x @ self.weights).numpy()                                     # [B, N, H]
        return _with_nan(scores, panel.valid[days].cpu().numpy())

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": STATE_VERSION, "kind": RIDGE_KIND, "feature_names": list(self.feature_names),
                "weights": self.weights.clone(), "alpha": self.alpha, "n_rows": list(self.n_rows),
                "target_normalization": self.target_normalization}

    def describe(self) -> dict[str, Any]:
        first = self.weights[:, 0]
        top = torch.argsort(first.abs(), descending=True)[:5].tolist()
        return {"kind": RIDGE_KIND, "alpha": self.alpha, "target_normalization": self.target_normalization,
                "n_features": len(self.feature_names), "n_rows": list(self.n_rows),
                "top_weights_first_horizon": {self.feature_names[i]: round(float(first[i]), 6) for i in top}}


def _cs_zscore(target: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Per (day, horizon) z-score over `ok` cells, 0 elsewhere. Shapes: [D, N, H] -> [D, N, H]."""
    okf = ok.double()
    t = torch.where(ok, target, torch.zeros_like(target))
    n = okf.sum(1, keepdim=True).clamp_min(1.0)
    mean = t.sum(1, keepdim=True) / n
    centered = (t - mean) * okf
    std = torch.sqrt((centered * centered).sum(1, keepdim=True) / n)
    return torch.where(std > 0, centered / torch.where(std > 0, std, torch.ones_like(std)), torch.zeros_like(std))


def _cs_rank_gauss(target: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Per (day, horizon) Phi^-1((average rank - 0.5) / n) over `ok` cells, 0 elsewhere. [D, N, H]."""
    out = torch.zeros_like(target)
    for d in range(target.shape[0]):
        for h in range(target.shape[2]):
            sel = ok[d, :, h]
            if sel.any():
                out[d, sel, h] = rank_gauss(target[d, sel, h])
    return out


def _ridge_target(target: torch.Tensor, ok: torch.Tensor, normalization: str) -> torch.Tensor:
    """The regression target per `loss.target_normalization`, 0 outside `ok`. Shapes: [D, N, H]."""
    if normalization == "cs_zscore":
        return _cs_zscore(target, ok)
    if normalization == "cs_rank":
        return _cs_rank_gauss(target, ok)
    if normalization == "none":
        return torch.where(ok, target, torch.zeros_like(target))
    raise ValueError(f"ridge baseline: unknown target normalization {normalization!r}")


def fit_ridge(panel: Any, train_days: np.ndarray, alpha: float, target_normalization: str = "cs_zscore") -> RidgeBaseline:
    """Closed-form ridge per horizon on the training days' valid rows (float64)."""
    n_f, n_h = panel.features.shape[2], panel.targets.shape[2]
    xtx = torch.zeros(n_h, n_f, n_f, dtype=torch.float64)
    xty = torch.zeros(n_h, n_f, dtype=torch.float64)
    rows = torch.zeros(n_h, dtype=torch.float64)
    days = _days(panel, train_days)
    for start in range(0, days.numel(), DAY_CHUNK):
        chunk = days[start:start + DAY_CHUNK]
        x = panel.features[chunk].double().cpu()                               # [c, N, F]
        target = panel.targets[chunk].double().cpu()                           # [c, N, H]
        ok = panel.valid[chunk].cpu()[..., None] & torch.isfinite(target) & torch.isfinite(x).all(-1, keepdim=True)
        okf = ok.double()
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
        xtx += torch.einsum("dnf,dnh,dng->hfg", x, okf, x)
        xty += torch.einsum("dnf,dnh->hf", x, _ridge_target(target, ok, target_normalization) * okf)
        rows += okf.sum((0, 1))
    if (rows == 0).any():
        raise ValueError(f"ridge baseline: no training rows with a known target for horizon(s) "
                         f"{[i for i in range(n_h) if rows[i] == 0]} (index into data.horizons)")
    eye = torch.eye(n_f, dtype=torch.float64)
    try:
        weights = torch.linalg.solve(xtx + alpha * eye, xty[..., None])[..., 0].T    # [F, H]
    except RuntimeError as exc:  # singular X'X with alpha = 0
        raise ValueError(f"ridge baseline: the normal equations are singular ({exc}); set model.ridge_alpha > 0") from exc
    return RidgeBaseline(feature_names=tuple(panel.feature_names), weights=weights, alpha=float(alpha),
                         n_rows=tuple(int(n) for n in rows.tolist()), target_normalization=target_normalization)


# ---------------------------------------------------------------------------------------------


def fit_baseline(cfg: RunConfig, panel: Any, train_days: np.ndarray) -> Baseline:
    """Fit the baseline named by ``cfg.model.kind`` on ``train_days`` (panel day indices) only.

    Training days with fewer than ``cfg.data.min_stocks_per_day`` valid stocks are skipped, as
    the trainer skips them.
    """
    kind = cfg.model.kind
    days = _usable_days(panel, train_days, cfg.data.min_stocks_per_day)
    if len(days) == 0:
        raise ValueError(f"baseline {kind!r}: none of the {len(np.asarray(train_days))} training days has "
                         f">= data.min_stocks_per_day={cfg.data.min_stocks_per_day} valid stocks")
    if kind in FACTORS:
        return fit_factor(kind, panel, days)
    if kind == FACTOR_KIND:
        return fit_factor(kind, panel, days, (cfg.model.factor,), cfg.model.factor_sign)
    if kind == RIDGE_KIND:
        return fit_ridge(panel, days, cfg.model.ridge_alpha, cfg.loss.target_normalization)
    raise ValueError(f"fit_baseline: model.kind={kind!r} is not a baseline; baselines are "
                     f"{', '.join([*FACTORS, FACTOR_KIND, RIDGE_KIND])}")


def baseline_from_state(state: dict[str, Any]) -> Baseline:
    """Rebuild a fitted baseline from a checkpoint's ``state["baseline"]`` (= Baseline.from_state)."""
    return Baseline.from_state(state)
