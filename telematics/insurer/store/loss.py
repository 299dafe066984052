"""Interventions of a loss-control report: delivery times and recurrence by behaviour,
over the vehicles and periods an insurer's coverage opens. The recurrence rule and its
SQL are the interventions report's (telematics/report/recurrence.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.insurer.model import Coverage
from telematics.report.interventions import DELIVERED_STATUSES
from telematics.report.recurrence import (
    LONG_WINDOW,
    SHORT_WINDOW,
    MaxGap,
    first_recurrence_sql,
    recurred_sql,
    recurrence_args,
)

_long = f"interval '{int(LONG_WINDOW.total_seconds())} seconds'"
_UNFROZEN_AND_CLOSED = f"o.intervention_id IS NULL AND i.issued_at + {_long} <= $6"

_SQL = f"""
WITH base AS (
    SELECT i.cause_kind AS kind,
           extract(epoch FROM d.at - i.issued_at)::float8 AS delivery_s,
           CASE WHEN o.intervention_id IS NOT NULL THEN o.recurred_10m
                WHEN i.issued_at + {_long} <= $6 THEN {recurred_sql(SHORT_WINDOW)} END AS r10,
           CASE WHEN o.intervention_id IS NOT NULL THEN o.recurred_30m
                WHEN i.issued_at + {_long} <= $6 THEN {recurred_sql(LONG_WINDOW)} END AS r30
    FROM interventions i
    JOIN alarms a0 ON a0.id = i.alarm_id
    LEFT JOIN intervention_outcomes o ON o.intervention_id = i.id
    LEFT JOIN LATERAL (
        SELECT min(s.at) AS at FROM intervention_status s
        WHERE s.intervention_id = i.id AND s.status = ANY ($7::text[])) d ON true
    CROSS JOIN LATERAL ({first_recurrence_sql(8, _UNFROZEN_AND_CLOSED)}) r
    WHERE i.vehicle_id = ANY ($1::text[]) AND i.issued_at >= $4 AND i.issued_at < $5
      AND EXISTS (SELECT 1 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                  AS w(vehicle_id, s, e)
                  WHERE w.vehicle_id = i.vehicle_id AND i.issued_at >= w.s
                    AND i.issued_at < w.e))
SELECT kind, count(*)::int AS interventions, count(delivery_s)::int AS delivered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_s) AS median_delivery_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY delivery_s) AS p90_delivery_s,
       count(r30)::int AS evaluated,
       (count(*) FILTER (WHERE r10))::int AS recurred_10m,
       (count(*) FILTER (WHERE r30))::int AS recurred_30m,
       grouping(kind) = 1 AS overall
FROM base GROUP BY GROUPING SETS ((kind), ())
ORDER BY overall, kind
"""


@dataclass(frozen=True, slots=True)
class InterventionRow:
    kind: str | None  # None: every kind
    interventions: int
    delivered: int
    median_delivery_s: float | None
    p90_delivery_s: float | None
    evaluated: int
    recurred_10m: int
    recurred_30m: int


async def interventions(
    conn: asyncpg.Connection,
    coverage: Coverage,
    since: datetime,
    until: datetime,
    now: datetime,
    max_gap: MaxGap,
) -> list[InterventionRow]:
    vehicles, starts, ends = coverage.sql_arrays()
    rows = await conn.fetch(
        _SQL,
        vehicles,
        starts,
        ends,
        since,
        until,
        now,
        list(DELIVERED_STATUSES),
        *recurrence_args(max_gap),
    )
    return [
        InterventionRow(
            None if r["overall"] else r["kind"],
            r["interventions"],
            r["delivered"],
            r["median_delivery_s"],
            r["p90_delivery_s"],
            r["evaluated"],
            r["recurred_10m"],
            r["recurred_30m"],
        )
        for r in rows
    ]
