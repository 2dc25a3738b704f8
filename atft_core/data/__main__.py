"""`python -m atft_core.data demo|build|check ...`: the data commands (see docs/data.md)."""

from __future__ import annotations

import argparse
import sys

from .build import BuildParams, build_dataset, parse_horizons
from .demo import make_demo
from .errors import DataError
from .validate import validate_dataset


class _Parser(argparse.ArgumentParser):
    """argparse with the data layer's error form: one line `error: ...`, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m atft_core.data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="synthetic market with planted structure -> raw files + dataset")
    demo.add_argument("--out", required=True, help="dataset PATH.parquet (raw files go to PATH_raw/)")
    demo.add_argument("--stocks", type=int, default=300)
    demo.add_argument("--days", type=int, default=750)
    demo.add_argument("--seed", type=int, default=0)
    build = sub.add_parser("build", help="J-Quants quotes + listed info (+ index) -> model-ready parquet")
    build.add_argument("--quotes", required=True, help="daily_quotes parquet or csv")
    build.add_argument("--listed-info", required=True, help="listed_info csv (Code, Sector33Code, ...)")
    build.add_argument("--index", default=None, help="TOPIX quotes (Date, Close); without it an equal-weighted market")
    build.add_argument("--statements", default=None,
                       help="J-Quants statements parquet or csv: adds the fin_* features (docs/data.md)")
    build.add_argument("--out", required=True)
    build.add_argument("--start", default="", help="first output date YYYY-MM-DD (earlier data is history)")
    build.add_argument("--end", default="", help="last date used at all YYYY-MM-DD")
    defaults = BuildParams()
    build.add_argument("--horizons", default=",".join(map(str, defaults.horizons)), help="e.g. 1,5,10,20")
    build.add_argument("--clip", type=float, default=defaults.clip)
    build.add_argument("--min-stocks", type=int, default=defaults.min_stocks_per_day)
    check = sub.add_parser("check", help="validate a dataset and print its summary")
    check.add_argument("path")
    check.add_argument("--min-stocks", type=int, default=defaults.min_stocks_per_day)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one data command; a DataError is printed as one clear line with exit status 2."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    log = lambda m: print(m, flush=True)  # noqa: E731
    try:
        if args.command == "demo":
            summary = make_demo(args.out, n_stocks=args.stocks, n_days=args.days, seed=args.seed, log=log)
        elif args.command == "build":
            params = BuildParams(horizons=parse_horizons(args.horizons), start=args.start, end=args.end, clip=args.clip,
                                 min_stocks_per_day=args.min_stocks)
            summary = build_dataset(args.quotes, args.listed_info, args.out, index=args.index, params=params, log=log,
                                    statements=args.statements)
        else:
            summary = validate_dataset(args.path, min_stocks_per_day=args.min_stocks)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a non-numeric --horizons
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
