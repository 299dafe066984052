"""What risk scores and reports rest on: driven distance and time, and alarms, per
vehicle and driver, over the periods an insurer's coverage opens.

Distance: the great-circle length between consecutive fixes of a vehicle at most
``gap_s`` apart (a longer gap is a hole in the data, not a straight drive). Driving time:
those segments whose later fix is at ``min_kmh`` or faster. A segment belongs to the
driver of its later fix. An alarm belongs to the driver of the item that opened it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.insurer.model import Coverage

# Coverage windows clipped to [since, until); overlapping policies must not count twice,
# so rows are filtered with EXISTS instead of joined.
_IN_WINDOW = """EXISTS (SELECT 1 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                        AS w(vehicle_id, s, e)
                        WHERE w.vehicle_id = {alias}.vehicle_id
                          AND {ts} >= w.s AND {ts} < w.e)"""

_EXPOSURE = f"""
WITH fixes AS (
    SELECT t.vehicle_id, t.driver_id, t.ts, t.speed_kmh, t.lat, t.lon,
           lag(t.ts) OVER w AS pts, lag(t.lat) OVER w AS plat, lag(t.lon) OVER w AS plon
    FROM (SELECT DISTINCT unnest($1::text[]) AS vehicle_id) v
    CROSS JOIN LATERAL telemetry_seq_range(v.vehicle_id, $4, $5) r
    JOIN telemetry t ON t.vehicle_id = v.vehicle_id AND t.seq >= r.lo AND t.seq < r.hi
    WHERE t.ts >= $4 AND t.ts < $5
      AND {_IN_WINDOW.format(alias="t", ts="t.ts")}
    WINDOW w AS (PARTITION BY t.vehicle_id ORDER BY t.ts)),
seg AS (
    SELECT vehicle_id, driver_id, speed_kmh, extract(epoch FROM ts - pts) AS dt,
           2 * 6371.0088 * asin(least(1.0, sqrt(
               sin(radians(lat - plat) / 2) ^ 2
               + cos(radians(plat)) * cos(radians(lat)) * sin(radians(lon - plon) / 2) ^ 2)))
               AS km
    FROM fixes WHERE pts IS NOT NULL AND ts - pts <= make_interval(secs => $6))
SELECT vehicle_id, driver_id, sum(km)::float8 AS km,
       (sum(dt) FILTER (WHERE speed_kmh >= $7) / 3600.0)::float8 AS hours
FROM seg GROUP BY vehicle_id, driver_id
"""

_ALARMS = f"""
SELECT a.vehicle_id,
       coalesce(e.driver_id,
                (SELECT t.driver_id FROM telemetry t
                 WHERE t.vehicle_id = a.vehicle_id AND t.ts = a.first_ts
                   AND t.seq = a.first_seq LIMIT 1)) AS driver_id,
       a.kind, a.severity, count(*)::int AS n
FROM alarms a
LEFT JOIN events e ON e.vehicle_id = a.vehicle_id AND e.seq = a.first_seq
WHERE a.vehicle_id = ANY ($1::text[]) AND a.first_ts >= $4 AND a.first_ts < $5
  AND {_IN_WINDOW.format(alias="a", ts="a.first_ts")}
GROUP BY 1, 2, 3, 4
"""


@dataclass(frozen=True, slots=True)
class ExposureRow:
    vehicle_id: str
    driver_id: str | None
    km: float
    hours: float


@dataclass(frozen=True, slots=True)
class AlarmRow:
    vehicle_id: str
    driver_id: str | None
    kind: str
    severity: str
    count: int


async def exposure(
    conn: asyncpg.Connection,
    coverage: Coverage,
    since: datetime,
    until: datetime,
    *,
    gap_s: float,
    min_kmh: float,
) -> list[ExposureRow]:
    vehicles, starts, ends = coverage.sql_arrays()
    rows = await conn.fetch(_EXPOSURE, vehicles, starts, ends, since, until, gap_s, min_kmh)
    return [
        ExposureRow(r["vehicle_id"], r["driver_id"], r["km"] or 0.0, r["hours"] or 0.0)
        for r in rows
    ]


async def alarm_counts(
    conn: asyncpg.Connection, coverage: Coverage, since: datetime, until: datetime
) -> list[AlarmRow]:
    vehicles, starts, ends = coverage.sql_arrays()
    rows = await conn.fetch(_ALARMS, vehicles, starts, ends, since, until)
    return [
        AlarmRow(r["vehicle_id"], r["driver_id"], r["kind"], r["severity"], r["n"]) for r in rows
    ]
