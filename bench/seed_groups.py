"""Groups of seeds, their ensembles and two factors, on the splits of any window, with paired t.

    python bench/seed_groups.py --dataset runs/quality/dataset.parquet runs/w2/default-s* runs/w2/lr3e3-s*
    python bench/seed_groups.py --splits val,test ...    # test too: only for windows whose test
                                                        # segment is not the report's test year

Runs are grouped by their seed group (run.json's ``group_name``, from `runs launch --seeds`)
or else by folder name without its ``-s<seed>`` suffix. For every run, then every
group's ensemble (`atft_core.runs.ensemble.combine_predictions`), prints the mean daily RankIC (1d)
and its standard error on each split, the paired t against minus ``feat_ret_1d`` (=
reversal_1d) on the same rows, and the run's validation RankIC per epoch. The two factors
(minus ret_1d and minus close_loc, the best single input of the quality report's headroom
table) are scored on the first run's rows. By default only validation is read, so that the
quality report's test year is never looked at by accident.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atft_core.evaluation import daily_rank_ic_frame, load_predictions  # noqa: E402
from atft_core.metrics import paired_t  # noqa: E402
from atft_core.run_files import RunFiles, read_json  # noqa: E402
from atft_core.runs.ensemble import combine_predictions  # noqa: E402

REFERENCE = "feat_ret_1d"
FACTORS = ("feat_ret_1d", "feat_close_loc")
HORIZON = 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run folders, named <group>-s<seed>")
    ap.add_argument("--dataset", required=True, help="the runs' model-ready parquet (for the factors)")
    ap.add_argument("--splits", default="val", help="comma-separated: val, test")
    return ap.parse_args(argv)


def factor_frame(frame: pl.DataFrame, dataset: Path, feature: str) -> pl.DataFrame:
    """Minus `feature` as the prediction, on `frame`'s rows and targets."""
    values = pl.read_parquet(dataset, columns=["Date", "Code", feature])
    rows = frame.select("Date", "Code", "split", f"target_{HORIZON}d").join(values, on=["Date", "Code"], how="left")
    return rows.with_columns((-pl.col(feature)).alias(f"pred_{HORIZON}d"))


def line(label: str, frame: pl.DataFrame, reference: pl.DataFrame, splits: list[str]) -> str:
    parts = [f"{label:30s}"]
    for split in splits:
        daily = daily_rank_ic_frame(frame, split, HORIZON)
        x = daily["rank_ic"].to_numpy()
        both = daily.join(daily_rank_ic_frame(reference, split, HORIZON), on="Date", suffix="_ref")
        t, _ = paired_t(both["rank_ic"].to_list(), both["rank_ic_ref"].to_list())
        parts.append(f"{split} {x.mean():+.4f} ± {x.std(ddof=1) / np.sqrt(len(x)):.4f} "
                     f"(t vs -ret_1d {'n/a' if t is None else f'{t:+.2f}'})")
    return "  ".join(parts)


def epochs(run: Path) -> list[float]:
    rows = [json.loads(line) for line in RunFiles(run).metrics.read_text().splitlines() if line.strip()]
    return [round(r["value"], 4) for r in rows if r["name"] == "val/rank_ic" and r["phase"] >= 0 and r["value"] is not None]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    groups: dict[str, list[Path]] = {}
    for run in map(Path, args.runs):
        group = (read_json(RunFiles(run).run_info) or {}).get("group_name")   # a seed group from the launcher
        groups.setdefault(group or re.sub(r"-s\d+$", "", run.name), []).append(run)
    first = load_predictions(RunFiles(Path(args.runs[0])).predictions)
    reference = factor_frame(first, Path(args.dataset), REFERENCE)
    for feature in FACTORS:
        print(line(f"-{feature} (factor)", factor_frame(first, Path(args.dataset), feature), reference, splits))
    for name, runs in groups.items():
        frames = [load_predictions(RunFiles(run).predictions) for run in runs]
        rows_ref = factor_frame(frames[0], Path(args.dataset), REFERENCE)   # a group's own rows
        for run, frame in zip(runs, frames):
            print(line(run.name, frame, rows_ref, splits), " epochs", epochs(run))
        if len(frames) > 1:
            print(line(f"{name}, ensemble of {len(frames)}", combine_predictions(frames, [HORIZON]), rows_ref, splits))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
