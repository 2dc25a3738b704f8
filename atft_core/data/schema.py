"""Column names, metadata layout and the column checks shared by build and validate.

The model-ready parquet (see docs/data.md) has `Code`, `Date`, `Sector33Code`, `raw_ret_1d`,
`feat_*` (float32) and `target_{h}d` (float64), sorted by (Date, Code), with JSON metadata under
the key `atft`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError

FORMAT_VERSION = 1
META_KEY = "atft"
FEATURE_PREFIX = "feat_"
TARGET_PREFIX = "target_"
CODE, DATE, SECTOR, RAW_RET = "Code", "Date", "Sector33Code", "raw_ret_1d"
DEFAULT_HORIZONS = (1, 5, 10, 20)

QUOTE_ADJUSTED = (
    "Date", "Code", "AdjustmentOpen", "AdjustmentHigh", "AdjustmentLow",
    "AdjustmentClose", "AdjustmentVolume",
)
"""Split-adjusted quotes, as in the shared real data (TurnoverValue is optional)."""
QUOTE_RAW = ("Date", "Code", "Open", "High", "Low", "Close", "Volume", "AdjustmentFactor")
"""Unadjusted quotes as the J-Quants API returns them; adjusted here by AdjustmentFactor."""
QUOTE_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
LISTED_REQUIRED = ("Code", "Sector33Code")
INDEX_REQUIRED = ("Date", "Close")


def target_name(horizon: int) -> str:
    """`target_{h}d`, the forward-return column of horizon h."""
    return f"{TARGET_PREFIX}{horizon}d"


def parse_target_horizon(name: str) -> int | None:
    """5 for 'target_5d'; None for anything else."""
    if name.startswith(TARGET_PREFIX) and name.endswith("d"):
        body = name[len(TARGET_PREFIX):-1]
        if body.isdigit():
            return int(body)
    return None


def suggest(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'X'?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    if not match:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            match = [lowered[name.lower()]]
    return f" (did you mean {match[0]!r}?)" if match else ""


def require_columns(present: Sequence[str], required: Iterable[str], where: str) -> None:
    """Raise DataError naming every missing column and its closest present spelling."""
    missing = [c for c in required if c not in present]
    if missing:
        parts = [f"{c!r}{suggest(c, present)}" for c in missing]
        raise DataError(
            f"{where}: missing required column(s) {', '.join(parts)}; "
            f"columns present: {', '.join(present)}"
        )


def read_metadata(path: Path) -> dict[str, Any]:
    """The `atft` JSON metadata of a dataset parquet (DataError if absent or unreadable)."""
    import pyarrow.parquet as pq

    try:
        kv = pq.read_metadata(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
    raw = kv.get(META_KEY.encode())
    if raw is None:
        raise DataError(
            f"{path}: no '{META_KEY}' metadata; this file was not written by "
            "`python -m atft_core.data build` (rebuild it from the raw quotes)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: '{META_KEY}' metadata is not valid JSON ({exc})") from exc
    for key in ("feature_names", "horizons"):
        if key not in meta:
            raise DataError(f"{path}: '{META_KEY}' metadata lacks {key!r}")
    return meta
