"""Checking a model-ready dataset and summarising it: `validate_dataset(path)`.

Fast by design: the schema and the `atft` metadata come from the parquet footer; column
statistics come from one lazy polars scan; only Code and Date are read in full.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .errors import DataError
from .inputs import check_file, implausible_dates, is_parquet
from .schema import (CODE, DATE, FEATURE_PREFIX, RAW_RET, SECTOR, TARGET_PREFIX, parse_target_horizon,
                     read_metadata, require_columns, suggest, target_name)

CROSS_SECTION_FLOOR = 2
"""Below two stocks a date has no cross-section at all."""
_N_EXAMPLES = 5


@dataclass
class DatasetSummary:
    """What a dataset holds; the app and the pre-flight checklist show `to_text()`."""

    path: str
    n_stocks: int
    n_days: int
    start: str
    end: str
    n_features: int
    feature_names: tuple[str, ...]
    horizons: tuple[int, ...]
    sector_coverage: float
    """Share of stocks with a Sector33Code."""
    missing_share: dict[str, float]
    """Per feature: share of rows that were missing before normalisation (stored as 0)."""
    missing_share_overall: float
    stocks_per_day_min: int
    stocks_per_day_median: float
    n_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""
    has_sector: bool = True
    calendar: dict = field(default_factory=dict)
    """From the build: market days in the quotes and why some are not in the dataset."""
    statements: dict = field(default_factory=dict)
    """With statement features: the build's `statements` metadata plus the coverage found here
    (`stocks_known`, `days_known`, `stock_days_known` share, `first_known` date)."""

    def to_text(self) -> str:
        """A human summary, one fact per line."""
        worst = sorted(self.missing_share.items(), key=lambda kv: -kv[1])[:5]
        lines = [
            f"dataset   {self.path}",
            f"stocks    {self.n_stocks}   days {self.n_days}   rows {self.n_rows}",
            f"dates     {self.start} .. {self.end}",
            f"features  {self.n_features}   horizons {list(self.horizons)}",
            f"sectors   {'present' if self.has_sector else 'absent'}, coverage {self.sector_coverage:.1%} of stocks",
            f"stocks/day min {self.stocks_per_day_min}   median {self.stocks_per_day_median:g}",
            f"missing   {self.missing_share_overall:.2%} of feature values overall (filled with 0); most: "
            + ", ".join(f"{k} {v:.1%}" for k, v in worst),
            f"fingerprint {self.fingerprint[:16]}",
        ]
        lines[3:3] = self._calendar_lines()
        lines[-1:-1] = self._statement_lines()
        lines += [f"WARNING   {w}" for w in self.warnings]
        return "\n".join(lines)

    def _calendar_lines(self) -> list[str]:
        """Why the dataset has fewer days than the quotes (e.g. 2,181 of 2,191)."""
        cal = self.calendar
        if not cal:
            return []
        no_trade, thin = cal.get("no_trade_days", []), cal.get("thin_days", [])
        parts = [f"{len(no_trade)} with no stock traded" + (f" ({', '.join(no_trade[:3])}{', ...' if len(no_trade) > 3 else ''})" if no_trade else ""),
                 f"{cal.get('before_start', 0)} before --start",
                 f"{len(thin)} with too few traded stocks" + (f" ({', '.join(thin[:3])})" if thin else "")]
        return [f"calendar  {self.n_days} of the {cal['quote_days']} market days in the quotes; not in the dataset: "
                + ", ".join(parts)]

    def _statement_lines(self) -> list[str]:
        st = self.statements
        if not st:
            return ["statements none (build with --statements to add the fin_* features)"]
        return [
            f"statements filing known for {st['stocks_known']} of {self.n_stocks} stocks on {st['days_known']} of "
            f"{self.n_days} days ({st['stock_days_known']:.1%} of stock-days), from {st['first_known']} "
            f"(yields on {st.get('price_basis', '?')} prices)",
            f"          before {st['first_known']} every stock has flag_fin_missing = 1 and fin_* = 0; "
            "to train only where filings are known, set data.start on or after it",
        ]



def select_features(available: Sequence[str], wanted: Sequence[str], expected_count: int, where: str) -> tuple[str, ...]:
    """The feature columns a run loads: `wanted` (data.features) or else every one `available`.

    A wanted name that is not available, or a count other than `expected_count` (when not 0),
    is a DataError naming `where`; the loader and the pre-flight checklist both call this, so
    a run that would load the wrong features fails before launch, not after.
    """
    names = tuple(wanted) or tuple(available)
    if missing := [f for f in names if f not in available]:
        raise DataError(f"data.features names {len(missing)} feature(s) not in {where}: {missing[:10]}")
    if expected_count and len(names) != expected_count:
        raise DataError(f"loaded {len(names)} features but data.expected_feature_count={expected_count} ({where})")
    return names


def _open(path: Path) -> tuple[pl.Schema, dict]:
    check_file(path, "dataset")
    if path.stat().st_size < 12 or not is_parquet(path):
        raise DataError(f"dataset {path} is not a parquet file (no PAR1 magic bytes); build one with "
                        "`python -m atft_core.data build` or `demo`")
    meta = read_metadata(path)
    return pl.read_parquet_schema(path), meta


def _check_columns(path: Path, schema: pl.Schema, meta: dict) -> tuple[list[str], list[int], list[str]]:
    cols = list(schema.names())
    require_columns(cols, (CODE, DATE, RAW_RET), f"dataset {path}")
    warnings = []
    if SECTOR not in cols:
        warnings.append(f"no {SECTOR} column{suggest(SECTOR, cols)}: the graph will use correlations only")
    expected = {CODE: (pl.String,), DATE: (pl.Date,), RAW_RET: (pl.Float64, pl.Float32)}
    if SECTOR in cols:
        expected[SECTOR] = (pl.String,)
    feats = [c for c in cols if c.startswith(FEATURE_PREFIX)]
    targets = [c for c in cols if c.startswith(TARGET_PREFIX)]
    expected |= {c: (pl.Float32, pl.Float64) for c in feats + targets}
    for c, ok in expected.items():
        if schema[c] not in ok:
            raise DataError(f"dataset {path}: column {c!r} has dtype {schema[c]}, expected {' or '.join(map(str, ok))}")
    names = list(meta["feature_names"])
    absent = [n for n in names if n not in feats]
    if absent:
        hint = "".join(suggest(absent[0], feats))
        raise DataError(f"dataset {path}: has {len(feats)} feature columns but its metadata lists {len(names)}; "
                        f"missing {absent[:_N_EXAMPLES]}{hint}")
    horizons = [int(h) for h in meta["horizons"]]
    lacking = [target_name(h) for h in horizons if target_name(h) not in targets]
    extra = [t for t in targets if parse_target_horizon(t) not in horizons]
    if lacking or extra:
        raise DataError(f"dataset {path}: targets do not match metadata horizons {horizons}: "
                        f"missing {lacking}, unexpected {extra}")
    return names, horizons, warnings


def _check_values(path: Path, feats: list[str], others: list[str]) -> tuple[int, list[str]]:
    """Row count and warnings; DataError on infinite values or a feature that is all NaN or constant."""
    lf = pl.scan_parquet(path)
    stats = lf.select(
        pl.len().alias("__n"),
        *[pl.col(c).is_infinite().sum().alias(f"inf|{c}") for c in feats + others],
        *[(pl.col(c).is_nan() | pl.col(c).is_null()).sum().alias(f"nan|{c}") for c in feats + others],
        *[pl.col(c).fill_nan(None).min().alias(f"min|{c}") for c in feats],
        *[pl.col(c).fill_nan(None).max().alias(f"max|{c}") for c in feats],
    ).collect().row(0, named=True)
    n = stats["__n"]
    if n == 0:
        raise DataError(f"dataset {path} has no rows")
    for c in feats + others:
        if stats[f"inf|{c}"]:
            rows = lf.with_row_index("row").filter(pl.col(c).is_infinite()).select("row").head(_N_EXAMPLES).collect()
            raise DataError(f"dataset {path}: column {c!r} has {stats[f'inf|{c}']} infinite value(s), rows {rows['row'].to_list()}")
    for c in feats:
        if stats[f"nan|{c}"] == n:
            raise DataError(f"dataset {path}: feature {c!r} is entirely NaN/missing")
        if stats[f"min|{c}"] == stats[f"max|{c}"]:
            raise DataError(f"dataset {path}: feature {c!r} is constant ({stats[f'min|{c}']}) on all {n} rows")
    empty = [c for c in others if stats[f"nan|{c}"] == n]
    return n, [f"column {c!r} is missing on every row: a run has nothing to train or evaluate on for it"
               for c in empty]


def _check_keys(path: Path, min_stocks: int) -> tuple[pl.DataFrame, int, list[str]]:
    keys = pl.read_parquet(path, columns=[CODE, DATE])
    bad = keys.with_row_index("row").filter(pl.col(DATE).is_null() | pl.col(CODE).is_null())
    if bad.height:
        raise DataError(f"dataset {path}: {bad.height} row(s) with a missing Code or Date (rows {bad['row'].head(_N_EXAMPLES).to_list()})")
    implausible_dates(keys, DATE, DATE, f"dataset {path}: garbled dates")
    dup = keys.group_by(CODE, DATE).len().filter(pl.col("len") > 1).sort(DATE, CODE)
    if dup.height:
        ex = ", ".join(f"({c}, {d})" for c, d, _ in dup.head(_N_EXAMPLES).iter_rows())
        raise DataError(f"dataset {path}: {dup.height} duplicate (Code, Date) pair(s), e.g. {ex}")
    order = keys.with_row_index("row").filter(
        (pl.col(DATE) < pl.col(DATE).shift(1)) | ((pl.col(DATE) == pl.col(DATE).shift(1)) & (pl.col(CODE) < pl.col(CODE).shift(1))))
    if order.height:
        r = order["row"][0]
        raise DataError(f"dataset {path}: rows are not sorted by (Date, Code): row {r} "
                        f"({keys[CODE][r]}, {keys[DATE][r]}) comes after ({keys[CODE][r - 1]}, {keys[DATE][r - 1]})")
    per_day = keys.group_by(DATE).len().sort(DATE)
    return per_day, keys[CODE].n_unique(), _stock_count_problems(path, per_day, min_stocks)


def _stock_count_problems(path: Path, per_day: pl.DataFrame, min_stocks: int) -> list[str]:
    empty = per_day.filter(pl.col("len") < CROSS_SECTION_FLOOR)
    if empty.height:
        ex = ", ".join(f"{d} ({n})" for d, n in empty.head(_N_EXAMPLES).iter_rows())
        raise DataError(f"dataset {path}: {empty.height} date(s) have fewer than {CROSS_SECTION_FLOOR} stocks, "
                        f"no cross-section: {ex}")
    median = statistics.median(per_day["len"].to_list())
    if median < min_stocks:
        raise DataError(f"dataset {path}: too few stocks for cross-sectional work: median {median:g} per date "
                        f"< min_stocks_per_day={min_stocks}")
    thin = per_day.filter(pl.col("len") < min_stocks)
    if thin.height:
        return [f"{thin.height} date(s) have fewer than {min_stocks} stocks and will be skipped "
                f"(e.g. {thin[DATE][0]}: {thin['len'][0]})"]
    return []


def validate_dataset(path: str | Path, min_stocks_per_day: int = CROSS_SECTION_FLOOR) -> DatasetSummary:
    """Check a model-ready parquet and summarise it; DataError on the first problem found."""
    path = Path(path)
    schema, meta = _open(path)
    names, horizons, warnings = _check_columns(path, schema, meta)
    others = [RAW_RET] + [target_name(h) for h in horizons]
    n_rows, value_warnings = _check_values(path, names, others)
    warnings += value_warnings
    per_day, n_stocks, count_warnings = _check_keys(path, min_stocks_per_day)
    has_sector, coverage = SECTOR in schema.names(), 0.0
    if has_sector:
        by_code = pl.scan_parquet(path).group_by(CODE).agg(pl.col(SECTOR).is_not_null().any()).collect()
        coverage = float(by_code[SECTOR].mean())
        if coverage == 0:
            has_sector = False
            warnings.append(f"{SECTOR} is empty for every stock: the graph will use correlations only")
        elif coverage < 1:
            warnings.append(f"{1 - coverage:.1%} of stocks have no {SECTOR}")
    missing = {n: float(meta.get("missing_share", {}).get(n, 0.0)) for n in names}
    statements = _statement_coverage(path, names, meta)
    counts = per_day["len"].to_list()
    return DatasetSummary(
        path=str(path), n_stocks=n_stocks,
        n_days=per_day.height, start=str(per_day[DATE][0]), end=str(per_day[DATE][-1]),
        n_features=len(names), feature_names=tuple(names), horizons=tuple(horizons),
        sector_coverage=coverage, missing_share=missing,
        missing_share_overall=sum(missing.values()) / max(len(missing), 1),
        stocks_per_day_min=int(min(counts)), stocks_per_day_median=float(statistics.median(counts)),
        n_rows=n_rows, warnings=warnings + count_warnings + list(meta.get("build_warnings", [])),
        fingerprint=str(meta.get("fingerprint", "")), has_sector=has_sector,
        calendar=dict(meta.get("calendar", {})), statements=statements,
    )


STATEMENT_FLAG = "feat_flag_fin_missing"


def _statement_coverage(path: Path, names: list[str], meta: dict) -> dict:
    """The build's statements metadata and the coverage of its flag column ({} without one)."""
    if STATEMENT_FLAG not in names:
        return {}
    known = pl.col(STATEMENT_FLAG) == 0
    cov = pl.scan_parquet(path).select(
        pl.col(CODE).filter(known).n_unique().alias("stocks_known"),
        pl.col(DATE).filter(known).n_unique().alias("days_known"),
        known.mean().alias("stock_days_known"),
        pl.col(DATE).filter(known).min().alias("first_known"),
    ).collect().row(0, named=True)
    return {**meta.get("statements", {}), **cov, "first_known": str(cov["first_known"])}
