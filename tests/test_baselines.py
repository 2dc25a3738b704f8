"""Baselines: sign chosen on training days only, ridge recovers planted weights, state round-trip."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atft_core import metrics
from atft_core.baselines import Baseline, FactorBaseline, RidgeBaseline, baseline_from_state, fit_baseline
from atft_core.config import RunConfig

FEATURES = ("feat_ret_1d", "feat_ret_5d", "feat_ret_20d", "feat_vol_20", "feat_other")
HORIZONS = (1, 5)


def _panel(features: np.ndarray, targets: np.ndarray, valid: np.ndarray, names=FEATURES):
    """A real Panel when atft_core.data.panel exists, else an object with the same fields."""
    d, n, _ = features.shape
    fields = dict(
        dates=np.arange(d).astype("datetime64[D]"), codes=[f"{1000 + i}0" for i in range(n)],
        feature_names=tuple(names), features=torch.tensor(features, dtype=torch.float32),
        valid=torch.tensor(valid), targets=torch.tensor(targets, dtype=torch.float32),
        returns=torch.zeros(d, n), sectors=torch.full((n,), -1, dtype=torch.long),
        horizons=HORIZONS, fingerprint="test",
    )
    try:
        from atft_core.data.panel import Panel
        return Panel(**fields)
    except ImportError:  # pragma: no cover - panel.py is written by another helper
        return SimpleNamespace(**fields)


def _cfg(kind: str, **extra) -> RunConfig:
    return RunConfig().replace(**{"model.kind": kind, "data.horizons": HORIZONS, "data.min_stocks_per_day": 5, **extra})


def _regime_panel(seed=0, n_days=60, n=40):
    """First half of the days: 1-day reversal (target = -ret_1d + noise); second half: a
    stronger momentum (target = +2 ret_1d), so all days together would choose the other sign."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_days, n, len(FEATURES)))
    ret = feats[..., 0]
    slope = np.where(np.arange(n_days) < n_days // 2, -1.0, 2.0)[:, None]
    target = slope * ret * 0.01 + rng.normal(0, 0.01, (n_days, n))
    targets = np.stack([target, target * 2], axis=2)
    valid = rng.random((n_days, n)) > 0.05
    targets[~valid] = np.nan
    feats[~valid] = 0.0
    return _panel(feats, targets, valid)


def test_reversal_sign_is_chosen_on_training_days_only():
    panel = _regime_panel()
    train, future = np.arange(30), np.arange(30, 60)
    fitted = fit_baseline(_cfg("reversal_1d"), panel, train)
    assert isinstance(fitted, FactorBaseline)
    assert fitted.sign == -1.0 and not fitted.describe()["flipped_on_train"]  # score = -ret_1d
    assert fitted.train_rank_ic > 0.3
    # Fitting on the future would have flipped it: the training choice is what the model keeps.
    cheat = fit_baseline(_cfg("reversal_1d"), panel, future)
    assert cheat.sign == 1.0 and cheat.describe()["flipped_on_train"]
    pred = fitted.predict(panel, future)
    assert pred.shape == (30, 40, 2)
    valid = panel.valid[future].numpy()
    assert np.isnan(pred[~valid]).all() and np.isfinite(pred[valid]).all()
    rank_ic = metrics.summarize(pred[..., 0], panel.targets[future][..., 0].numpy(), valid)["rank_ic"]
    assert rank_ic < -0.3  # the regime changed out of sample, and the baseline shows it honestly
    np.testing.assert_allclose(pred[..., 0][valid], -panel.features[future][..., 0].numpy()[valid], rtol=1e-6)


def test_momentum_flips_when_training_days_show_reversal():
    panel = _regime_panel()
    # momentum_20d reads feat_ret_20d; give it the reversal relation on the training days.
    feats = panel.features.clone()
    feats[..., 2] = feats[..., 0]
    panel = _panel(feats.numpy(), panel.targets.numpy(), panel.valid.numpy())
    fitted = fit_baseline(_cfg("momentum_20d"), panel, np.arange(30))
    assert fitted.feature == "feat_ret_20d" and fitted.default_sign == 1.0 and fitted.sign == -1.0


@pytest.mark.parametrize("kind,feature", [("reversal_5d", "feat_ret_5d"), ("low_vol", "feat_vol_20")])
def test_factor_feature_lookup(kind, feature):
    fitted = fit_baseline(_cfg(kind), _regime_panel(), np.arange(30))
    assert fitted.feature == feature


@pytest.mark.parametrize("sign, expected", [(1, 1.0), (-1, -1.0), (0, -1.0)])
def test_any_feature_as_a_factor_with_a_given_or_a_trained_sign(sign, expected):
    """model.kind='factor': the score is model.factor_sign x model.factor, kept as given even when
    training disagrees (1 here: the training days reward minus feat_other); 0 chooses on training."""
    panel = _regime_panel()
    feats = panel.features.clone()
    feats[..., 4] = feats[..., 0]           # feat_other carries the training days' reversal relation
    panel = _panel(feats.numpy(), panel.targets.numpy(), panel.valid.numpy())
    fitted = fit_baseline(_cfg("factor", **{"model.factor": "feat_other", "model.factor_sign": sign}), panel, np.arange(30))
    assert (fitted.kind, fitted.feature, fitted.sign) == ("factor", "feat_other", expected)
    assert fitted.describe()["flipped_on_train"] == (sign == 0)
    pred = fitted.predict(panel, np.arange(30, 60))
    valid = panel.valid[30:60].numpy()
    np.testing.assert_allclose(pred[..., 1][valid], expected * feats[30:60, :, 4].numpy()[valid], rtol=1e-6)
    assert baseline_from_state(fitted.state_dict()) == fitted


def test_missing_feature_error_names_it():
    panel = _regime_panel()
    panel = _panel(panel.features.numpy()[..., 1:], panel.targets.numpy(), panel.valid.numpy(), names=FEATURES[1:])
    with pytest.raises(ValueError, match="feat_ret_1d"):
        fit_baseline(_cfg("reversal_1d"), panel, np.arange(30))


def test_ridge_recovers_planted_weights():
    rng = np.random.default_rng(1)
    n_days, n = 40, 200
    feats = rng.normal(size=(n_days, n, len(FEATURES)))
    w1 = np.array([0.5, -0.3, 0.0, 0.2, 0.1])
    w5 = np.array([-0.1, 0.0, 0.4, 0.0, -0.2])
    t1 = feats @ w1 + 0.05 * rng.normal(size=(n_days, n))
    t5 = feats @ w5 + 0.05 * rng.normal(size=(n_days, n))
    targets = np.stack([t1, t5], axis=2) * 0.02  # return scale; z-scored per date inside the fit
    valid = np.ones((n_days, n), bool)
    valid[:, :10] = False  # invalid rows carry garbage and must be ignored
    feats[:, :10] = 0.0
    targets[:, :10] = 5.0
    targets[3, 20:30, 1] = np.nan
    panel = _panel(feats, targets, valid)
    fitted = fit_baseline(_cfg("ridge", **{"model.ridge_alpha": 1e-3}), panel, np.arange(n_days))
    assert isinstance(fitted, RidgeBaseline)
    w = fitted.weights.numpy()
    for h, planted in enumerate((w1, w5)):
        # the per-date z-score rescales the target, so weights match up to one positive factor
        scale = (w[:, h] @ planted) / (planted @ planted)
        np.testing.assert_allclose(w[:, h], scale * planted, atol=0.02 * scale)
        assert scale > 0
    assert fitted.n_rows == (n_days * (n - 10), n_days * (n - 10) - 10)
    pred = fitted.predict(panel, np.arange(5))
    assert pred.shape == (5, n, 2) and np.isnan(pred[:, :10]).all()


@pytest.mark.parametrize("normalization", ["cs_zscore", "cs_rank", "none"])
def test_ridge_fits_the_target_normalization_of_the_config(normalization):
    """The ridge regresses on the loss's per-date target (z-score, rank-gauss or raw): the weights
    equal a numpy reference fit on that target, and the setting is kept in the state."""
    from scipy.special import ndtri
    from scipy.stats import rankdata
    panel = _regime_panel(seed=3)
    days, alpha = np.arange(30), 10.0
    fitted = fit_baseline(_cfg("ridge", **{"model.ridge_alpha": alpha, "loss.target_normalization": normalization}),
                          panel, days)
    x, y, ok = panel.features.double().numpy(), panel.targets.double().numpy()[..., 0], panel.valid.numpy()
    xs, ys = [], []
    for d in days:
        v = y[d, ok[d]]
        if normalization == "cs_zscore":
            v = (v - v.mean()) / v.std()
        elif normalization == "cs_rank":
            v = ndtri((rankdata(v) - 0.5) / v.size)
        xs.append(x[d, ok[d]])
        ys.append(v)
    a, b = np.concatenate(xs), np.concatenate(ys)
    reference = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    np.testing.assert_allclose(fitted.weights[:, 0].numpy(), reference, rtol=1e-4, atol=1e-8)
    state = fitted.state_dict()
    assert state["target_normalization"] == normalization == fitted.describe()["target_normalization"]
    assert Baseline.from_state(state).target_normalization == normalization


def test_ridge_alpha_shrinks_weights():
    panel = _regime_panel()
    small = fit_baseline(_cfg("ridge", **{"model.ridge_alpha": 0.0}), panel, np.arange(30))
    large = fit_baseline(_cfg("ridge", **{"model.ridge_alpha": 1e5}), panel, np.arange(30))
    assert large.weights.norm() < 0.2 * small.weights.norm()


@pytest.mark.parametrize("kind", ["reversal_1d", "ridge"])
def test_state_round_trip_with_weights_only(kind, tmp_path):
    panel = _regime_panel()
    fitted = fit_baseline(_cfg(kind), panel, np.arange(30))
    path = tmp_path / "best.pt"
    torch.save({"baseline": fitted.state_dict(), "config": _cfg(kind).to_dict()}, path)
    state = torch.load(path, weights_only=True)["baseline"]
    restored = baseline_from_state(state)
    assert type(Baseline.from_state(state)) is type(fitted)
    assert type(restored) is type(fitted)
    assert restored.describe() == fitted.describe()
    np.testing.assert_array_equal(restored.predict(panel, np.arange(30, 40)), fitted.predict(panel, np.arange(30, 40)))


def test_training_days_below_min_stocks_are_skipped():
    panel = _regime_panel()
    valid = panel.valid.numpy().copy()
    valid[:10, 3:] = False  # 3 stocks only on the first 10 days (< min_stocks_per_day = 5)
    panel = _panel(panel.features.numpy(), panel.targets.numpy(), valid)
    fitted = fit_baseline(_cfg("reversal_1d"), panel, np.arange(30))
    assert fitted.train_days == 20
    with pytest.raises(ValueError, match="min_stocks_per_day"):
        fit_baseline(_cfg("reversal_1d"), panel, np.arange(10))


def test_deep_model_kind_is_rejected():
    with pytest.raises(ValueError, match="not a baseline"):
        fit_baseline(_cfg("atft_gat_fan"), _regime_panel(), np.arange(30))
