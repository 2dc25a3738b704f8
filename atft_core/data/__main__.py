"""`python -m atft_core.data demo|build|check|fetch ...`: the data commands (see docs/data.md).

The only place of the data layer that reads the environment: the J-Quants API key for `fetch`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from atft_core.entry import run_cli

from .build import BuildParams, build_dataset, parse_horizons
from .demo import make_demo
from .errors import DataError
from .fetch import FetchSettings, fetch
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
    fetch = sub.add_parser("fetch", help="J-Quants API v2 -> the files build reads (incremental; docs/data.md)")
    fetch.add_argument("--from", dest="start", required=True, help="first date YYYY-MM-DD")
    fetch.add_argument("--to", dest="end", required=True, help="last date YYYY-MM-DD")
    fetch.add_argument("--out", required=True, help="folder for the files (parts already there are not fetched again)")
    fetch.add_argument("--codes", default="", help="only these issues, e.g. 72030,67580 (default: every listed issue)")
    fetch.add_argument("--api-url", default=None, help="API base URL (default: the client's, https://api.jquants.com/v2)")
    settings = FetchSettings()
    fetch.add_argument("--retries", type=int, default=settings.retries, help="retries of a rate-limited or failing request")
    fetch.add_argument("--backoff", type=float, default=settings.backoff_seconds, help="first retry wait in seconds, doubled after each")
    check = sub.add_parser("check", help="validate a dataset and print its summary")
    check.add_argument("path")
    check.add_argument("--min-stocks", type=int, default=defaults.min_stocks_per_day)
    return p


CONFIG_FILES = ("~/.jquants-api/jquants-api.toml", "jquants-api.toml")
"""Where jquants-api-client looks for its config (later wins; JQUANTS_API_CLIENT_CONFIG_FILE last)."""


def api_key() -> str:
    """The J-Quants API key as the official client finds it: JQUANTS_API_KEY, else `api_key`
    under [jquants-api-client] in its config files. Only this entry point reads them."""
    import tomllib

    if os.environ.get("JQUANTS_API_KEY"):
        return os.environ["JQUANTS_API_KEY"]
    key = ""
    for name in (*CONFIG_FILES, os.environ.get("JQUANTS_API_CLIENT_CONFIG_FILE", "")):
        path = Path(name).expanduser() if name else None
        if path and path.is_file():
            try:
                key = tomllib.loads(path.read_text()).get("jquants-api-client", {}).get("api_key", key)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise DataError(f"J-Quants config file {path} is not readable TOML ({type(exc).__name__})") from None
    return key


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
        elif args.command == "fetch":
            settings = FetchSettings(retries=args.retries, backoff_seconds=args.backoff)
            codes = tuple(c.strip() for c in args.codes.split(",") if c.strip())
            result = fetch(api_key(), args.start, args.end, args.out, codes=codes, base_url=args.api_url,
                           settings=settings, log=lambda m: print(m, file=sys.stderr, flush=True))
            print(result.to_text())
            return 0
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
    run_cli(main)
