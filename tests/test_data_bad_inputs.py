"""The bad-input table of the data commands: every malformed input file, dataset or build option
gets one line `error: ...` naming the file, column or option, exit status 2, and nothing written.

Each row makes its bad input from the demo's raw files (or dataset) and runs the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from atft_core.data.__main__ import main
from atft_core.data.demo import raw_folder
from atft_core.data.schema import META_KEY


def _changed(option: str, raw_name: str, bad_name: str) -> Callable:
    """A maker of a bad input: the demo's raw file `raw_name`, changed, passed as `option`."""
    def with_change(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable:
        def make(raw: Path, tmp: Path) -> dict:
            bad = tmp / bad_name
            if raw_name.endswith(".csv"):
                change(pl.read_csv(raw / raw_name, schema_overrides={"Code": pl.String})).write_csv(bad)
            else:
                change(pl.read_parquet(raw / raw_name)).write_parquet(bad)
            return {option: bad}
        return make
    return with_change


_quotes = _changed("--quotes", "daily_quotes.parquet", "bad_quotes.parquet")
_listed = _changed("--listed-info", "listed_info.csv", "bad_listed.csv")
_statements = _changed("--statements", "statements.parquet", "bad_statements.parquet")


def _option(**options: str) -> Callable:
    return lambda raw, tmp: {f"--{k.replace('_', '-')}": v for k, v in options.items()}


def _row(i: int, value, column: str) -> pl.Expr:
    return pl.when(pl.int_range(pl.len()) == i).then(value).otherwise(pl.col(column)).alias(column)


BUILD_CASES = {
    "clip negative": (_option(clip="-1"), ["--clip"]),
    "clip nan": (_option(clip="nan"), ["--clip", "nan"]),
    "clip inf": (_option(clip="inf"), ["--clip", "inf"]),
    "horizons not numbers": (_option(horizons="0,x"), ["--horizons", "'0'"]),
    "horizons empty": (_option(horizons=","), ["--horizons", "no horizon"]),
    "start not a date": (_option(start="2016-02-30"), ["--start", "2016-02-30"]),
    "start after end": (_option(start="2016-06-01", end="2016-03-01"), ["--start", "--end"]),
    "start after the data": (_option(start="2030-01-01"), ["--start 2030-01-01", "last traded date", "daily_quotes"]),
    "end before the data": (_option(end="1990-01-01"), ["--end 1990-01-01", "no rows"]),
    "min stocks 1": (_option(min_stocks="1"), ["--min-stocks"]),
    "min stocks text": (_option(min_stocks="many"), ["--min-stocks", "many"]),
    "out not parquet": (lambda raw, tmp: {"--out": tmp / "out" / "ds.csv"}, ["--out", ".parquet"]),
    "quotes missing file": (lambda raw, tmp: {"--quotes": tmp / "nope.parquet"}, ["quotes file", "nope.parquet", "does not exist"]),
    "quotes empty file": (lambda raw, tmp: {"--quotes": (tmp / "e.parquet", (tmp / "e.parquet").write_bytes(b""))[0]},
                          ["quotes file", "empty"]),
    "quotes misspelled column": (_quotes(lambda q: q.rename({"AdjustmentClose": "AdjClose"})),
                                 ["bad_quotes.parquet", "'AdjustmentClose'"]),
    "quotes all zero volume": (_quotes(lambda q: q.with_columns(pl.lit(0.0).alias("AdjustmentVolume"))),
                               ["bad_quotes.parquet", "nothing traded"]),
    "quotes negative volume": (_quotes(lambda q: q.with_columns(_row(7, -5.0, "AdjustmentVolume"))),
                               ["bad_quotes.parquet", "'AdjustmentVolume'", "negative", "rows 7"]),
    "quotes negative close": (_quotes(lambda q: q.with_columns(-pl.col("AdjustmentClose"))),
                              ["bad_quotes.parquet", "'AdjustmentClose'", "negative"]),
    "quotes null code": (_quotes(lambda q: q.with_columns(_row(5, None, "Code"))),
                         ["bad_quotes.parquet", "missing 'Code'", "rows 5"]),
    "quotes 9999-12-31": (_quotes(lambda q: q.with_columns(_row(5, pl.date(9999, 12, 31), "Date"))),
                          ["bad_quotes.parquet", "'Date'", "9999-12-31", "row 5"]),
    "quotes year 10016": (_quotes(lambda q: q.with_columns(_row(5, pl.col("Date") + pl.duration(days=2_930_000), "Date"))),
                          ["bad_quotes.parquet", "'Date'", "row 5", "year 10"]),
    "quotes infinite price": (_quotes(lambda q: q.with_columns(_row(3, float("inf"), "AdjustmentHigh"))),
                              ["bad_quotes.parquet", "'AdjustmentHigh'", "infinite"]),
    "quotes all one price": (_quotes(lambda q: q.with_columns(*[pl.lit(100.0).alias(f"Adjustment{c}")
                                                             for c in ("Open", "High", "Low", "Close")])),
                             ["out/ds.parquet", "is constant"]),
    "quotes duplicate rows": (_quotes(lambda q: pl.concat([q, q.tail(2)])), ["bad_quotes.parquet", "duplicate (Code, Date)"]),
    "statements no EPS column": (_statements(lambda st: st.drop("EarningsPerShare")),
                                 ["bad_statements.parquet", "'EarningsPerShare'"]),
    "statements bad time": (_statements(lambda st: st.with_columns(_row(4, pl.lit("3pm"), "DisclosedTime"))),
                            ["bad_statements.parquet", "'DisclosedTime'", "'3pm'"]),
    "statements text profit": (_statements(lambda st: st.with_columns(pl.col("Profit").cast(pl.String))
                                           .with_columns(_row(2, pl.lit("n/a"), "Profit"))),
                               ["bad_statements.parquet", "'Profit'", "'n/a'"]),
    "statements other codes": (_statements(lambda st: st.with_columns(pl.lit("99999").alias("LocalCode"))),
                               ["bad_statements.parquet", "none of its codes"]),
    "statements one year only": (_statements(lambda st: st), ["bad_statements.parquet", "fin_profit_growth: needs"]),
    "listed null code": (_listed(lambda li: li.with_columns(_row(2, None, "Code"))), ["bad_listed.csv", "missing 'Code'"]),
    "listed duplicate code": (_listed(lambda li: pl.concat([li, li.head(1)])), ["bad_listed.csv", "duplicate (Code)"]),
    "listed no sector column": (_listed(lambda li: li.drop("Sector33Code")), ["bad_listed.csv", "'Sector33Code'"]),
}


@pytest.mark.parametrize("case", list(BUILD_CASES))
def test_bad_build_input(case, demo_dataset, tmp_path, capsys):
    make, expected = BUILD_CASES[case]
    raw = raw_folder(demo_dataset)
    args = {"--quotes": raw / "daily_quotes.parquet", "--listed-info": raw / "listed_info.csv",
            "--index": raw / "topix.parquet", "--out": tmp_path / "out" / "ds.parquet"} | make(raw, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    argv = ["build", *[str(x) for kv in args.items() for x in kv]]
    rc = _run(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_clear_line(err, expected)
    assert sorted(tmp_path.rglob("*")) == before, "a refused build wrote something"


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses a malformed option with status 2
        return int(exc.code)


def _one_clear_line(err: str, expected: list[str]) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("usage:") and line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert "error:" in lines[0] and all(e in lines[0] for e in expected), (lines[0], expected)
    assert ".tmp" not in lines[0], "the message names a temp file instead of the user's"


def _dataset(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable:
    def make(src: Path, tmp: Path) -> Path:
        table = pq.read_table(src)
        meta = table.schema.metadata
        bad = tmp / "bad.parquet"
        pq.write_table(change(pl.from_arrow(table)).to_arrow().replace_schema_metadata(meta), bad)
        return bad
    return make


CHECK_CASES = {
    "year 10016": (_dataset(lambda d: d.with_columns(_row(d.height - 1, pl.col("Date") + pl.duration(days=2_930_000), "Date"))),
                   ["bad.parquet", "'Date'", "year 10"]),
    "null code": (_dataset(lambda d: d.with_columns(_row(3, None, "Code"))), ["bad.parquet", "missing Code"]),
    "missing column": (_dataset(lambda d: d.drop("raw_ret_1d")), ["bad.parquet", "'raw_ret_1d'"]),
    "infinite feature": (_dataset(lambda d: d.with_columns(_row(5, float("inf"), "feat_vol_20").cast(pl.Float32))),
                         ["bad.parquet", "'feat_vol_20'", "infinite"]),
    "not parquet": (lambda src, tmp: (tmp / "bad.parquet", (tmp / "bad.parquet").write_text("a,b\n1,2\n"))[0],
                    ["bad.parquet", "not a parquet file"]),
    "no metadata": (lambda src, tmp: (tmp / "bad.parquet", pl.read_parquet(src).write_parquet(tmp / "bad.parquet"))[0],
                    ["bad.parquet", f"no '{META_KEY}' metadata"]),
    "metadata not json": (lambda src, tmp: (tmp / "bad.parquet", pq.write_table(
        pq.read_table(src).replace_schema_metadata({META_KEY: "{oops"}), tmp / "bad.parquet"))[0],
        ["bad.parquet", "not valid JSON"]),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_bad_dataset(case, demo_dataset, tmp_path, capsys):
    make, expected = CHECK_CASES[case]
    bad = make(demo_dataset, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    rc = _run(["check", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_clear_line(err, expected)
    assert sorted(tmp_path.rglob("*")) == before


def test_all_null_target_is_a_warning(demo_dataset, tmp_path, capsys):
    bad = _dataset(lambda d: d.with_columns(pl.lit(None, pl.Float64).alias("target_1d")))(demo_dataset, tmp_path)
    assert _run(["check", str(bad)]) == 0
    assert "WARNING   column 'target_1d' is missing on every row" in capsys.readouterr().out
    assert json.loads(pq.read_metadata(bad).metadata[META_KEY.encode()])["horizons"][0] == 1
