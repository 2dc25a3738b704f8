"""Every validation error of datasets and build inputs: precise message, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from atft_core.data import DataError, build_dataset, validate_dataset
from atft_core.data.__main__ import main
from atft_core.data.demo import raw_folder
from atft_core.data.schema import META_KEY


def _rewrite(src: Path, dst: Path, frame=None, meta=None) -> Path:
    """Copy a dataset, changing its rows (frame: df -> df) and/or its metadata (meta: dict -> dict)."""
    table = pq.read_table(src)
    kv = dict(table.schema.metadata)
    m = json.loads(kv[META_KEY.encode()])
    if frame is not None:
        table = frame(pl.from_arrow(table)).to_arrow()
    if meta is not None:
        m = meta(m)
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(m)}), dst)
    return dst


def test_demo_dataset_is_valid(demo_dataset):
    s = validate_dataset(demo_dataset)
    assert s.n_stocks == 60 and s.n_features >= 40 and s.horizons == (1, 5, 10, 20)
    assert s.has_sector and s.sector_coverage == 1.0
    assert 0 < s.missing_share_overall < 0.5 and set(s.missing_share) == set(s.feature_names)
    assert "features  " in s.to_text() and s.fingerprint


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.rename({"Code": "Cdoe"}), "missing required column(s) 'Code' (did you mean 'Cdoe'?)"),
        (lambda df: df.with_columns(pl.col("Code").cast(pl.Categorical)), "column 'Code' has dtype"),
        (lambda df: df.with_columns(pl.col("feat_ret_1d").cast(pl.String)), "column 'feat_ret_1d' has dtype String"),
        (lambda df: pl.concat([df, df.head(3)]).sort("Date", "Code"), "3 duplicate (Code, Date) pair(s), e.g. ("),
        (lambda df: df.sort("Code", "Date"), "not sorted by (Date, Code)"),
        (lambda df: df.with_columns(pl.col("Date").dt.offset_by("-500y")), "garbled dates"),
        (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(float("inf"))
                                    .otherwise(pl.col("feat_vol_20")).cast(pl.Float32).alias("feat_vol_20")),
         "column 'feat_vol_20' has 1 infinite value(s), rows [5]"),
        (lambda df: df.with_columns(pl.lit(float("nan"), pl.Float32).alias("feat_gap")), "feature 'feat_gap' is entirely NaN"),
        (lambda df: df.with_columns(pl.lit(0.0, pl.Float32).alias("feat_gap")), "feature 'feat_gap' is constant"),
        (lambda df: df.drop("feat_rsi_14"), "but its metadata lists"),
        (lambda df: df.drop("target_10d"), "targets do not match metadata horizons [1, 5, 10, 20]: missing ['target_10d']"),
        (lambda df: df.filter(pl.col("Code") < "13100"), "too few stocks for cross-sectional work"),
        (lambda df: df.filter((pl.col("Date") != pl.col("Date").min()) | (pl.col("Code") == pl.col("Code").min())),
         "fewer than 2 stocks, no cross-section"),
        (lambda df: df.head(0), "has no rows"),
    ],
)
def test_dataset_errors(demo_dataset, tmp_path, change, message):
    bad = _rewrite(demo_dataset, tmp_path / "bad.parquet", frame=change)
    with pytest.raises(DataError) as err:
        validate_dataset(bad, min_stocks_per_day=20)
    assert message in str(err.value)
    assert str(bad) in str(err.value)


def test_targets_inconsistent_with_metadata(demo_dataset, tmp_path):
    bad = _rewrite(demo_dataset, tmp_path / "bad.parquet", meta=lambda m: {**m, "horizons": [1, 5, 10]})
    with pytest.raises(DataError, match=r"unexpected \['target_20d'\]"):
        validate_dataset(bad)


def test_no_metadata_and_not_parquet_and_missing_path(demo_dataset, tmp_path):
    plain = tmp_path / "plain.parquet"
    pl.read_parquet(demo_dataset).write_parquet(plain)
    with pytest.raises(DataError, match="no 'atft' metadata"):
        validate_dataset(plain)
    text = tmp_path / "notes.parquet"
    text.write_text("Code,Date\n1,2\n")
    with pytest.raises(DataError, match="is not a parquet file"):
        validate_dataset(text)
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        validate_dataset(empty)
    with pytest.raises(DataError, match="does not exist"):
        validate_dataset(tmp_path / "absent.parquet")


def test_missing_sector_is_a_warning(demo_dataset, tmp_path):
    path = _rewrite(demo_dataset, tmp_path / "nosector.parquet", frame=lambda df: df.drop("Sector33Code"))
    s = validate_dataset(path)
    assert not s.has_sector and any("correlations only" in w for w in s.warnings)


def test_check_cli_exit_codes(demo_dataset, tmp_path, capsys):
    assert main(["check", str(demo_dataset)]) == 0
    assert "stocks    60" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "none.parquet")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- build inputs -------------------------------------------------------------------------


@pytest.fixture()
def raw(demo_dataset, tmp_path) -> dict[str, Path]:
    src = raw_folder(demo_dataset)
    return {name: Path(shutil.copy(src / f, tmp_path / f)) for name, f in
            (("quotes", "daily_quotes.parquet"), ("listed", "listed_info.csv"), ("index", "topix.parquet"))}


def _build_fails(raw, tmp_path, message, **paths):
    out = tmp_path / "out" / "ds.parquet"
    args = {"quotes": raw["quotes"], "listed_info": raw["listed"], "index": raw["index"]} | paths
    with pytest.raises(DataError) as err:
        build_dataset(args["quotes"], args["listed_info"], out, index=args["index"])
    assert message in str(err.value)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q: q.rename({"AdjustmentClose": "AdjustmentClos"}), "'AdjustmentClose' (did you mean 'AdjustmentClos'?)"),
        (lambda q: q.drop("AdjustmentVolume"), "missing required column(s) 'AdjustmentVolume'"),
        (lambda q: q.with_columns(pl.col("AdjustmentOpen").cast(pl.String)), "column 'AdjustmentOpen' has dtype String"),
        (lambda q: pl.concat([q, q.tail(2)]), "2 duplicate (Code, Date) key(s)"),
        (lambda q: q.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(float("-inf"))
                                  .otherwise(pl.col("AdjustmentHigh")).alias("AdjustmentHigh")), "infinite value(s) (rows 3)"),
        (lambda q: q.with_columns(pl.col("Date").cast(pl.String).str.replace("2016-01-05", "2016-13-45")),
         "garbled or missing date(s) in column 'Date'"),
        (lambda q: q.head(0), "has no rows"),
    ],
)
def test_build_rejects_bad_quotes(raw, tmp_path, change, message):
    bad = tmp_path / "bad_quotes.parquet"
    change(pl.read_parquet(raw["quotes"])).write_parquet(bad)
    _build_fails(raw, tmp_path, message, quotes=bad)


def test_build_rejects_bad_listed_info_and_index(raw, tmp_path):
    listed = tmp_path / "bad_listed.csv"
    pl.read_csv(raw["listed"]).rename({"Sector33Code": "Sector33Cd"}).write_csv(listed)
    _build_fails(raw, tmp_path, "'Sector33Code' (did you mean 'Sector33Cd'?)", listed_info=listed)
    index = tmp_path / "bad_index.parquet"
    pl.read_parquet(raw["index"]).rename({"Close": "close_"}).write_parquet(index)
    _build_fails(raw, tmp_path, "index file", index=index)
    _build_fails(raw, tmp_path, "quotes file", quotes=tmp_path / "missing.parquet")
    notes = tmp_path / "quotes.json"
    notes.write_text("{}")
    _build_fails(raw, tmp_path, "neither a parquet file", quotes=notes)


def test_build_warns_on_stocks_without_sector(raw, tmp_path):
    listed = tmp_path / "partial.csv"
    pl.read_csv(raw["listed"], schema_overrides={"Code": pl.String}).slice(5).write_csv(listed)
    s = build_dataset(raw["quotes"], listed, tmp_path / "ds.parquet", index=raw["index"])
    assert any("5 stock(s) have no Sector33Code" in w for w in s.warnings)
    assert 0.9 < s.sector_coverage < 1.0
