"""Where is the signal? Single features and linear fits, judged on validation only.

    python bench/feature_signal.py --dataset runs/quality/dataset.parquet
    python bench/feature_signal.py --dataset runs/quality/dataset.parquet --horizon 20 \
        --start 2017-08-21 --train-end 2020-12-31 --val-end 2021-12-31 --end 2022-12-31 --next-year

Reads a built dataset with the quality report's splits (train 2016-05-01..2022-12-31,
validation 2023; the test year is never loaded into any statistic) or another window's, and
prints, for one horizon's target (--horizon, 1 day by default):
1. each feature's mean daily RankIC on validation, oriented as a reversal (minus the feature),
   with its RankICIR and its mean RankIC in every training year (is the sign stable?);
2. a ridge regression on all features fitted on the training days (all, and the last
   --recent-days), with the target per date z-scored, z-scored and clipped at +-3, or
   rank-gauss (the point-loss targets of `loss.target_normalization`): RankIC on the training
   days it was fitted on and on validation.
3. with --next-year, the same for the segment after validation: only for windows that end
   before the report's test year (--end), which the option checks.
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

REPORT_TEST_START = "2024-01-01"
"""The quality report's test year starts here; --next-year refuses a window that reaches it."""
CLIP = 3.0
"""The 'zclip' target: per-date z-score clipped to +-CLIP."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="model-ready parquet (python -m atft_core.data build)")
    ap.add_argument("--start", default="2016-05-01")
    ap.add_argument("--train-end", default="2022-12-31")
    ap.add_argument("--val-end", default="2023-12-31")
    ap.add_argument("--end", default="", help="last date loaded (e.g. 2022-12-31 for a window before the test year)")
    ap.add_argument("--horizon", type=int, default=1, help="target horizon in days (one of the dataset's)")
    ap.add_argument("--next-year", action="store_true",
                    help=f"also score the segment after validation (needs --end before {REPORT_TEST_START})")
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
    if args.next_year and not (args.end and args.end < REPORT_TEST_START):
        raise SystemExit(f"--next-year needs --end before {REPORT_TEST_START}: the report's test year is never read")
    cfg = RunConfig().replace(**{"data.path": args.dataset, "data.start": args.start, "data.end": args.end,
                                 "data.train_end": args.train_end, "data.val_end": args.val_end})
    panel = load_panel(cfg.data)  # every horizon: the purge (longest horizon) and the days are the same for each
    if args.horizon not in panel.horizons:
        raise SystemExit(f"--horizon {args.horizon}: the dataset's horizons are {list(panel.horizons)}")
    splits = make_splits(panel.dates, cfg.data)
    x = panel.features.numpy()
    target = panel.targets[..., panel.horizons.index(args.horizon)].numpy()
    valid = panel.valid.numpy() & np.isfinite(target)
    y = np.where(valid, target, 0.0)
    train = splits.train
    scored = {"validation": splits.val} | ({"next year": splits.test} if args.next_year else {})
    print(f"dataset {args.dataset}: {splits.describe()}; target {args.horizon}-day")

    years = sorted({str(panel.dates[d])[:4] for d in train})
    by_year = {yr: np.array([d for d in train if str(panel.dates[d]).startswith(yr)]) for yr in years}
    heads = " ".join(f"{k[:4] + ' RankIC':>11}" for k in scored)
    print(f"\n{'feature (minus)':<24} {heads} {'val ICIR':>8}  train RankIC by year {' '.join(years)}")
    ranked = []
    for f, name in enumerate(panel.feature_names):
        score = -x[..., f]
        means = {k: rank_ic(score[d], y[d], valid[d]) for k, d in scored.items()}
        yearly = [rank_ic(score[d], y[d], valid[d])[0] for d in by_year.values()]
        m, ir = means["validation"]
        cells = " ".join(f"{v[0]:11.4f}" for v in means.values())
        ranked.append((m, f"{name:<24} {cells} {ir:8.3f}  " + " ".join(f"{v:+.3f}" for v in yearly)))
    # Features equal across stocks on a date (market features) rank nothing: listed last.
    for _, line in sorted(ranked, key=lambda r: -r[0] if np.isfinite(r[0]) else np.inf):
        print(line)

    print(f"\nridge on all {x.shape[2]} features (alpha {args.ridge_alpha:g}): RankIC on the fit days / "
          + " / ".join(f"on {k}" for k in scored))
    for label, days in (("all training days", train), (f"last {args.recent_days} training days", train[-args.recent_days:])):
        for kind in ("z", "zclip", "rank"):
            score = ridge_scores(x, normalised_target(y, valid, kind), valid, days, args.ridge_alpha)
            fit, _ = rank_ic(score[days], y[days], valid[days])
            outside = "   ".join(f"{k} {rank_ic(score[d], y[d], valid[d])[0]:.4f}" for k, d in scored.items())
            print(f"  {label:<26} target {kind:<6} fit {fit:.4f}   {outside}")


if __name__ == "__main__":
    main(sys.argv[1:])
