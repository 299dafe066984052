"""``report interventions``: delivery and recurrence by kind, severity and action.

One row per (kind, severity, action) of the interventions issued in ``[since, until)``,
plus an overall row (``kind``, ``severity`` and ``action`` None), in one query:

- ``delivered``: interventions the cab confirmed receiving, i.e. with an
  ``intervention_status`` row ``delivered`` (or a later step, ``played`` /
  ``driver_confirmed``, should a unit skip it); ``median_delivery_s`` from ``issued_at``
  to the first such row.
- ``evaluated``: interventions whose 30-minute window has closed by ``now``; the
  recurrence counts and rates are over these only, so an intervention issued a minute
  ago is not counted as "did not recur". Their outcome is the frozen one in
  ``intervention_outcomes`` when there is one, otherwise computed on the spot with the
  same rule (:mod:`telematics.report.recurrence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from telematics.errors import UsageError
from telematics.report.recurrence import (
    DEFAULT_MAX_GAP,
    LONG_WINDOW,
    SHORT_WINDOW,
    MaxGap,
    first_recurrence_sql,
    recurred_sql,
    recurrence_args,
)

#: Statuses that mean the cab received the intervention (in protocol order).
DELIVERED_STATUSES = ("delivered", "played", "driver_confirmed")

_long = f"interval '{int(LONG_WINDOW.total_seconds())} seconds'"
# Compute the outcome on the spot only when none is frozen and the window has closed.
_UNFROZEN_AND_CLOSED = f"o.intervention_id IS NULL AND i.issued_at + {_long} <= $4"


@dataclass(frozen=True, slots=True)
class Row:
    kind: str | None  # None in the overall row
    severity: str | None
    action: str | None
    interventions: int
    delivered: int
    median_delivery_s: float | None  # None when nothing was delivered
    evaluated: int  # interventions whose 30-minute window has closed
    recurred_10m: int
    recurred_30m: int

    @property
    def overall(self) -> bool:
        return self.kind is None

    @property
    def delivered_share(self) -> float | None:
        return self.delivered / self.interventions if self.interventions else None

    @property
    def recurrence_rate_10m(self) -> float | None:
        return self.recurred_10m / self.evaluated if self.evaluated else None

    @property
    def recurrence_rate_30m(self) -> float | None:
        return self.recurred_30m / self.evaluated if self.evaluated else None


_SQL = f"""
WITH base AS (
    SELECT i.cause_kind AS kind, i.severity, i.action,
           extract(epoch FROM d.at - i.issued_at)::float8 AS delivery_s,
           CASE WHEN o.intervention_id IS NOT NULL THEN o.recurred_10m
                WHEN i.issued_at + {_long} <= $4 THEN {recurred_sql(SHORT_WINDOW)} END AS r10,
           CASE WHEN o.intervention_id IS NOT NULL THEN o.recurred_30m
                WHEN i.issued_at + {_long} <= $4 THEN {recurred_sql(LONG_WINDOW)} END AS r30
    FROM interventions i
    JOIN alarms a0 ON a0.id = i.alarm_id
    JOIN vehicles v ON v.id = i.vehicle_id
    LEFT JOIN intervention_outcomes o ON o.intervention_id = i.id
    LEFT JOIN LATERAL (
        SELECT min(s.at) AS at FROM intervention_status s
        WHERE s.intervention_id = i.id AND s.status = ANY($5::text[])) d ON true
    CROSS JOIN LATERAL ({first_recurrence_sql(6, _UNFROZEN_AND_CLOSED)}) r
    WHERE i.issued_at >= $1 AND i.issued_at < $2
      AND ($3::text IS NULL OR v.fleet_id = $3::text)
)
SELECT kind, severity, action,
       count(*) AS interventions,
       count(delivery_s) AS delivered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_s) AS median_delivery_s,
       count(r30) AS evaluated,
       count(*) FILTER (WHERE r10) AS recurred_10m,
       count(*) FILTER (WHERE r30) AS recurred_30m,
       grouping(kind, severity, action) AS overall
FROM base
GROUP BY GROUPING SETS ((kind, severity, action), ())
ORDER BY overall, kind,
         array_position(ARRAY['general', 'moderate', 'severe'], severity), severity, action
"""


async def report_interventions(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime,
    fleet: str | None = None,
    *,
    now: datetime | None = None,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
) -> list[Row]:
    """Interventions issued in ``[since, until)`` (of one fleet if given), grouped; the
    overall row comes last and is present even when there were no interventions."""
    if since.tzinfo is None or until.tzinfo is None:
        raise UsageError("report_interventions: since and until must be timezone-aware")
    if until <= since:
        raise UsageError(f"report_interventions: until ({until}) must be after since ({since})")
    rows = await conn.fetch(
        _SQL,
        since,
        until,
        fleet,
        now or datetime.now(UTC),
        list(DELIVERED_STATUSES),
        *recurrence_args(max_gap),
    )
    return [
        Row(
            kind=r["kind"] if not r["overall"] else None,
            severity=r["severity"] if not r["overall"] else None,
            action=r["action"] if not r["overall"] else None,
            interventions=r["interventions"],
            delivered=r["delivered"],
            median_delivery_s=r["median_delivery_s"],
            evaluated=r["evaluated"],
            recurred_10m=r["recurred_10m"],
            recurred_30m=r["recurred_30m"],
        )
        for r in rows
    ]
