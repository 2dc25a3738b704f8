"""The real shared J-Quants data builds and passes check (skipped when ../shared/data is absent)."""

from __future__ import annotations

import pytest

from atft_core.data.__main__ import main
from conftest import SHARED_DATA


def test_real_data_builds_and_checks(tmp_path, capsys):
    quotes = SHARED_DATA / "jquants_daily_quotes_2016_2024.parquet"
    if not quotes.exists():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    out = tmp_path / "real.parquet"
    rc = main(["build", "--quotes", str(quotes), "--listed-info", str(SHARED_DATA / "jquants_listed_info.csv"),
               "--index", str(SHARED_DATA / "jquants_topix_2004_2024.parquet"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["check", str(out), "--min-stocks", "20"]) == 0
    text = capsys.readouterr().out
    assert "stocks    943" in text and "2016-02-01 .. 2024-12-30" in text and "coverage 100.0%" in text
