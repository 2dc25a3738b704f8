"""Where is the 1-day signal? Single features and linear fits, judged on validation only.

    python bench/feature_signal.py --dataset runs/quality/dataset.parquet

Reads a built dataset with the quality report's splits (train 2016-05-01..2022-12-31,
validation 2023; the test year is never loaded into any statistic) and prints, for the first
horizon's target (1 day):
1. each feature's mean daily RankIC on validation, oriented as a reversal (minus the feature),
   with its RankICIR and its mean RankIC in every training year (is the sign stable?);
2. a ridge regression on all features fitted on the training days (all, and the last
   --recent-days), with the target per date z-scored, z-scored and clipped at +-3, or
   rank-gauss (the point-loss targets of `loss.target_normalization`): RankIC on the training
   days it was fitted on and on validation.
Every statistic is per date, then averaged (atft_core.metrics.daily_rank_ic).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core import metrics  # noqa: E402
from atft_core.config import RunConfig  # noqa: E402
from atft_core.data.panel import load_panel  # noqa: E402
from atft_core.data.splits import make_splits  # noqa: E402

CLIP = 3.0
"""The 'zclip' target: per-date z-score clipped to +-CLIP."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="model-ready parquet (python -m atft_core.data build)")
    ap.add_argument("--start", default="2016-05-01")
    ap.add_argument("--train-end", default="2022-12-31")
    ap.add_argument("--val-end", default="2023-12-31")
    ap.add_argument("--recent-days", type=int, default=400, help="the quality report's cut of the deep rows")
    ap.add_argument("--ridge-alpha", type=float, default=1e4)
    return ap.parse_args(argv)


def rank_ic(score: np.ndarray, target: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Mean daily RankIC and RankICIR over the given days (NaN when no day has a ranking, e.g.
    a feature equal across stocks). Shapes: [D, N] each."""
    daily = metrics.daily_rank_ic(score, target, valid)
    daily = daily[np.isfinite(daily)]
    if daily.size < 2:
        return float("nan"), float("nan")
    return float(daily.mean()), float(daily.mean() / daily.std())


def normalised_target(y: np.ndarray, valid: np.ndarray, kind: str) -> np.ndarray:
    """Per-date z-score / clipped z-score / rank-gauss of y over the valid stocks (0 elsewhere)."""
    out = np.zeros_like(y)
    for d in range(y.shape[0]):
        v = y[d, valid[d]]
        if v.size < 2:
            continue
        if kind == "rank":
            out[d, valid[d]] = ndtri((rankdata(v) - 0.5) / v.size)
        else:
            z = (v - v.mean()) / (v.std() + 1e-12)
            out[d, valid[d]] = np.clip(z, -CLIP, CLIP) if kind == "zclip" else z
    return out


def ridge_scores(x: np.ndarray, y: np.ndarray, valid: np.ndarray, days: np.ndarray, alpha: float) -> np.ndarray:
    """Fit on `days` (valid rows), score every day. Shapes: x [D, N, F], y / valid [D, N]."""
    rows = x[days][valid[days]].astype(np.float64)
    w = np.linalg.solve(rows.T @ rows + alpha * np.eye(x.shape[2]), rows.T @ y[days][valid[days]])
    return x.astype(np.float64) @ w


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    cfg = RunConfig().replace(**{"data.path": args.dataset, "data.start": args.start,
                                 "data.train_end": args.train_end, "data.val_end": args.val_end})
    panel = load_panel(cfg.data)
    splits = make_splits(panel.dates, cfg.data)
    x = panel.features.numpy()
    target = panel.targets[..., 0].numpy()
    valid = panel.valid.numpy() & np.isfinite(target)
    y = np.where(valid, target, 0.0)
    train, val = splits.train, splits.val
    print(f"dataset {args.dataset}: {splits.describe()}; target {panel.horizons[0]}-day")

    years = sorted({str(panel.dates[d])[:4] for d in train})
    by_year = {yr: np.array([d for d in train if str(panel.dates[d]).startswith(yr)]) for yr in years}
    print(f"\n{'feature (minus)':<24} {'val RankIC':>10} {'val ICIR':>8}  train RankIC by year {' '.join(years)}")
    ranked = []
    for f, name in enumerate(panel.feature_names):
        score = -x[..., f]
        m, ir = rank_ic(score[val], y[val], valid[val])
        yearly = [rank_ic(score[d], y[d], valid[d])[0] for d in by_year.values()]
        ranked.append((m, f"{name:<24} {m:10.4f} {ir:8.3f}  " + " ".join(f"{v:+.3f}" for v in yearly)))
    # Features equal across stocks on a date (market features) rank nothing: listed last.
    for _, line in sorted(ranked, key=lambda r: -r[0] if np.isfinite(r[0]) else np.inf):
        print(line)

    print(f"\nridge on all {x.shape[2]} features (alpha {args.ridge_alpha:g}): RankIC on the fit days / on validation")
    for label, days in (("all training days", train), (f"last {args.recent_days} training days", train[-args.recent_days:])):
        for kind in ("z", "zclip", "rank"):
            score = ridge_scores(x, normalised_target(y, valid, kind), valid, days, args.ridge_alpha)
            fit, _ = rank_ic(score[days], y[days], valid[days])
            m, ir = rank_ic(score[val], y[val], valid[val])
            print(f"  {label:<26} target {kind:<6} fit {fit:.4f}   validation {m:.4f} (RankICIR {ir:.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
