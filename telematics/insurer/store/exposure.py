"""What risk scores and reports rest on: driven distance and time, and alarms, per
vehicle and driver, over the periods an insurer's coverage opens.

Distance: the great-circle length of each segment between a fix and the vehicle's
previous fix, if that is at most ``gap_s`` earlier (a longer gap is a hole in the data,
not a straight drive). Driving time: those segments whose later fix is at ``min_kmh`` or
faster. A segment counts where its later fix is (in the window, under a policy) and
belongs to that fix's driver. An alarm belongs to the driver of the item that opened it.

Each vehicle-hour's rollup in ``exposure_hours`` (sql/012, :func:`roll_up`, run by the
server) covers the hour's first ``rolled_s`` seconds (sql/015): the open hour is summed a
five-minute slice at a time shortly after each slice closes, so a request reads the
fixes of minutes, not of half an hour. Rollups are read where current and inside the
window; the rest (the window's part-hours, the unsummed tail of the open hour, hours
changed since) from the fixes themselves. Both sum the same segments, so the figures do
not depend on how far the rollups have got.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from telematics.insurer.model import Coverage

HOUR = timedelta(hours=1)
#: The step of the roll-up within an hour: each is summed once it has closed. The batch
#: writer treats a fix as late (and bumps its hour's version) four minutes after its
#: slice ended (``writer.LATE_SLICE_S``, the same length; ``writer.LATE_MARGIN_S``).
SLICE = timedelta(minutes=5)
#: How long after its end a slice is rolled up: the margin over the writer's four
#: minutes is time for a flush that scanned before them to commit (one transaction,
#: seconds at worst; a fix it stores after the roll-up would otherwise be missed).
ROLLUP_DELAY = timedelta(minutes=6)
ROLLUP_LOCK = 0x7E1E_0012  # advisory lock: one roll-up at a time, whatever the worker

# Coverage windows clipped to [since, until); overlapping policies must not count twice,
# so rows are filtered with EXISTS instead of joined.
_IN_WINDOW = """EXISTS (SELECT 1 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                        AS w(vehicle_id, s, e)
                        WHERE w.vehicle_id = {alias}.vehicle_id
                          AND {ts} >= w.s AND {ts} < w.e)"""

# The segments whose later fix is in each range [s, e) of a vehicle, summed per driver.
# A range's fixes are read from gap_s before it, for the segment into its first fix.
# Ordered, paired and summed a range at a time: one sort of a whole fleet's fixes by
# vehicle and time spilled to disk and was most of a whole-book read. $6: a lowest seq
# for ranges that start where a current rollup ends (telemetry_hours.rolled_seq), else
# NULL; the hour's mark would scan every fix since the hour began.
_SEGMENTS = """
WITH r AS MATERIALIZED (  -- each range's seq bounds first: then one index scan a range
    SELECT u.vehicle_id, u.s, u.e, greatest(q.lo, u.lo) AS lo, q.hi
    FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $6::bigint[])
         AS u(vehicle_id, s, e, lo)
    CROSS JOIN LATERAL telemetry_seq_range(u.vehicle_id, u.s - make_interval(secs => $4), u.e) q)
SELECT r.vehicle_id, r.s, g.driver_id, g.km, g.driving_s
FROM r CROSS JOIN LATERAL (
    SELECT coalesce(f.driver_id, '') AS driver_id,
           sum(2 * 6371.0088 * asin(least(1.0, sqrt(
               sin(radians(f.lat - f.plat) / 2) ^ 2
               + cos(radians(f.plat)) * cos(radians(f.lat)) * sin(radians(f.lon - f.plon) / 2) ^ 2
           ))))::float8 AS km,
           coalesce(sum(extract(epoch FROM f.ts - f.pts)) FILTER (WHERE f.speed_kmh >= $5), 0)
               ::float8 AS driving_s
    FROM (SELECT t.driver_id, t.ts, t.speed_kmh, t.lat, t.lon,
                 lag(t.ts) OVER w AS pts, lag(t.lat) OVER w AS plat, lag(t.lon) OVER w AS plon
          FROM telemetry t
          WHERE t.vehicle_id = r.vehicle_id AND t.seq >= r.lo AND t.seq < r.hi
            AND t.ts >= r.s - make_interval(secs => $4) AND t.ts < r.e
          WINDOW w AS (ORDER BY t.ts, t.seq)) f
    WHERE f.ts >= r.s AND f.pts IS NOT NULL AND f.ts - f.pts <= make_interval(secs => $4)
    GROUP BY 1) g
"""

# The rollups of each vehicle's hours in [s, e): whole or the summed start of an hour
# (the caller passes only hours whose rollup is current and inside the window).
_ROLLED = """
SELECT x.vehicle_id, x.driver_id, sum(x.km)::float8 AS km, sum(x.driving_s)::float8 AS driving_s
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS w(vehicle_id, s, e)
JOIN exposure_hours x ON x.vehicle_id = w.vehicle_id AND x.hour >= w.s AND x.hour < w.e
GROUP BY 1, 2
"""

# Hours whose rollup is not whole and current (the partial index of sql/015): the open
# ones, and those not summed yet or changed since; with how much of each is usable.
_PARTIAL = """
SELECT vehicle_id, hour,
       CASE WHEN rolled_version = version THEN coalesce(rolled_s, 0) ELSE 0 END AS usable_s,
       CASE WHEN rolled_version = version THEN rolled_seq END AS rolled_seq
FROM telemetry_hours
WHERE vehicle_id = ANY ($1::text[]) AND hour >= $2 AND hour < $3
  AND (rolled_version IS DISTINCT FROM version OR rolled_s IS DISTINCT FROM 3600)
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


Span = tuple[str, datetime, datetime]  # vehicle, start, end (exclusive)


def floor_hour(t: datetime) -> datetime:
    """The UTC hour ``t`` falls in (the hours of ``telemetry_hours``)."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    floor = floor_hour(t)
    return floor if floor == t else floor + HOUR


def covered_spans(coverage: Coverage, since: datetime, until: datetime) -> list[Span]:
    """Each vehicle's covered part of ``[since, until)``, overlapping policies merged (a
    fix must not count twice)."""
    out: list[Span] = []
    for vehicle in coverage.vehicle_ids:
        merged: list[list[datetime]] = []
        for w in sorted(coverage.clip(vehicle, since, until), key=lambda w: w.start):
            if merged and w.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], w.end)
            else:
                merged.append([w.start, w.end])
        out.extend((vehicle, s, e) for s, e in merged)
    return out


def split_spans(
    spans: Iterable[Span], partial: dict[str, dict[datetime, int]]
) -> tuple[list[Span], list[Span]]:
    """Which parts of the spans to read from the rollups (ranges of hours of
    ``exposure_hours``) and which from the fixes. ``partial``: per vehicle, the hours whose
    rollup is not whole and current, with the seconds from the hour's start that it
    covers and that are current (0: none); every other hour is whole and current. An
    hour's rollup is used when the window holds all it covers: the window's part-hours
    and what no current rollup covers come from the fixes."""
    rolled: list[Span] = []
    raw: list[Span] = []
    for vehicle, s, e in spans:
        first, last = ceil_hour(s), floor_hour(e)  # whole hours [first, last)
        if first > last:  # inside one hour that starts before the span
            _join(raw, vehicle, s, e)
            continue
        if s < first:
            _join(raw, vehicle, s, first)
        hours = partial.get(vehicle, {})
        cursor = first
        for hour in sorted(h for h in hours if first <= h < e):
            if cursor < hour:
                _join(rolled, vehicle, cursor, hour)
            end = min(hour + HOUR, e)
            covered = hour + timedelta(seconds=hours[hour])
            if hour < covered <= end:
                _join(rolled, vehicle, hour, hour + HOUR)
                if covered < end:
                    _join(raw, vehicle, covered, end)
            else:
                _join(raw, vehicle, hour, end)
            cursor = hour + HOUR
        if cursor < last:
            _join(rolled, vehicle, cursor, last)
        if max(cursor, last) < e:  # the tail of an hour rolled up whole: not all in the window
            _join(raw, vehicle, max(cursor, last), e)
    return rolled, raw


def _join(out: list[Span], vehicle: str, s: datetime, e: datetime) -> None:
    """Add ``[s, e)``, as one range with the last when that ends where this starts."""
    if out and out[-1][0] == vehicle and out[-1][2] == s:
        out[-1] = (vehicle, out[-1][1], e)
    else:
        out.append((vehicle, s, e))


def _columns(spans: Sequence[Span]) -> tuple[list[str], list[datetime], list[datetime]]:
    return [v for v, _, _ in spans], [s for _, s, _ in spans], [e for _, _, e in spans]


async def _segments(
    conn: asyncpg.Connection,
    spans: Sequence[Span],
    gap_s: float,
    min_kmh: float,
    tails: dict[tuple[str, datetime], int],
) -> list[asyncpg.Record]:
    """The fixes' sums over each span; ``tails``: the lowest seq a span that starts at
    that (vehicle, time) needs to read (:func:`roll_up`), where known."""
    hints = [tails.get((v, s)) for v, s, _ in spans]
    return list(await conn.fetch(_SEGMENTS, *_columns(spans), gap_s, min_kmh, hints))


async def _rollups_usable(conn: asyncpg.Connection, gap_s: float, min_kmh: float) -> bool:
    row = await conn.fetchrow("SELECT gap_s, min_kmh FROM exposure_rollup_params")
    return row is not None and (row["gap_s"], row["min_kmh"]) == (gap_s, min_kmh)


async def exposure(
    conn: asyncpg.Connection,
    coverage: Coverage,
    since: datetime,
    until: datetime,
    *,
    gap_s: float,
    min_kmh: float,
) -> list[ExposureRow]:
    spans = covered_spans(coverage, since, until)
    if not spans:
        return []
    km: dict[tuple[str, str], float] = defaultdict(float)
    driving_s: dict[tuple[str, str], float] = defaultdict(float)

    def add(rows: Iterable[asyncpg.Record]) -> None:  # rollups and fixes sum alike
        for r in rows:
            km[r["vehicle_id"], r["driver_id"]] += r["km"]
            driving_s[r["vehicle_id"], r["driver_id"]] += r["driving_s"]

    # One snapshot: a rollup committed between two reads would otherwise count twice.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        raw = spans
        tails: dict[tuple[str, datetime], int] = {}
        if await _rollups_usable(conn, gap_s, min_kmh):
            partial: dict[str, dict[datetime, int]] = defaultdict(dict)
            vehicles = sorted({v for v, _, _ in spans})
            lo, hi = floor_hour(min(s for _, s, _ in spans)), max(e for _, _, e in spans)
            # The planner cannot estimate the partial index's condition (two columns
            # compared) and scanned every hour of the window (0.27 s for 1,800 vehicles
            # over 30 days) to find the few hours it holds (< 1 ms through the index).
            await conn.execute("SET LOCAL enable_seqscan = off")
            partial_rows = await conn.fetch(_PARTIAL, vehicles, lo, hi)
            await conn.execute("SET LOCAL enable_seqscan = on")
            for r in partial_rows:
                partial[r["vehicle_id"]][r["hour"]] = r["usable_s"]
                if r["usable_s"] and r["rolled_seq"] is not None:
                    covered = r["hour"] + timedelta(seconds=r["usable_s"])
                    tails[r["vehicle_id"], covered] = r["rolled_seq"]
            rolled, raw = split_spans(spans, partial)
            if rolled:
                add(await conn.fetch(_ROLLED, *_columns(rolled)))
        if raw:
            add(await _segments(conn, raw, gap_s, min_kmh, tails))
    return [
        ExposureRow(vehicle, driver or None, km[vehicle, driver], driving_s[vehicle, driver] / 3600)
        for vehicle, driver in sorted(km)
    ]


def rolled_until(now: datetime) -> datetime:
    """The end of the newest slice a roll-up at ``now`` may sum: every slice before it has
    closed ``ROLLUP_DELAY`` ago."""
    t = now.astimezone(UTC) - ROLLUP_DELAY
    return t - (t - floor_hour(t)) % SLICE


async def roll_up(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    gap_s: float,
    min_kmh: float,
    limit: int = 100,
    wait: bool = False,
) -> int:
    """Sum up to ``limit`` vehicle-hours whose rollup is missing, out of date or short of
    the slices closed by ``now``, in one transaction; how many. A current rollup is
    extended by the new slices' fixes; any other is summed again from the hour's start.
    0 also when another roll-up holds the lock, unless ``wait``: then this one waits."""
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ROLLUP_LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ROLLUP_LOCK):
            return 0
        if not await _rollups_usable(conn, gap_s, min_kmh):
            # New settings (risk_weights.json): every rollup is summed again with them.
            await conn.execute(
                """INSERT INTO exposure_rollup_params (gap_s, min_kmh) VALUES ($1, $2)
                   ON CONFLICT (only_row) DO UPDATE SET gap_s = $1, min_kmh = $2""",
                gap_s,
                min_kmh,
            )
            await conn.execute("DELETE FROM exposure_hours")
            await conn.execute(
                "UPDATE telemetry_hours SET rolled_version = NULL, rolled_s = NULL"
                " WHERE rolled_version IS NOT NULL"
            )
        until = rolled_until(now)
        todo = await conn.fetch(
            """SELECT vehicle_id, hour, version,
                      CASE WHEN rolled_version = version THEN coalesce(rolled_s, 0) ELSE 0 END
                          AS done_s,
                      least(3600, extract(epoch FROM $1 - hour))::int AS to_s,
                      CASE WHEN rolled_version = version THEN rolled_seq END AS rolled_seq
               FROM telemetry_hours
               WHERE (rolled_version IS DISTINCT FROM version OR rolled_s IS DISTINCT FROM 3600)
                 AND hour < $1
                 AND (rolled_version IS DISTINCT FROM version
                      OR coalesce(rolled_s, 0) < least(3600, extract(epoch FROM $1 - hour)))
               ORDER BY hour DESC LIMIT $2""",  # the newest first (sql/013)
            until,
            limit,
        )
        if not todo:
            return 0
        vehicles = [r["vehicle_id"] for r in todo]
        hours = [r["hour"] for r in todo]
        # Only the slices not summed yet, or the whole hour so far if its rollup is stale.
        starts = [r["hour"] + timedelta(seconds=r["done_s"]) for r in todo]
        ends = [r["hour"] + timedelta(seconds=r["to_s"]) for r in todo]
        tails = {
            (r["vehicle_id"], s): r["rolled_seq"]
            for r, s in zip(todo, starts, strict=True)
            if r["rolled_seq"] is not None
        }
        sums = await _segments(
            conn, list(zip(vehicles, starts, ends, strict=True)), gap_s, min_kmh, tails
        )
        # Where the next read of a part-summed hour starts: its lowest seq from gap_s
        # before the summed part's end. A fix stored later with a lower seq is late (its
        # slice has closed), bumps the version and so voids this with the rollup.
        open_hours = [(r, e) for r, e in zip(todo, ends, strict=True) if r["to_s"] < 3600]
        next_seq = dict(
            await conn.fetch(
                """SELECT u.i, (SELECT t.seq FROM telemetry t
                                WHERE t.vehicle_id = u.v AND t.seq >= greatest(q.lo, u.lo)
                                  AND t.ts >= u.e - make_interval(secs => $5)
                                ORDER BY t.seq LIMIT 1)
                   FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::bigint[])
                        AS u(i, v, e, lo)
                   CROSS JOIN LATERAL
                       telemetry_seq_range(u.v, u.e - make_interval(secs => $5), u.e) q""",
                list(range(len(open_hours))),
                [r["vehicle_id"] for r, _ in open_hours],
                [e for _, e in open_hours],
                [r["rolled_seq"] for r, _ in open_hours],
                gap_s,
            )
        )
        seqs = {(r["vehicle_id"], r["hour"]): next_seq[i] for i, (r, _) in enumerate(open_hours)}
        redo = [r for r in todo if not r["done_s"]]
        await conn.execute(
            """DELETE FROM exposure_hours x USING unnest($1::text[], $2::timestamptz[]) AS t(v, h)
               WHERE x.vehicle_id = t.v AND x.hour = t.h""",
            [r["vehicle_id"] for r in redo],
            [r["hour"] for r in redo],
        )
        await conn.execute(
            """INSERT INTO exposure_hours AS x
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::float8[],
                                    $5::float8[])
               ON CONFLICT (vehicle_id, hour, driver_id) DO UPDATE
               SET km = x.km + excluded.km, driving_s = x.driving_s + excluded.driving_s""",
            [r["vehicle_id"] for r in sums],
            [floor_hour(r["s"]) for r in sums],
            [r["driver_id"] for r in sums],
            [r["km"] for r in sums],
            [r["driving_s"] for r in sums],
        )
        # The version read above: a fix stored since bumped it, so the hour goes again.
        await conn.execute(
            """UPDATE telemetry_hours h
               SET rolled_version = t.version, rolled_s = t.to_s, rolled_seq = t.seq
               FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::int[], $5::bigint[])
                    AS t(v, hr, version, to_s, seq)
               WHERE h.vehicle_id = t.v AND h.hour = t.hr""",
            vehicles,
            hours,
            [r["version"] for r in todo],
            [r["to_s"] for r in todo],
            [seqs.get((r["vehicle_id"], r["hour"])) for r in todo],
        )
    return len(todo)


async def alarm_counts(
    conn: asyncpg.Connection, coverage: Coverage, since: datetime, until: datetime
) -> list[AlarmRow]:
    vehicles, starts, ends = coverage.sql_arrays()
    rows = await conn.fetch(_ALARMS, vehicles, starts, ends, since, until)
    return [
        AlarmRow(r["vehicle_id"], r["driver_id"], r["kind"], r["severity"], r["n"]) for r in rows
    ]
