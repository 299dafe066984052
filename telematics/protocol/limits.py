"""The limits protocol v1 puts on an item's fields, shared by both decoding paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_BATCH_ITEMS = 1000
MAX_FUTURE = timedelta(minutes=5)
OLDEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_SEQ = 2**63 - 1
MAX_SPEED_KMH = 500.0  # anything faster is a broken sensor, not a vehicle
MAX_TIRES = 32
MAX_ID_LEN = 64
MAX_ATTRS_BYTES = 16 * 1024
MAX_HEADING_DEG = 360.0
MAX_ODOMETER_KM = 1e8
TIRE_KPA = (0.0, 3000.0)
TIRE_TEMP_C = (-60.0, 250.0)
TIRE_BATTERY_PCT = (0.0, 100.0)

TIRE_POS = re.compile(r"[1-9][0-9]?[LR][OI]?\Z")  # axle + L/R (+ O/I), e.g. 1L or 2RO


def ts_problem(ts: datetime, latest: datetime) -> str | None:
    """Why a parsed ``ts`` is refused, or None (``latest``: the server's now + MAX_FUTURE)."""
    if ts.tzinfo is None:
        return "needs a UTC offset (e.g. Z or +08:00)"
    if ts > latest:
        return "more than 5 minutes ahead of the server's clock"
    if ts < OLDEST_TS:
        return "before the year 2000"
    return None


def json_blob_problem(value: dict[str, Any]) -> str | None:
    """Why a free-form object (``attrs``, extra fields) cannot be stored, or None."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:  # deeper than orjson writes (255 levels), which it reads
        return "nested too deeply to store"
    if len(encoded) > MAX_ATTRS_BYTES:
        return f"at most {MAX_ATTRS_BYTES} bytes of JSON"
    if b"\\u0000" in encoded:
        return "must not contain NUL characters"  # PostgreSQL's jsonb refuses them
    return None
