"""J-Quants API v2 -> the files `build` reads: `python -m atft_core.data fetch` (docs/data.md).

Through the official client (`jquantsapi.ClientV2`, pinned in requirements.txt):
- `listed_info.csv`   the listed-issue master as of `--to` (the universe: every issue with a
                      33-sector code, or `codes`), with sector names;
- `daily_quotes.parquet`  daily bars of the universe, in the unadjusted API form (Open..Close,
                      Volume, TurnoverValue, AdjustmentFactor): raw prices never change, so bars
                      fetched on different days stay on one basis (adjusted ones would not);
- `topix.parquet`     TOPIX daily OHLC;
- `statements.parquet`  financial statements (J-Quants `statements` names).

Incremental: bars and statements are fetched one market day at a time (TOPIX one month at a
time) into `DIR/.parts/`, each part written to a temp file and renamed; a part that exists is
never fetched again, so a second call, or a call after an interruption, fetches only what is
missing. The output files are then assembled from the parts (temp + rename). Rate limits and
server errors are retried with exponential backoff (honouring Retry-After). Before anything is
written every endpoint is probed once, so a missing or rejected key, a plan without an endpoint,
or an empty date range fails with a clear error and leaves DIR untouched.

The API key is a parameter: it is sent to the API and nowhere else (never written, logged or
put in an error message; the CLI reads it from JQUANTS_API_KEY or the client's config file).
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .errors import DataError

FIELDS: dict[str, dict[str, str]] = {
    "listed_info": {"Code": "Code", "CoNameEn": "CompanyName", "S17": "Sector17Code", "S33": "Sector33Code",
                    "S33NmEn": "Sector33CodeName"},
    "daily_quotes": {"Date": "Date", "Code": "Code", "O": "Open", "H": "High", "L": "Low", "C": "Close",
                     "Vo": "Volume", "Va": "TurnoverValue", "AdjFactor": "AdjustmentFactor"},
    "topix": {"Date": "Date", "O": "Open", "H": "High", "L": "Low", "C": "Close"},
    "statements": {"DiscDate": "DisclosedDate", "DiscTime": "DisclosedTime", "Code": "LocalCode",
                   "DiscNo": "DisclosureNumber", "CurPerType": "TypeOfCurrentPeriod",
                   "CurPerEn": "CurrentPeriodEndDate", "NP": "Profit", "EPS": "EarningsPerShare",
                   "BPS": "BookValuePerShare", "FDivAnn": "ForecastDividendPerShareAnnual",
                   "NxFDivAnn": "NextYearForecastDividendPerShareAnnual"},
}
"""THE mapping of API v2 field names to the names `build` reads, per output file (docs/data.md)."""
TEXT_FIELDS = {"Code", "CompanyName", "Sector17Code", "Sector33Code", "Sector33CodeName", "LocalCode",
               "DisclosedTime", "DisclosureNumber", "TypeOfCurrentPeriod"}
DATE_FIELDS = {"Date", "DisclosedDate", "CurrentPeriodEndDate"}
OTHER_SECTOR = "9999"
"""33-sector code of issues outside the 33 sectors (ETFs, REITs, ...): not in the universe."""
FILES = {"listed_info": "listed_info.csv", "daily_quotes": "daily_quotes.parquet", "topix": "topix.parquet",
         "statements": "statements.parquet"}
PARTS = ".parts"
PROGRESS_EVERY = 20
"""A progress line every this many parts (and after the last)."""


class FetchError(DataError):
    """The API refused or failed (key, plan, network, date range); nothing was left half-written."""


@dataclass(frozen=True)
class FetchSettings:
    """How hard to try (the CLI's options; defaults suit the API's published rate limits)."""

    retries: int = 6
    """Attempts after the first for a rate-limited (429) or failing (5xx, network) request."""
    backoff_seconds: float = 2.0
    """Wait before the first retry; doubled after each (unless the server says Retry-After)."""
    max_backoff_seconds: float = 120.0
    """Longest single wait."""

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise FetchError(f"--retries {self.retries!r}: must be a whole number >= 0")
        for name in ("backoff_seconds", "max_backoff_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise FetchError(f"{name} {value!r}: must be a finite number >= 0")


def default_api_url() -> str:
    """The API base URL the official client uses."""
    from jquantsapi import ClientV2

    return ClientV2.JQUANTS_API_BASE


def market_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays from start to end (holidays are asked too; their parts are simply empty)."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return [d for d in days if d.weekday() < 5]


class _Api:
    """The client's calls with retries, backoff and errors that say what to do (never the key)."""

    def __init__(self, api_key: str, base_url: str | None, settings: FetchSettings, say: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep):
        from jquantsapi import ClientV2

        if not api_key:
            raise FetchError("no J-Quants API key: set JQUANTS_API_KEY, put api_key under [jquants-api-client] in "
                             "~/.jquants-api/jquants-api.toml, or type it on the Data page")
        self._key, self._settings, self._say, self._sleep = api_key, settings, say, sleep
        self.client = ClientV2(api_key=api_key)
        if base_url:
            self.client.JQUANTS_API_BASE = base_url.rstrip("/")

    def call(self, what: str, method: str, **params: Any) -> pl.DataFrame:
        """`client.<method>(**params)` as a polars frame, retried on 429 / 5xx / network errors."""
        import requests

        wait = self._settings.backoff_seconds
        for attempt in range(self._settings.retries + 1):
            try:
                result = getattr(self.client, method)(**params)
                frame = result[0] if isinstance(result, tuple) else result
                return pl.from_pandas(frame) if len(frame.columns) else pl.DataFrame()
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status != 429 and status < 500:
                    raise FetchError(self._refusal(what, status, exc)) from None
                told = _retry_after(exc.response)
                delay = wait if told is None else told
            except requests.RequestException as exc:
                status, delay = 0, wait
                if attempt == self._settings.retries:
                    raise FetchError(f"{what}: cannot reach {self.client.JQUANTS_API_BASE} "
                                     f"({self._clean(type(exc).__name__)})") from None
            if attempt == self._settings.retries:
                raise FetchError(f"{what}: the API still answers {status} after {attempt + 1} attempts; try again later")
            delay = min(delay, self._settings.max_backoff_seconds)
            reason = "rate limited (429)" if status == 429 else f"error {status or 'network'}"
            self._say(f"    {what}: {reason}, retrying in {delay:g} s ({attempt + 1}/{self._settings.retries})")
            self._sleep(delay)
            wait = min(wait * 2, self._settings.max_backoff_seconds)
        raise AssertionError("unreachable")

    def _refusal(self, what: str, status: int, exc: Exception) -> str:
        detail = self._clean(_body_message(exc))
        if status == 401:
            return f"{what}: the J-Quants API rejected the API key (401 {detail}); check the key on the J-Quants dashboard"
        if status == 403:
            return f"{what}: your J-Quants plan does not include this data (403 {detail})"
        return f"{what}: the J-Quants API refused the request ({status} {detail})"

    def _clean(self, text: str) -> str:
        """Text for a message, with the key blanked should a server ever echo it."""
        return text.replace(self._key, "***") if self._key else text


def _retry_after(response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except (AttributeError, TypeError, ValueError):
        return None


def _body_message(exc: Exception) -> str:
    try:
        return str(exc.response.json().get("message", "")).strip()[:200]
    except Exception:  # not JSON: the status says enough
        return ""


def _to_build_names(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """API fields -> build names (FIELDS), typed: text, dates and numbers ('' -> null)."""
    fields = {k: v for k, v in FIELDS[kind].items() if k in frame.columns}
    if not frame.height:
        return pl.DataFrame(schema={v: _dtype(v) for v in FIELDS[kind].values()})
    out = frame.select(pl.col(k).alias(v) for k, v in fields.items())
    missing = [v for v in FIELDS[kind].values() if v not in out.columns]
    out = out.with_columns(pl.lit(None).alias(v) for v in missing)
    return out.select(_typed(v, out.schema[v]) for v in FIELDS[kind].values())


def _dtype(name: str) -> pl.DataType:
    return pl.String if name in TEXT_FIELDS else pl.Date if name in DATE_FIELDS else pl.Float64


def _typed(name: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(name)
    if name in TEXT_FIELDS:
        return c.cast(pl.String).str.strip_chars().replace("", None).alias(name)
    if name in DATE_FIELDS:
        if isinstance(dtype, pl.Datetime):
            return c.dt.date().alias(name)
        return c.cast(pl.String).str.slice(0, 10).str.to_date(strict=False).alias(name)
    if dtype == pl.String:
        return c.str.strip_chars().cast(pl.Float64, strict=False).alias(name)
    return c.cast(pl.Float64).alias(name)


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write to a temp name beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class FetchResult:
    """What `fetch` did: output paths and how many parts were fetched now vs found in DIR."""

    files: dict[str, Path]
    fetched: dict[str, int]
    reused: dict[str, int]

    def to_text(self) -> str:
        lines = [f"{kind:12s} {path}  (fetched {self.fetched.get(kind, 0)}, already there {self.reused.get(kind, 0)})"
                 for kind, path in self.files.items()]
        return "\n".join(lines)


def fetch(api_key: str, start: str, end: str, out: str | Path, codes: tuple[str, ...] = (),
          base_url: str | None = None, settings: FetchSettings = FetchSettings(),
          log: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep,
          today: dt.date | None = None) -> FetchResult:
    """Fetch what `out` lacks for [start, end] and (re)assemble the files `build` reads there.

    Days from `today` on are not fetched: their data may not be published yet, and a part, once
    stored, is never fetched again."""
    say = log or (lambda _m: None)
    first, last = _date(start, "--from"), _date(end, "--to")
    if first > last:
        raise FetchError(f"--from {first} is after --to {last}: the date range is empty")
    today = today or dt.date.today()
    if last >= today:
        last = today - dt.timedelta(days=1)
        say(f"--to {end}: fetching up to {last} (later data may not be published yet)")
    days = market_days(first, last) if first <= last else []
    if not days:
        raise FetchError(f"no weekday between --from {first} and --to {last}: the date range has no market day")
    api = _Api(api_key, base_url, settings, say, sleep)
    out = Path(out)
    say(f"checking the key and the plan against {api.client.JQUANTS_API_BASE}")
    master = _probe(api, days)
    universe = _universe(master, codes)
    result = FetchResult(files={}, fetched={}, reused={})
    _fetch_days(api, out, "daily_quotes", "get_eq_bars_daily", days, result, say)
    _fetch_days(api, out, "statements", "get_fin_summary_cursor", days, result, say)
    _fetch_topix(api, out, first, last, today, result, say)
    say("assembling the output files")
    _write_atomic(universe, out / FILES["listed_info"])
    result.files["listed_info"] = out / FILES["listed_info"]
    codes_kept = universe["Code"].implode()
    for kind, key in (("daily_quotes", "Code"), ("statements", "LocalCode"), ("topix", None)):
        frame = _assemble(out, kind, first, last)
        if key:
            frame = frame.filter(pl.col(key).is_in(codes_kept))
        _write_atomic(frame, out / FILES[kind])
        result.files[kind] = out / FILES[kind]
        say(f"    {FILES[kind]}: {frame.height} rows")
    return result


def _date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise FetchError(f"{option}: expected a date YYYY-MM-DD, got {text!r}") from None


def _probe(api: _Api, days: list[dt.date]) -> pl.DataFrame:
    """One request per endpoint before anything is written; returns the listed master."""
    master = api.call("listed issues (/equities/master)", "get_eq_master", date=days[-1].isoformat())
    if master.height == 0:
        raise FetchError(f"listed issues (/equities/master): no issue listed on {days[-1]}; "
                         "choose a --to within your plan's dates")
    api.call("daily bars (/equities/bars/daily)", "get_eq_bars_daily", date_yyyymmdd=days[-1].isoformat())
    api.call("financial statements (/fins/summary)", "get_fin_summary_cursor", date_yyyymmdd=days[-1].isoformat())
    api.call("TOPIX (/indices/bars/daily/topix)", "get_idx_bars_daily_topix",
             from_yyyymmdd=days[-1].isoformat(), to_yyyymmdd=days[-1].isoformat())
    return master


def _universe(master: pl.DataFrame, codes: tuple[str, ...]) -> pl.DataFrame:
    """Listed info in build names: every issue in a 33-sector, or just `codes`; English sector names."""
    from jquantsapi import constants

    names = pl.DataFrame(constants.SECTOR_33_DATA, schema=constants.SECTOR_33_COLUMNS_V2, orient="row")
    master = master.join(names.select("S33", "S33NmEn"), on="S33", how="left") if "S33" in master.columns else master
    listed = _to_build_names(master, "listed_info").unique("Code", keep="last").sort("Code")
    listed = listed.filter(pl.col("Sector33Code") != OTHER_SECTOR)
    if codes:
        unknown = sorted(set(codes) - set(listed["Code"]))
        if unknown:
            raise FetchError(f"--codes: {len(unknown)} code(s) not in the listed master: {unknown[:5]}")
        listed = listed.filter(pl.col("Code").is_in(list(codes)))
    return listed


def _part(out: Path, kind: str, name: str) -> Path:
    return out / PARTS / kind / f"{name}.parquet"


def _fetch_days(api: _Api, out: Path, kind: str, method: str, days: list[dt.date], result: FetchResult,
                say: Callable[[str], None]) -> None:
    todo = [d for d in days if not _part(out, kind, d.isoformat()).exists()]
    result.reused[kind] = len(days) - len(todo)
    result.fetched[kind] = len(todo)
    say(f"{kind}: {len(todo)} of {len(days)} day(s) to fetch")
    for i, day in enumerate(todo, 1):
        frame = _to_build_names(api.call(f"{kind} {day}", method, date_yyyymmdd=day.isoformat()), kind)
        _write_atomic(frame, _part(out, kind, day.isoformat()))
        if i % PROGRESS_EVERY == 0 or i == len(todo):
            say(f"    {kind}: {i} of {len(todo)} day(s) fetched (up to {day}, {frame.height} rows that day)")


def _months(first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    out, day = [], first.replace(day=1)
    while day <= last:
        end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
        out.append((day, end))
        day = end + dt.timedelta(days=1)
    return out


def _fetch_topix(api: _Api, out: Path, first: dt.date, last: dt.date, today: dt.date, result: FetchResult,
                 say: Callable[[str], None]) -> None:
    """One part per month; a month is complete once fetched after it ended (else refetched)."""
    months = _months(first, last)
    todo = [(a, b) for a, b in months if not _part(out, "topix", _month_name(a, b, today)).exists()]
    result.reused["topix"], result.fetched["topix"] = len(months) - len(todo), len(todo)
    say(f"topix: {len(todo)} of {len(months)} month(s) to fetch")
    for i, (a, b) in enumerate(todo, 1):
        frame = api.call(f"TOPIX {a:%Y-%m}", "get_idx_bars_daily_topix", from_yyyymmdd=a.isoformat(),
                         to_yyyymmdd=min(b, last).isoformat())
        _write_atomic(_to_build_names(frame, "topix"), _part(out, "topix", _month_name(a, b, today)))
        if i % PROGRESS_EVERY == 0 or i == len(todo):
            say(f"    topix: {i} of {len(todo)} month(s) fetched (up to {a:%Y-%m})")


def _month_name(first: dt.date, last: dt.date, today: dt.date) -> str:
    """A finished month is stored as 'YYYY-MM'; the running one under today's date, so that a
    later call fetches it again."""
    return f"{first:%Y-%m}" if last < today else f"{first:%Y-%m}_to_{(today - dt.timedelta(days=1)).isoformat()}"


def _assemble(out: Path, kind: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Every part of `kind` in DIR (earlier calls' too), deduplicated, sorted."""
    parts = sorted((out / PARTS / kind).glob("*.parquet"))
    frame = pl.concat([pl.read_parquet(p) for p in parts], how="vertical_relaxed") if parts else _to_build_names(
        pl.DataFrame(), kind)
    if kind == "statements":
        return frame.unique(keep="last", maintain_order=True).sort("DisclosedDate", "DisclosedTime", "LocalCode",
                                                                 nulls_last=True)
    keys = ["Code", "Date"] if kind == "daily_quotes" else ["Date"]
    return frame.unique(keys, keep="last", maintain_order=True).sort(keys)
