"""A J-Quants API v2 stand-in on 127.0.0.1 for the fetch tests: the real client talks to it.

It answers the four endpoints `fetch` uses in the API's JSON shapes (field names from the
client's own constants, `{"data": [...], "pagination_key": ...}` pages, `{"message": ...}`
errors), checks the `x-api-key` header (401 otherwise), and can be told to answer 429 once per
path, 403 (not in the plan) or 500 for a path. Every request is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from jquantsapi import constants

CODES = {"13010": ("0050", "1"), "72030": ("3700", "6"), "99840": ("5250", "10")}
ETF = "13050"
"""Listed with 33-sector code 9999 (not a stock): fetch leaves it out of the universe."""
HOLIDAYS = {dt.date(2024, 1, 8)}
PAGE = 2
"""Records per page: every bar day comes in two pages."""


@dataclass
class FakeJQuants:
    key: str
    rate_limit_once: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    retry_after: str = "3"
    """Retry-After of a 429 answer, in seconds."""
    fail_after: dict[str, int] = field(default_factory=dict)
    """path -> answer 500 once this many requests to it have succeeded (an outage mid-run)."""
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)
    _limited: set[str] = field(default_factory=set)

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                fake.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v2"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def data_requests(self) -> list[str]:
        return [p for p, q, _ in self.requests]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        path, query = url.path.removeprefix("/v2"), {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((path, query, dict(h.headers)))
        if h.headers.get("x-api-key") != self.key:
            return _send(h, 401, {"message": "The incoming token is invalid or expired."})
        if path in self.denied:
            return _send(h, 403, {"message": "This API is not available on your subscription plan."})
        served = sum(1 for p, _, _ in self.requests[:-1] if p == path)
        if path in self.failing or served >= self.fail_after.get(path, served + 1):
            return _send(h, 500, {"message": "Internal Server Error"})
        if path in self.rate_limit_once and path not in self._limited:
            self._limited.add(path)
            return _send(h, 429, {"message": "Too Many Requests"}, {"Retry-After": self.retry_after})
        rows = {"/equities/master": _master, "/equities/bars/daily": _bars, "/indices/bars/daily/topix": _topix,
                "/fins/summary": _summary}.get(path)
        if rows is None:
            return _send(h, 404, {"message": f"no endpoint {path}"})
        data = rows(query)
        start = int(query.get("pagination_key", "0"))
        page = {"data": data[start:start + PAGE]}
        if start + PAGE < len(data):
            page["pagination_key"] = str(start + PAGE)
        _send(h, 200, page)


def _send(h: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
    raw = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(raw)


def _day(query: dict) -> dt.date:
    return dt.date.fromisoformat(query["date"])


def _open(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


def _blank(columns: list[str]) -> dict:
    return dict.fromkeys(columns, "")


def _master(query: dict) -> list[dict]:
    rows = [_blank(constants.EQ_MASTER_COLUMNS_V2) | {"Date": query.get("date", ""), "Code": code, "CoName": f"銘柄{code}",
                                                       "CoNameEn": f"Company {code}", "S17": s17, "S33": s33}
            for code, (s33, s17) in CODES.items()]
    return rows + [_blank(constants.EQ_MASTER_COLUMNS_V2) | {"Code": ETF, "S33": "9999", "S17": "99"}]


def _price(code: str, day: dt.date) -> float:
    return 1000.0 + int(code[:4]) % 97 + day.toordinal() % 13


def _bars(query: dict) -> list[dict]:
    day = _day(query)
    if not _open(day):
        return []
    rows = []
    for code in [*CODES, ETF]:
        close = _price(code, day)
        rows.append({"Date": day.isoformat(), "Code": code, "O": close - 5, "H": close + 10, "L": close - 10, "C": close,
                     "UL": "0", "LL": "0", "Vo": 10000.0 + day.day, "Va": close * 10000.0, "AdjFactor": 1.0,
                     "AdjO": close - 5, "AdjH": close + 10, "AdjL": close - 10, "AdjC": close, "AdjVo": 10000.0})
    return rows


def _topix(query: dict) -> list[dict]:
    first, last = dt.date.fromisoformat(query["from"]), dt.date.fromisoformat(query["to"])
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [{"Date": d.isoformat(), "O": 2500.0, "H": 2520.0, "L": 2490.0, "C": 2500.0 + d.toordinal() % 17}
            for d in days if _open(d)]


def _summary(query: dict) -> list[dict]:
    """Each stock files on the 4th weekday of some months (a quarterly rhythm), at 15:00."""
    day = _day(query)
    if not _open(day) or day.month not in (2, 5, 8, 11) or not 4 <= day.day <= 6:
        return []
    quarter = {2: "3Q", 5: "FY", 8: "1Q", 11: "2Q"}[day.month]
    end = {2: f"{day.year - 1}-12-31", 5: f"{day.year}-03-31", 8: f"{day.year}-06-30", 11: f"{day.year}-09-30"}[day.month]
    rows = []
    for i, code in enumerate(CODES):
        ytd = 100.0 * (1 + i) * {"1Q": 1, "2Q": 2, "3Q": 3, "FY": 4}[quarter]
        rows.append(_blank(constants.FIN_SUMMARY_COLUMNS_V2) | {
            "DiscDate": day.isoformat(), "DiscTime": "15:00:00", "Code": code, "DiscNo": f"{day:%Y%m%d}{i:04d}",
            "DocType": "FYFinancialStatements_Consolidated_JP", "CurPerType": quarter, "CurPerEn": end,
            "NP": str(ytd * 1e6), "EPS": str(ytd), "BPS": "900.5" if quarter == "FY" else "",
            "FDivAnn": "" if quarter == "FY" else "30", "NxFDivAnn": "32" if quarter == "FY" else ""})
    return rows
