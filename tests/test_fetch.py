"""`data fetch` against a local J-Quants stand-in (tests/fake_jquants.py) with the real client:
pages, a 429 then success, a rejected key, a plan without an endpoint, an empty range,
incremental second calls, an interrupted run, and the key never written anywhere."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from atft_core.data.__main__ import api_key, main
from atft_core.data.fetch import FetchError, FetchSettings, fetch
from atft_core.data.inputs import read_index, read_listed_info, read_quotes
from atft_core.data.statements import read_statements
from fake_jquants import CODES, FakeJQuants

KEY = "jq-SECRET-7f3a9c1e5b"
TODAY = dt.date(2024, 12, 1)
FAST = FetchSettings(retries=2, backoff_seconds=0.0)


@pytest.fixture
def api():
    fake = FakeJQuants(key=KEY)
    fake.url = fake.start()
    yield fake
    fake.stop()


def _fetch(api, out: Path, start="2024-01-22", end="2024-02-09", key=KEY, **kw):
    waits = kw.pop("waits", [])
    return fetch(key, start, end, out, base_url=api.url, settings=kw.pop("settings", FAST), today=TODAY,
                 sleep=waits.append, **kw)


def _paths(api) -> list[str]:
    return [p for p, _, _ in api.requests]


def test_fetch_writes_what_build_reads(api, tmp_path):
    result = _fetch(api, tmp_path / "jq")
    files = result.files
    quotes = pl.read_parquet(files["daily_quotes"])
    assert set(quotes["Code"]) == set(CODES)  # the ETF (sector 9999) is not in the universe
    assert quotes.columns == ["Date", "Code", "Open", "High", "Low", "Close", "Volume", "TurnoverValue", "AdjustmentFactor"]
    assert quotes.height == len(CODES) * quotes["Date"].n_unique()  # both pages of every day arrived
    assert any(q.get("pagination_key") for p, q, _ in api.requests if p == "/equities/bars/daily")
    listed = pl.read_csv(files["listed_info"], schema_overrides={"Code": pl.String, "Sector33Code": pl.String})
    assert listed["Sector33CodeName"].null_count() == 0
    filings = read_statements(files["statements"])
    assert set(filings["TypeOfCurrentPeriod"]) == {"3Q"} and filings["CurrentPeriodEndDate"].to_list()[0] == dt.date(2023, 12, 31)
    # the build's own readers accept every file (a real build needs more history than a test fetches)
    q = read_quotes(files["daily_quotes"])
    assert {"close_raw", "basis"} <= set(q.columns) and q["close"].null_count() == 0
    assert read_listed_info(files["listed_info"]).height == len(CODES)
    assert read_index(files["topix"]).height == pl.read_parquet(files["topix"]).height > 0


def test_second_call_is_incremental(api, tmp_path):
    out = tmp_path / "jq"
    _fetch(api, out, end="2024-01-31")
    first = len(api.requests)
    again = _fetch(api, out, end="2024-01-31")
    calls = [p for p, q, _ in api.requests[first:] if "pagination_key" not in q]
    assert len(calls) == 4 and sum(again.fetched.values()) == 0  # one probe per endpoint, nothing else
    second = len(api.requests)
    more = _fetch(api, out, end="2024-02-09")
    days = [q["date"] for p, q, _ in api.requests[second:] if p == "/equities/bars/daily" and "pagination_key" not in q]
    assert sorted(days)[0] > "2024-01-31" and more.reused["daily_quotes"] == 8
    assert pl.read_parquet(out / "daily_quotes.parquet")["Date"].max() == dt.date(2024, 2, 9)


def test_rate_limit_is_retried_with_backoff(api, tmp_path):
    api.rate_limit_once = {"/equities/bars/daily", "/fins/summary"}
    logs, waits = [], []
    _fetch(api, tmp_path / "jq", end="2024-01-24", log=logs.append, waits=waits,
           settings=FetchSettings(retries=2, backoff_seconds=0.5))
    assert sum("rate limited (429)" in line for line in logs) == 2
    assert waits == [3.0, 3.0]  # the server's Retry-After wins over the default backoff
    assert (tmp_path / "jq" / "daily_quotes.parquet").exists()


def test_persistent_errors_back_off_exponentially_then_fail(api, tmp_path):
    api.failing = {"/equities/master"}
    waits = []
    with pytest.raises(FetchError, match="still answers 500 after 4 attempts"):
        _fetch(api, tmp_path / "jq", waits=waits, settings=FetchSettings(retries=3, backoff_seconds=1.0))
    assert waits == [1.0, 2.0, 4.0] and not (tmp_path / "jq").exists()


@pytest.mark.parametrize("case, message", [
    ("rejected key", "rejected the API key (401"),
    ("no key", "no J-Quants API key"),
    ("plan", "financial statements (/fins/summary): your J-Quants plan does not include this data (403"),
    ("empty range", "the date range is empty"),
    ("weekend only", "has no market day"),
    ("bad date", "--to: expected a date"),
])
def test_refusals_are_clear_and_write_nothing(api, tmp_path, case, message):
    kw = {"rejected key": {"key": "wrong-key"}, "no key": {"key": ""}, "plan": {},
          "empty range": {"start": "2024-02-01", "end": "2024-01-01"},
          "weekend only": {"start": "2024-01-06", "end": "2024-01-07"}, "bad date": {"end": "2024-02-30"}}[case]
    if case == "plan":
        api.denied = {"/fins/summary"}
    with pytest.raises(FetchError) as err:
        _fetch(api, tmp_path / "jq", **kw)
    assert message in str(err.value) and KEY not in str(err.value) and "wrong-key" not in str(err.value)
    assert not (tmp_path / "jq").exists()


def test_an_interrupted_run_leaves_whole_parts_and_resumes(api, tmp_path):
    out = tmp_path / "jq"
    api.fail_after = {"/fins/summary": 11}  # the probe and ten days, then an outage
    with pytest.raises(FetchError):
        _fetch(api, out, start="2024-01-15", end="2024-01-31")
    parts = sorted((out / ".parts" / "statements").glob("*.parquet"))
    assert len(parts) == 10 and all(pl.read_parquet(p) is not None for p in parts)
    assert not list(out.rglob("*.tmp")) and not (out / "statements.parquet").exists()
    api.fail_after = {}
    before = len(api.requests)
    result = _fetch(api, out, start="2024-01-15", end="2024-01-31")
    asked = [q["date"] for p, q, _ in api.requests[before:] if p == "/fins/summary"]
    assert result.reused["statements"] == 10 and len(asked) == 1 + result.fetched["statements"]
    assert result.fetched["daily_quotes"] == 0


def test_the_key_is_never_written_or_printed(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JQUANTS_API_KEY", KEY)
    out = tmp_path / "jq"
    api.rate_limit_once, api.retry_after = {"/equities/bars/daily"}, "0"
    assert main(["fetch", "--from", "2024-02-01", "--to", "2024-02-09", "--out", str(out), "--api-url", api.url,
                 "--backoff", "0"]) == 0
    monkeypatch.setenv("JQUANTS_API_KEY", "wrong-key")
    assert main(["fetch", "--from", "2024-01-04", "--to", "2024-01-05", "--out", str(tmp_path / "no"), "--api-url", api.url]) == 2
    printed = capsys.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10 and all(KEY.encode() not in p.read_bytes() for p in files)
    assert KEY not in printed.out + printed.err and "wrong-key" not in printed.err
    assert all(h.get("x-api-key") in (KEY, "wrong-key") for _, _, h in api.requests)  # it was sent, only there


def test_cli_key_from_the_client_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("JQUANTS_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert api_key() == ""
    config = tmp_path / "jq.toml"
    config.write_text('[jquants-api-client]\napi_key = "from-config"\n')
    monkeypatch.setenv("JQUANTS_API_CLIENT_CONFIG_FILE", str(config))
    assert api_key() == "from-config"
    monkeypatch.setenv("JQUANTS_API_KEY", "from-env")
    assert api_key() == "from-env"


def test_days_from_today_on_are_left_for_a_later_call(api, tmp_path):
    out, logs = tmp_path / "jq", []
    fetch(KEY, "2024-02-01", "2024-02-20", out, base_url=api.url, settings=FAST, today=dt.date(2024, 2, 8),
          log=logs.append)
    assert any("fetching up to 2024-02-07" in line for line in logs)
    assert max(p.stem for p in (out / ".parts" / "daily_quotes").glob("*.parquet")) == "2024-02-07"
    assert pl.read_parquet(out / "topix.parquet")["Date"].max() == dt.date(2024, 2, 7)
