"""Reading and checking the raw inputs of `build`: J-Quants quotes, listed info, index.

Every check runs before any computation and raises DataError naming the file, column and rows.
Output frames use lower-case internal names: Code, Date, open, high, low, close, volume,
turnover (float64, NaN turned into null so that rolling windows skip them).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from .errors import DataError
from .schema import INDEX_REQUIRED, LISTED_REQUIRED, QUOTE_ADJUSTED, QUOTE_RAW, require_columns

_PARQUET_MAGIC = b"PAR1"
_N_EXAMPLES = 5
_TEXT_COLUMNS = ("Code", "LocalCode", "Sector17Code", "Sector33Code", "DisclosedTime", "DisclosureNumber")
SECTOR_CODE_WIDTH = 4
"""Sector33 codes are 4-digit strings ('0050', '3650'); CSV readers turn them into ints."""


def check_file(path: str | Path, role: str) -> Path:
    """The path as a Path if it exists and is non-empty, else DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{role} file {p} does not exist")
    if not p.is_file():
        raise DataError(f"{role} path {p} is not a file")
    if p.stat().st_size == 0:
        raise DataError(f"{role} file {p} is empty (0 bytes)")
    return p


def is_parquet(path: Path) -> bool:
    """True when the file starts and ends with the parquet magic bytes."""
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(-4, 2)
        tail = fh.read(4)
    return head == _PARQUET_MAGIC and tail == _PARQUET_MAGIC


def read_table(path: str | Path, role: str) -> pl.DataFrame:
    """Read a parquet or CSV input; identifier columns are kept as text."""
    p = check_file(path, role)
    if p.stat().st_size >= 8 and is_parquet(p):
        df = pl.read_parquet(p)
    elif p.suffix.lower() in (".csv", ".txt"):
        try:
            header = pl.read_csv(p, n_rows=0).columns
            overrides = {c: pl.String for c in _TEXT_COLUMNS if c in header}
            df = pl.read_csv(p, schema_overrides=overrides, infer_schema_length=10_000)
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{role} file {p}: cannot be read as CSV ({exc})") from exc
    else:
        raise DataError(f"{role} file {p} is neither a parquet file (no PAR1 magic bytes) nor a .csv")
    if df.height == 0:
        raise DataError(f"{role} file {p} has no rows")
    return df


def dates_column(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """Cast `column` to pl.Date; unparseable, null or implausible dates are an error with examples."""
    dtype = df.schema[column]
    if dtype == pl.Date:
        parsed = pl.col(column)
    elif isinstance(dtype, pl.Datetime):
        parsed = pl.col(column).dt.date()
    elif dtype == pl.String:
        parsed = pl.col(column).str.strip_chars().str.to_date(strict=False)
    else:
        raise DataError(f"{where}: column {column!r} has dtype {dtype}; expected a date or YYYY-MM-DD text")
    out = df.with_columns(parsed.alias("__date"))
    bad = out.with_row_index("row").filter(pl.col("__date").is_null())
    if bad.height:
        examples = ", ".join(f"row {r}: {v!r}" for r, v in bad.select("row", pl.col(column).cast(pl.String))
                             .head(_N_EXAMPLES).iter_rows())
        raise DataError(f"{where}: {bad.height} garbled or missing date(s) in column {column!r} ({examples})")
    implausible_dates(out, "__date", column, where)
    return out.with_columns(pl.col("__date").alias(column)).drop("__date")


def _dates(df: pl.DataFrame, where: str) -> pl.DataFrame:
    return dates_column(df, "Date", where)


EPOCH = dt.date(1970, 1, 1)
PLAUSIBLE_YEARS = (1950, 2200)
"""Dates outside these years are taken as garbled (e.g. a 9999-12-31 placeholder)."""


def implausible_dates(df: pl.DataFrame, column: str, name: str, where: str) -> None:
    """DataError naming rows whose date lies outside PLAUSIBLE_YEARS.

    Compared as day numbers: polars cannot turn a date past year 9999 into a Python date.
    """
    lo, hi = (dt.date(PLAUSIBLE_YEARS[0], 1, 1), dt.date(PLAUSIBLE_YEARS[1], 12, 31))
    days = pl.col(column).cast(pl.Int32)
    bad = df.with_row_index("row").filter((days < (lo - EPOCH).days) | (days > (hi - EPOCH).days))
    if bad.height:
        ex = ", ".join(f"row {r}: {_day_text(d)}" for r, d in bad.select("row", days).head(_N_EXAMPLES).iter_rows())
        raise DataError(f"{where}: {bad.height} date(s) in column {name!r} outside the years "
                        f"{PLAUSIBLE_YEARS[0]}-{PLAUSIBLE_YEARS[1]} ({ex})")


def _day_text(days: int) -> str:
    """A day number as YYYY-MM-DD, also past year 9999 (proleptic Gregorian)."""
    try:
        return str(EPOCH + dt.timedelta(days=days))
    except OverflowError:
        return f"~year {1970 + round(days / 365.2425)}"


def _numeric(df: pl.DataFrame, columns: tuple[str, ...], where: str) -> None:
    for c in columns:
        if not df.schema[c].is_numeric():
            raise DataError(f"{where}: column {c!r} has dtype {df.schema[c]}; expected numbers")


def _no_inf(df: pl.DataFrame, columns: tuple[str, ...], where: str) -> None:
    for c in columns:
        bad = df.with_row_index("row").filter(pl.col(c).is_infinite())
        if bad.height:
            rows = ", ".join(str(r) for r in bad["row"].head(_N_EXAMPLES))
            raise DataError(f"{where}: column {c!r} has {bad.height} infinite value(s) (rows {rows})")


def codes_as_text(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """`column` as stripped text; a missing or blank code is a DataError naming the rows."""
    df = df.with_columns(pl.col(column).cast(pl.String).str.strip_chars())
    bad = df.with_row_index("row").filter(pl.col(column).is_null() | (pl.col(column) == ""))
    if bad.height:
        rows = ", ".join(str(r) for r in bad["row"].head(_N_EXAMPLES))
        raise DataError(f"{where}: {bad.height} row(s) with a missing {column!r} (rows {rows})")
    return df


def numeric_text(df: pl.DataFrame, column: str, where: str) -> pl.Series:
    """`column` as float64 with NaN and empty text as null; text that is not a number is an error."""
    values = df[column]
    if values.dtype.is_numeric() or values.dtype == pl.Null:
        number = values.cast(pl.Float64)
    elif values.dtype == pl.String:
        text = values.str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        bad = df.with_row_index("row").filter(text.is_not_null() & (text != "") & number.is_null())
        if bad.height:
            ex = ", ".join(f"row {r}: {v!r}" for r, v in bad.select("row", column).head(_N_EXAMPLES).iter_rows())
            raise DataError(f"{where}: column {column!r} has {bad.height} value(s) that are not numbers ({ex})")
    else:
        raise DataError(f"{where}: column {column!r} has dtype {values.dtype}; expected numbers")
    _no_inf(pl.DataFrame({column: number}), (column,), where)
    return number.fill_nan(None).alias(column)


def _no_negative(df: pl.DataFrame, columns: tuple[str, ...], where: str) -> None:
    for c in columns:
        bad = df.with_row_index("row").filter(pl.col(c) < 0)
        if bad.height:
            rows = ", ".join(str(r) for r in bad["row"].head(_N_EXAMPLES))
            raise DataError(f"{where}: column {c!r} has {bad.height} negative value(s) (rows {rows}); "
                            "prices and volumes cannot be negative")


def no_duplicates(df: pl.DataFrame, keys: tuple[str, ...], where: str) -> None:
    """DataError with examples when a key combination appears more than once."""
    dup = df.group_by(list(keys)).len().filter(pl.col("len") > 1)
    if dup.height:
        ex = ", ".join(str(tuple(str(v) for v in row[:-1])) for row in dup.sort(list(keys)).head(_N_EXAMPLES).iter_rows())
        raise DataError(f"{where}: {dup.height} duplicate ({', '.join(keys)}) key(s), e.g. {ex}")


def read_quotes(path: str | Path) -> pl.DataFrame:
    """Daily quotes in either J-Quants form, as split-adjusted internal columns.

    Unadjusted form (Open..Volume + AdjustmentFactor, what `fetch` writes): the factor on date d
    applies to every price before d, so price(t) is multiplied by the product of the factors on
    dates after t (and volume divided by it). This form also keeps the traded close
    (`close_raw`) and `basis`, the product of the factors up to and including t: close_raw /
    basis is a split-free price known at t, which statement yields need (docs/data.md).
    """
    where = f"quotes file {path}"
    df = read_table(path, "quotes")
    cols = df.columns
    adjusted = "AdjustmentClose" in cols or not ("Close" in cols and "AdjustmentFactor" in cols)
    require_columns(cols, QUOTE_ADJUSTED if adjusted else QUOTE_RAW, where)
    source = QUOTE_ADJUSTED[2:] if adjusted else QUOTE_RAW[2:]
    _numeric(df, source + (("TurnoverValue",) if "TurnoverValue" in cols else ()), where)
    _no_inf(df, source, where)
    df = _dates(codes_as_text(df, "Code", where), where)
    no_duplicates(df, ("Code", "Date"), where)
    _no_negative(df, source, where)
    turnover = pl.col("TurnoverValue").cast(pl.Float64) if "TurnoverValue" in cols else pl.lit(None, pl.Float64)
    names = ("open", "high", "low", "close", "volume")
    out = df.select(
        "Code", "Date",
        *[pl.col(s).cast(pl.Float64).alias(n) for s, n in zip(source[:5], names)],
        turnover.alias("turnover"),
        *([pl.col("AdjustmentFactor").cast(pl.Float64).alias("factor")] if not adjusted else []),
    ).sort("Code", "Date")
    if not adjusted:
        factor = pl.col("factor").fill_null(1.0).fill_nan(1.0)
        out = out.with_columns(pl.col("close").alias("close_raw"), factor.cum_prod().over("Code").alias("basis"))
        out = _apply_adjustment_factor(out)
    extra = ("close_raw",) if not adjusted else ()
    return out.with_columns(pl.col(c).fill_nan(None) for c in names + ("turnover",) + extra)


def _apply_adjustment_factor(df: pl.DataFrame) -> pl.DataFrame:
    factor = pl.col("factor").fill_null(1.0).fill_nan(1.0)
    # product of the factors strictly after t, per stock (rows sorted by Code, Date)
    later = factor.shift(-1).fill_null(1.0).cum_prod(reverse=True).over("Code")
    return df.with_columns(later.alias("__m")).with_columns(
        *[(pl.col(c) * pl.col("__m")).alias(c) for c in ("open", "high", "low", "close")],
        (pl.col("volume") / pl.col("__m")).alias("volume"),
    ).drop("__m", "factor")


def read_listed_info(path: str | Path) -> pl.DataFrame:
    """Code -> Sector33Code (4-digit text); duplicate codes are an error."""
    where = f"listed-info file {path}"
    df = read_table(path, "listed-info")
    require_columns(df.columns, LISTED_REQUIRED, where)
    df = codes_as_text(df, "Code", where).select(
        "Code",
        pl.col("Sector33Code").cast(pl.String).str.strip_chars().str.zfill(SECTOR_CODE_WIDTH),
    )
    no_duplicates(df, ("Code",), where)
    return df


def read_index(path: str | Path) -> pl.DataFrame:
    """Date -> index close (TOPIX); with a Code column, code 0000 is taken when present."""
    where = f"index file {path}"
    df = read_table(path, "index")
    require_columns(df.columns, INDEX_REQUIRED, where)
    _numeric(df, ("Close",), where)
    if "Code" in df.columns:
        codes = df["Code"].cast(pl.String).unique().to_list()
        if len(codes) > 1:
            if "0000" not in codes:
                raise DataError(f"{where}: several index codes {sorted(codes)[:5]} and no '0000' (TOPIX)")
            df = df.filter(pl.col("Code").cast(pl.String) == "0000")
    df = _dates(df, where)
    no_duplicates(df, ("Date",), where)
    _no_inf(df, ("Close",), where)
    return df.select("Date", pl.col("Close").cast(pl.Float64).fill_nan(None).alias("index_close")).sort("Date")
