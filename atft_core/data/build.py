"""J-Quants quotes (+ listed info, + TOPIX) -> one model-ready parquet.

Pipeline (details and the rules in docs/data.md):
1. read and check every input (inputs.py), before any work;
2. one row per stock and market day from the stock's first to last quote; a day without a
   positive close and volume is a *no-trade* row: its prices are null, its close is forward-
   filled only to measure the next traded day's return, and the row itself is dropped from
   the output (no features or targets pretend it traded);
3. per-stock backward features in chunks of stocks (bounded memory), forward-return targets;
4. within-date sector features, per-date robust z-score, NaN -> 0;
5. write to a temp file in the output folder, validate it, rename. Nothing is left on failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from . import features as F
from . import statements as S
from .errors import DataError
from .inputs import read_index, read_listed_info, read_quotes
from .schema import DEFAULT_HORIZONS, FORMAT_VERSION, META_KEY, target_name

MAD_TO_STD = 1.4826
"""Scales a median absolute deviation to a standard deviation under normality."""
NORMALIZATION = (
    "per-date robust z-score: (x - median_date) / (1.4826 * MAD_date), falling back to the "
    "date's std when the MAD is 0, clipped to +-{clip}; market features (equal across stocks) "
    "z-scored against their own trailing 252 market days; days_listed and flag_* kept in [0, 1]; "
    "missing -> 0 after normalisation (shares in metadata missing_share)"
)


MIN_CROSS_SECTION = 2
"""A date needs at least two stocks to have a cross-section at all."""


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_horizons(text: str) -> tuple[int, ...]:
    """'1,5,10,20' -> (1, 5, 10, 20); DataError naming --horizons for anything else."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [p for p in parts if not p.isdigit() or int(p) < 1]
    if not parts or bad:
        what = f"{bad[0]!r} is not a positive whole number of days" if bad else "no horizon given"
        raise DataError(f"--horizons {text!r}: {what}; give e.g. 1,5,10,20")
    return tuple(sorted({int(p) for p in parts}))


def _parse_date(value: str, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"--{name}: expected a date YYYY-MM-DD, got {value!r}") from exc


@dataclass(frozen=True)
class BuildParams:
    """Options of `build` (part of the dataset fingerprint, except `stocks_per_chunk`)."""

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    start: str = ""
    """First output date (ISO); earlier quotes still serve as feature history."""
    end: str = ""
    """Last date used at all: later quotes are ignored, so targets near `end` are missing."""
    clip: float = 5.0
    """Normalised features are clipped to +-clip."""
    days_listed_cap: int = 252
    """feat_days_listed = min(days since the stock's first quote, cap) / cap."""
    min_stocks_per_day: int = 2
    """Output dates with fewer traded stocks are dropped (no cross-section)."""
    stocks_per_chunk: int = field(default=500, compare=False)
    """Stocks per chunk of the per-stock stage: bounds peak memory, not the result."""

    def __post_init__(self) -> None:
        """Refuse a bad option before any work, naming it as the CLI does (DataError)."""
        if not self.horizons or any(not _whole(h) or h < 1 for h in self.horizons):
            raise DataError(f"--horizons {list(self.horizons)}: give positive whole days, e.g. 1,5,10,20")
        if len(set(self.horizons)) != len(self.horizons):
            raise DataError(f"--horizons {list(self.horizons)}: a horizon is repeated")
        if not isinstance(self.clip, (int, float)) or not math.isfinite(self.clip) or self.clip <= 0:
            raise DataError(f"--clip {self.clip!r}: must be a finite number > 0 (normalised features are clipped to +-clip)")
        if not _whole(self.min_stocks_per_day) or self.min_stocks_per_day < MIN_CROSS_SECTION:
            raise DataError(f"--min-stocks {self.min_stocks_per_day!r}: must be a whole number >= {MIN_CROSS_SECTION} "
                            "(a date needs a cross-section)")
        for name in ("days_listed_cap", "stocks_per_chunk"):
            if not _whole(getattr(self, name)) or getattr(self, name) < 1:
                raise DataError(f"{name} {getattr(self, name)!r}: must be a whole number >= 1")
        start, end = _parse_date(self.start, "start"), _parse_date(self.end, "end")
        if start and end and start > end:
            raise DataError(f"--start {self.start} is after --end {self.end}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(inputs: dict[str, Path | None], params: BuildParams) -> tuple[str, dict]:
    """sha256 over the input files' bytes and the build params; plus the per-file source record."""
    source = {role: ({"file": p.name, "sha256": _sha256(p)} if p else None) for role, p in inputs.items()}
    p = asdict(params)
    p.pop("stocks_per_chunk")
    method = {"statements_method": S.METHOD} if inputs.get("statements") else {}
    blob = json.dumps({"source": source, "params": p, **method}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest(), source


def _dense(quotes: pl.DataFrame) -> pl.DataFrame:
    """One row per stock and market day between its first and last quote, sorted (Code, Date)."""
    cal = quotes.select("Date").unique().sort("Date").with_row_index("di")
    span = quotes.group_by("Code").agg(pl.col("Date").min().alias("first"), pl.col("Date").max().alias("last"))
    span = span.join(cal.rename({"Date": "first", "di": "d0"}), on="first").join(
        cal.rename({"Date": "last", "di": "d1"}), on="last")
    span = span.sort("Code").with_row_index("ci")
    grid = span.select("Code", "ci", pl.int_ranges("d0", pl.col("d1") + 1, dtype=pl.UInt32).alias("di")).explode("di")
    grid = grid.join(cal, on="di", maintain_order="left")
    dense = grid.join(quotes, on=["Code", "Date"], how="left", maintain_order="left").sort("Code", "Date")
    traded = (pl.col("close") > 0) & (pl.col("volume") > 0)
    dense = dense.with_columns(traded.fill_null(False).alias("traded"))
    price_cols = ("open", "high", "low", "close", "volume", "turnover") + (("close_raw",) if "close_raw" in dense.columns else ())
    return dense.with_columns(pl.when(pl.col("traded")).then(pl.col(c)).alias(c) for c in price_cols)


def _market(dense: pl.DataFrame, index: pl.DataFrame | None) -> tuple[pl.DataFrame, str]:
    """Market features on the calendar, from the index or (without one) an equal-weighted market."""
    cal = dense.select("Date").unique().sort("Date")
    if index is not None:
        # the index's own earlier history warms up the trailing market z-scores
        last = cal["Date"].max()
        cal = pl.concat([cal, index.select("Date").filter(pl.col("Date") <= last)]).unique().sort("Date")
        calendar = cal.join(index.rename({"index_close": "mkt_close"}), on="Date", how="left", maintain_order="left")
        return F.market_features(calendar), "index"
    ret = dense.select("Code", "Date", pl.when(pl.col("traded")).then(
        pl.col("close") / pl.col("close").forward_fill().shift(1).over("Code") - 1).alias("r"))
    ew = cal.join(ret.group_by("Date").agg(pl.col("r").mean()), on="Date", how="left", maintain_order="left")
    calendar = ew.select("Date", (1 + pl.col("r").fill_null(0)).cum_prod().alias("mkt_close"))
    return F.market_features(calendar), "equal_weighted"


def _stock_stage(chunk: pl.DataFrame, market: pl.DataFrame, params: BuildParams,
                 states: pl.DataFrame | None) -> pl.DataFrame:
    """Per-stock features and targets of a chunk of whole stocks; only traded rows are kept.

    With `states` (statements given), the statement features and their flag are added."""
    df = chunk.join(market.select("Date", "mkt_r"), on="Date", how="left", maintain_order="left")
    df = df.with_columns(F.base_columns(params.days_listed_cap))
    df = df.with_columns(F.stock_features()).with_columns(F.beta_features()).with_columns(F.idio_features())
    names = F.STOCK_FEATURES + ("days_listed",) + tuple(n for n in F.ASIS_FEATURES if n.startswith("flag_"))
    if states is not None:
        df = S.daily_features(df, states)
        names += S.FEATURES + (S.FLAG,)
    targets = [
        pl.when(pl.col("traded")).then(pl.col("close").shift(-h).over("Code") / pl.col("close") - 1).alias(target_name(h))
        for h in params.horizons
    ]
    df = df.with_columns(targets).filter(pl.col("traded"))
    return df.select(
        "Code", "ci", "Date", pl.col("ret_1d").alias("raw_ret_1d"),
        *[pl.col(n).cast(pl.Float32) for n in names],
        *[target_name(h) for h in params.horizons],
    )


def _chunks(dense: pl.DataFrame, size: int):
    counts = dense.group_by("Code", maintain_order=True).len()["len"].to_list()
    offset = 0
    for i in range(0, len(counts), size):
        n = sum(counts[i:i + size])
        yield dense.slice(offset, n)
        offset += n


def _finite(name: str) -> pl.Expr:
    x = pl.col(name).fill_nan(None)
    return pl.when(x.is_finite()).then(x).alias(name)


NORMALISE_BATCH = 8
"""Features normalised per pass: bounds the per-date helper columns held at once."""


def _normalise(df: pl.DataFrame, names: tuple[str, ...], clip: float) -> pl.DataFrame:
    """Per-date robust z-score of `names` (see NORMALIZATION); nulls stay null here."""
    for i in range(0, len(names), NORMALISE_BATCH):
        df = _normalise_batch(df, names[i:i + NORMALISE_BATCH], clip)
    return df


def _normalise_batch(df: pl.DataFrame, names: tuple[str, ...], clip: float) -> pl.DataFrame:
    """Per-date statistics come from group_by + join (several times faster than `.over`)."""
    c = pl.col
    med = df.group_by("Date").agg(c(n).median().alias(f"m|{n}") for n in names)
    df = df.join(med, on="Date", how="left", maintain_order="left")
    df = df.with_columns((c(n) - c(f"m|{n}")).alias(n) for n in names)
    spread = df.group_by("Date").agg(
        *[c(n).abs().median().alias(f"a|{n}") for n in names], *[c(n).std().alias(f"s|{n}") for n in names])
    df = df.join(spread, on="Date", how="left", maintain_order="left")
    exprs = []
    for n in names:
        mad, sd = c(f"a|{n}") * MAD_TO_STD, c(f"s|{n}")
        scale = pl.when(mad > 0).then(mad).when(sd > 0).then(sd)
        exprs.append((c(n) / scale).clip(-clip, clip).cast(pl.Float32).alias(n))
    helpers = [f"{p}|{n}" for p in "mas" for n in names]
    return df.with_columns(exprs).drop(helpers)


def _cross_section(df: pl.DataFrame, market: pl.DataFrame, params: BuildParams,
                   with_statements: bool) -> tuple[pl.DataFrame, dict]:
    """Sector and market features, normalisation, missing shares; returns (frame, missing)."""
    for stage in F.sector_features():
        df = df.with_columns(stage)
    df = df.join(market.drop("mkt_r"), on="Date", how="left", maintain_order="left")
    fin = S.FEATURES if with_statements else ()
    short = F.STOCK_FEATURES + F.SECTOR_FEATURES + F.MARKET_FEATURES + F.ASIS_FEATURES
    short += fin + ((S.FLAG,) if with_statements else ())
    df = df.with_columns(_finite(n) for n in short)
    missing = df.select(pl.col(n).is_null().mean() for n in short).row(0)
    df = _normalise(df, F.STOCK_FEATURES + F.SECTOR_FEATURES + fin, params.clip)
    df = df.with_columns(pl.col(n).clip(-params.clip, params.clip) for n in F.MARKET_FEATURES)
    df = df.with_columns(pl.col(n).fill_null(0).cast(pl.Float32).alias(f"feat_{n}") for n in short)
    return df, {f"feat_{n}": round(float(m), 6) for n, m in zip(short, missing)}


def _write(df: pl.DataFrame, out: Path, meta: dict) -> None:
    table = df.to_arrow()
    table = table.cast(pa.schema([
        pa.field(f.name, pa.string() if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                 or pa.types.is_string_view(f.type) else f.type) for f in table.schema
    ]))
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    pq.write_table(table, out, compression="zstd", row_group_size=1 << 20)


def build_dataset(
    quotes: str | Path,
    listed_info: str | Path,
    out: str | Path,
    index: str | Path | None = None,
    params: BuildParams = BuildParams(),
    log: Callable[[str], None] | None = None,
    statements: str | Path | None = None,
):
    """Build the model-ready parquet at `out` and return its DatasetSummary.

    Every input is checked first (DataError names file / column / rows); the output is written
    to a temp file beside `out`, validated, then renamed, so a failure writes nothing. With
    `statements` (J-Quants statements, parquet or CSV) the statement features are added; without
    it the dataset is exactly what it was before they existed.
    """
    say = log or (lambda _m: None)
    out = Path(out)
    if out.suffix != ".parquet":
        raise DataError(f"--out {out}: the dataset must be a .parquet file")
    start, end = _parse_date(params.start, "start"), _parse_date(params.end, "end")
    say("1/6 reading and checking the input files")
    q = read_quotes(quotes)
    listed = read_listed_info(listed_info)
    ix = read_index(index) if index else None
    filings = S.read_statements(statements) if statements else None
    if end is not None:
        q = q.filter(pl.col("Date") <= end)
        ix = ix.filter(pl.col("Date") <= end) if ix is not None else None
    _check_tradable(q, quotes, params, start)
    calendar = _calendar_counts(q, start)
    inputs = {"quotes": Path(quotes), "listed_info": Path(listed_info), "index": Path(index) if index else None}
    fp, source = fingerprint(inputs | ({"statements": Path(statements)} if statements else {}), params)
    states, statements_meta, warnings = None, None, []
    if filings is not None:
        say("2/6 statements: when each filing became public, and the state after it")
        traded_prices = "close_raw" in q.columns
        if not traded_prices:
            q = q.with_columns(pl.col("close").alias("close_raw"), pl.lit(1.0).alias("basis"))
        states, statements_meta, warnings = _statement_states(filings, q, statements, traded_prices)
    say("3/6 market calendar: one row per stock and market day")
    dense = _dense(q)
    del q
    say(f"    {dense['Code'].n_unique()} stocks, {dense.height} stock-days on the market calendar")
    market, market_source = _market(dense, ix)
    chunks = list(_chunks(dense, params.stocks_per_chunk))
    parts = []
    for i, chunk in enumerate(chunks, 1):
        say(f"4/6 per-stock features and targets: stocks chunk {i} of {len(chunks)}")
        parts.append(_stock_stage(chunk, market, params, states))
    del dense, chunks
    df = pl.concat(parts)
    del parts
    if start is not None:
        df = df.filter(pl.col("Date") >= start)
    df = df.join(listed, on="Code", how="left", maintain_order="left")
    # date-major order from here on: every later step groups by date, and sorted keys are fast
    df = df.sort("Date", "ci").with_columns(pl.col("Date").set_sorted())
    warnings = _sector_warnings(df, listed_info) + warnings
    say("5/6 sector features and per-date normalisation")
    df, missing = _cross_section(df, market, params, with_statements=states is not None)
    if states is not None:
        _check_statement_features(missing, statements)
    counts = df.group_by("Date").len()
    thin = counts.filter(pl.col("len") < params.min_stocks_per_day)
    if thin.height:
        say(f"    dropping {thin.height} date(s) with fewer than {params.min_stocks_per_day} traded stocks")
        df = df.join(thin.select("Date"), on="Date", how="anti")
    calendar["thin_days"] = [str(d) for d in thin["Date"].sort()]
    if df.height == 0:
        raise DataError(f"no traded rows left to write (check --start/--end and the quotes in {quotes})")
    features = F.ALL_FEATURES + (S.FEATURE_COLUMNS if states is not None else ())
    df = df.select(["Code", "Date", "Sector33Code", "raw_ret_1d", *features, *[target_name(h) for h in params.horizons]])
    meta = {
        "format_version": FORMAT_VERSION,
        "feature_names": list(features),
        "horizons": list(params.horizons),
        "normalization": NORMALIZATION.format(clip=params.clip),
        "fingerprint": fp,
        "source": source,
        "market": market_source,
        "params": {k: v for k, v in asdict(params).items() if k != "stocks_per_chunk"},
        "missing_share": missing,
        "build_warnings": warnings,
        "calendar": calendar,
    }
    if statements_meta is not None:
        meta["statements"] = statements_meta
    say("6/6 writing and checking the dataset")
    return _write_validated(df, out, meta, params, say)


def _statement_states(filings: pl.DataFrame, q: pl.DataFrame, path,
                      traded_prices: bool) -> tuple[pl.DataFrame, dict, list[str]]:
    """Filing states on the quotes' calendar, the metadata `statements` section and warnings."""
    where = f"statements file {path}"
    codes = q["Code"].unique()
    unmatched = filings.filter(~pl.col("Code").is_in(codes.implode()))["Code"].unique()
    filings = filings.filter(pl.col("Code").is_in(codes.implode()))
    if filings.height == 0:
        raise DataError(f"{where}: none of its codes appear in the quotes (e.g. {unmatched.sort().head(3).to_list()}); "
                        "LocalCode must match the quotes' Code (5 characters, e.g. 72030)")
    filings = S.effective_dates(filings, q["Date"].unique().sort())
    if filings.height == 0:
        raise DataError(f"{where}: every filing was disclosed after the last quote date {q['Date'].max()}")
    if traded_prices:
        filings = filings.sort("EffectiveDate").join_asof(
            q.select("Code", "Date", "basis").sort("Date"), left_on="EffectiveDate", right_on="Date", by="Code",
            strategy="backward", check_sortedness=False).with_columns(pl.col("basis").fill_null(1.0)).drop("Date")
        split_meta, warnings = {}, []
    else:
        filings = S.inferred_split_basis(filings)
        split_meta = S.split_summary(filings) | {"split_basis": "inferred from the filings' Profit / EarningsPerShare"}
        warnings = [
            "statements: the quotes are split-adjusted only (no Close + AdjustmentFactor), so the per-share "
            f"figures were put on the adjusted prices' share basis with {split_meta['splits_inferred']} split(s) "
            f"of {split_meta['split_stocks']} stock(s) read from the filings' share counts; a split after a stock's "
            "last filing (or one the filings do not show) still makes its earlier yields too high by the split "
            "ratio, a leak from the future; give quotes in the API form (`data fetch` writes it)"]
    if unmatched.len():
        warnings.append(f"statements: {unmatched.len()} code(s) in {Path(path).name} are not in the quotes and are ignored")
    states = S.filing_states(filings)
    first = filings["EffectiveDate"].min()
    meta = {"price_basis": "traded" if traded_prices else "adjusted", **split_meta, "filings": filings.height,
            "stocks": filings["Code"].n_unique(), "first_effective": str(first),
            "last_effective": str(filings["EffectiveDate"].max()),
            "before_first": f"before {first} no stock has a filing known: statement features are 0 and {S.FLAG} is 1"}
    return states, meta, warnings


def _check_statement_features(missing: dict[str, float], path) -> None:
    """A statement feature with no value on any stock-day would be a constant: say why instead."""
    empty = [n for n in S.FEATURES if missing[f"feat_{n}"] == 1.0]
    if empty:
        why = "; ".join(f"{n}: {S.NEEDS[n]}" for n in empty)
        raise DataError(f"statements file {path}: no stock-day has a value for {', '.join(empty)} ({why})")


def _calendar_counts(q: pl.DataFrame, start: dt.date | None) -> dict:
    """Market days in the quotes, and those the dataset cannot have (see DatasetSummary.to_text)."""
    days = q.group_by("Date").agg(((pl.col("close") > 0) & (pl.col("volume") > 0)).any().alias("traded"))
    early = pl.col("Date") < start if start else pl.lit(False)
    no_trade = days.filter(~pl.col("traded") & ~early)["Date"].sort()
    return {"quote_days": days.height, "no_trade_days": [str(d) for d in no_trade],
            "before_start": days.filter(early).height}


def _check_tradable(q: pl.DataFrame, quotes, params: BuildParams, start: dt.date | None) -> None:
    """Refuse, before any work, quotes that leave nothing to build (DataError with the reason)."""
    if q.height == 0:
        raise DataError(f"quotes file {quotes}: no rows on or before --end {params.end}")
    traded = q.filter((pl.col("close") > 0) & (pl.col("volume") > 0))
    if traded.height == 0:
        raise DataError(f"quotes file {quotes}: no row has a positive close and a positive volume "
                        f"({q.height} rows): nothing traded, so there is nothing to build")
    last = traded["Date"].max()
    if start is not None and start > last:
        raise DataError(f"--start {params.start} is after the last traded date {last} in quotes file {quotes}")


def _sector_warnings(df: pl.DataFrame, listed_info) -> list[str]:
    unknown = df.filter(pl.col("Sector33Code").is_null())["Code"].unique().sort()
    if unknown.len() == 0:
        return []
    ex = ", ".join(unknown.head(5).to_list())
    return [f"{unknown.len()} stock(s) have no Sector33Code in {Path(listed_info).name} (e.g. {ex}); "
            "their sector features are 0 and the graph links them by correlation only"]


def _write_validated(df: pl.DataFrame, out: Path, meta: dict, params: BuildParams, say):
    from .validate import validate_dataset

    created = [d for d in (out.parent, *out.parent.parents) if not d.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _write(df, tmp, meta)
        summary = validate_dataset(tmp, min_stocks_per_day=params.min_stocks_per_day)
        os.replace(tmp, out)
    except DataError as exc:  # name the file the user asked for, not the temp file
        raise DataError(str(exc).replace(str(tmp), str(out))) from None
    finally:
        tmp.unlink(missing_ok=True)
        for folder in created if not out.exists() else ():  # a failed build leaves no new folder either
            with contextlib.suppress(OSError):  # not empty: something else put files there meanwhile
                folder.rmdir()
    summary.path = str(out)
    say(f"wrote {out}: {df.height} rows, {len(meta['feature_names'])} features")
    return summary
