"""The alarm change feed: pages of ``alarm_changes`` in (xid, id) order, gap-free.

Only rows written by transactions that have ended are returned: those below the oldest
transaction still running (``pg_snapshot_xmin``). A transaction still open may hold a
lower ``id`` than a committed one, but never an ``xid`` below the horizon, so once a
cursor has passed a position nothing new can appear behind it (sql/007_insurers.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from telematics.insurer.cursor import Position
from telematics.insurer.model import Coverage


@dataclass(frozen=True, slots=True)
class Change:
    position: Position
    change: str
    at: datetime
    alarm: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    changes: list[Change]
    next_position: Position
    has_more: bool


_PAGE = """
SELECT c.xid::text AS xid, c.id, c.change, c.at, c.alarm::text AS alarm
FROM alarm_changes c
WHERE (c.xid, c.id) > ($1::text::xid8, $2::bigint)
  AND c.xid < pg_snapshot_xmin(pg_current_snapshot())
  AND c.vehicle_id = ANY ($3::text[])
  AND EXISTS (SELECT 1 FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[])
                            AS w(vehicle_id, s, e)
              WHERE w.vehicle_id = c.vehicle_id AND c.opened_at >= w.s AND c.opened_at < w.e)
  AND ($6::text[] IS NULL OR c.severity = ANY ($6::text[]))
  AND ($7::text[] IS NULL OR c.kind = ANY ($7::text[]))
  AND ($8::timestamptz IS NULL OR c.opened_at >= $8::timestamptz)
  AND ($9::timestamptz IS NULL OR c.opened_at < $9::timestamptz)
ORDER BY c.xid, c.id
LIMIT $10
"""

# The last position below the horizon: a page that came back short has seen everything up
# to it, so the cursor may move there (no rescan of rows the filters skipped).
_TAIL = """
SELECT c.xid::text AS xid, c.id FROM alarm_changes c
WHERE c.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY c.xid DESC, c.id DESC LIMIT 1
"""


async def read_page(
    conn: asyncpg.Connection,
    after: Position,
    coverage: Coverage,
    *,
    limit: int,
    severities: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    """Up to ``limit`` changes after ``after`` of alarms the coverage opens (by the alarm's
    ``opened_at``), filtered; both statements see one snapshot."""
    vehicles, starts, ends = coverage.sql_arrays()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            _PAGE,
            str(after.xid),
            after.id,
            vehicles,
            starts,
            ends,
            list(severities) if severities else None,
            list(kinds) if kinds else None,
            since,
            until,
            limit,
        )
        tail = None if len(rows) == limit else await conn.fetchrow(_TAIL)
    changes = [
        Change(Position(int(r["xid"]), r["id"]), r["change"], r["at"], orjson.loads(r["alarm"]))
        for r in rows
    ]
    nxt = changes[-1].position if changes else after
    if tail is not None:
        nxt = max(nxt, Position(int(tail["xid"]), tail["id"]))
    return Page(changes, nxt, len(rows) == limit)
