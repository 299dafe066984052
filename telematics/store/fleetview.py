"""What the dispatch centre looks at: the live fleet, one vehicle, and the KPIs.

Every query is scoped by the caller's fleets (``None``: all) and bounded by an index:
``vehicle_status`` instead of the telemetry partitions for positions, the (vehicle, seq)
index read backwards for a track, the open-alarm partial indexes for the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from telematics.classify.alarms import SEVERITY_RANK

_RANK_SEVERITY = {rank: name for name, rank in SEVERITY_RANK.items()}
REFERENCE_SPLIT = {"general": 85.35, "moderate": 14.56, "severe": 0.09}  # Jiangsu insurer
ONLINE_WITHIN = timedelta(seconds=60)  # the idle timeout: silent longer means gone


def _fleet_clause(fleets: Sequence[str] | None, column: str, args: list[Any]) -> str:
    if fleets is None:
        return "true"
    args.append(list(fleets))
    return f"{column} = ANY(${len(args)})"


async def vehicles(
    conn: asyncpg.Connection,
    fleets: Sequence[str] | None,
    now: datetime,
    *,
    changed_since: datetime | None = None,
    vehicle_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Each vehicle with its last fix and the severity of its worst open alarm."""
    args: list[Any] = []
    where = [_fleet_clause(fleets, "v.fleet_id", args)]
    if changed_since is not None:
        args.append(changed_since)
        where.append(f"s.updated_at > ${len(args)}")
    if vehicle_ids is not None:
        args.append(list(vehicle_ids))
        where.append(f"v.id = ANY(${len(args)})")
    rows = await conn.fetch(
        f"""SELECT v.id, v.fleet_id, v.vehicle_class, v.plate, s.ts, s.lat, s.lon, s.speed_kmh,
                   s.heading_deg, s.driver_id, s.updated_at, w.worst_rank, w.open_alarms
            FROM vehicles v LEFT JOIN vehicle_status s ON s.vehicle_id = v.id
            CROSS JOIN LATERAL (SELECT max(a.severity_rank) AS worst_rank,
                                       count(*) AS open_alarms
                                FROM alarms a WHERE a.vehicle_id = v.id AND a.active) w
            WHERE {" AND ".join(where)} ORDER BY v.id""",
        *args,
    )
    return [_vehicle(r, now) for r in rows]


def _vehicle(r: asyncpg.Record, now: datetime) -> dict[str, Any]:
    seen = r["ts"]
    return {
        "id": r["id"],
        "fleet": r["fleet_id"],
        "class": r["vehicle_class"],
        "plate": r["plate"],
        "driver": r["driver_id"],
        "lat": r["lat"],
        "lon": r["lon"],
        "speed_kmh": None if r["speed_kmh"] is None else round(r["speed_kmh"], 1),
        "heading_deg": r["heading_deg"],
        "last_seen": None if seen is None else seen.isoformat(),
        "online": r["updated_at"] is not None and now - r["updated_at"] <= ONLINE_WITHIN,
        "worst_severity": _RANK_SEVERITY.get(r["worst_rank"]),
        "open_alarms": r["open_alarms"],
    }


async def fleet_of_vehicle(conn: asyncpg.Connection, vehicle_id: str) -> str | None:
    fleet: str | None = await conn.fetchval(
        "SELECT fleet_id FROM vehicles WHERE id = $1", vehicle_id
    )
    return fleet


async def vehicle_detail(
    conn: asyncpg.Connection, vehicle_id: str, now: datetime
) -> dict[str, Any] | None:
    """One vehicle: tires per axle, the last hour's track, recent events, alarms and
    interventions. None if there is no such vehicle."""
    v = await conn.fetchrow(
        """SELECT id, fleet_id, vehicle_class, plate, tire_layout, placard_kpa
           FROM vehicles WHERE id = $1""",
        vehicle_id,
    )
    if v is None:
        return None
    (status,) = await vehicles(conn, None, now, vehicle_ids=[vehicle_id])
    tires = await conn.fetch(
        """SELECT DISTINCT ON (pos) pos, ts, kpa, temp_c, sensor_battery_pct
           FROM tire_readings WHERE vehicle_id = $1 AND ts > $2
           ORDER BY pos, ts DESC""",
        vehicle_id,
        now - timedelta(hours=1),
    )
    tire_alarms = await conn.fetch(
        """SELECT tire_pos, kind, severity, reason FROM alarms
           WHERE vehicle_id = $1 AND active AND tire_pos IS NOT NULL""",
        vehicle_id,
    )
    # Newest fixes first through the (vehicle, seq) index, then keep the last hour.
    track = await conn.fetch(
        """SELECT ts, lat, lon, speed_kmh FROM (
               SELECT ts, lat, lon, speed_kmh FROM telemetry WHERE vehicle_id = $1
               ORDER BY seq DESC LIMIT 7200) t
           WHERE ts > $2 ORDER BY ts""",
        vehicle_id,
        now - timedelta(hours=1),
    )
    events = await conn.fetch(
        """SELECT seq, ts, kind, level, speed_kmh, driver_id FROM events
           WHERE vehicle_id = $1 AND ts > $2 ORDER BY ts DESC LIMIT 50""",
        vehicle_id,
        now - timedelta(hours=24),
    )
    alarms = await conn.fetch(
        """SELECT id, kind, severity, reason, first_ts, last_ts, occurrences, active, acknowledged,
                  tire_pos, late, probability, model_version, factors
           FROM alarms WHERE vehicle_id = $1 AND (active OR last_ts > $2)
           ORDER BY last_ts DESC LIMIT 50""",
        vehicle_id,
        now - timedelta(hours=24),
    )
    interventions = await conn.fetch(
        """SELECT id, alarm_id, severity, action, message, cause_kind, issued_at, status, status_at
           FROM interventions WHERE vehicle_id = $1 AND issued_at > $2
           ORDER BY issued_at DESC LIMIT 50""",
        vehicle_id,
        now - timedelta(hours=24),
    )
    by_pos = {r["tire_pos"]: r for r in tire_alarms}
    return {
        "vehicle": {
            **status,
            "tire_layout": list(v["tire_layout"]),
            "placard_kpa": v["placard_kpa"],
        },
        "tires": [
            {
                "pos": pos,
                "kpa": _num(tire_row(tires, pos), "kpa"),
                "temp_c": _num(tire_row(tires, pos), "temp_c"),
                "at": _iso(tire_row(tires, pos), "ts"),
                "state": by_pos[pos]["kind"] if pos in by_pos else "normal",
                "severity": by_pos[pos]["severity"] if pos in by_pos else None,
                "reason": by_pos[pos]["reason"] if pos in by_pos else None,
            }
            for pos in v["tire_layout"]
        ],
        "track": [
            [r["lon"], r["lat"], round(float(r["speed_kmh"]), 1), r["ts"].isoformat()]
            for r in track
        ],
        "events": [_plain(r) for r in events],
        "alarms": [_plain(r) for r in alarms],
        "interventions": [_plain(r) for r in interventions],
    }


def tire_row(rows: list[asyncpg.Record], pos: str) -> asyncpg.Record | None:
    return next((r for r in rows if r["pos"] == pos), None)


def _num(row: asyncpg.Record | None, name: str) -> float | None:
    return None if row is None or row[name] is None else round(float(row[name]), 1)


def _iso(row: asyncpg.Record | None, name: str) -> str | None:
    return None if row is None else row[name].isoformat()


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


async def interventions_of(
    conn: asyncpg.Connection, alarm_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each alarm's interventions, oldest first, with their delivery status."""
    rows = await conn.fetch(
        """SELECT id, alarm_id, severity, action, issued_at, status, status_at FROM interventions
           WHERE alarm_id = ANY($1) ORDER BY issued_at""",
        list(alarm_ids),
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["alarm_id"], []).append(_plain(r))
    return out


async def tasks_of(conn: asyncpg.Connection, alarm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each alarm's dispatcher task: deadline, escalation level and next step."""
    rows = await conn.fetch(
        """SELECT alarm_id, id, status, due_at, escalation_level, next_escalation_at
           FROM dispatch_tasks WHERE alarm_id = ANY($1)""",
        list(alarm_ids),
    )
    return {r["alarm_id"]: _plain(r) for r in rows}


async def kpis(
    conn: asyncpg.Connection, fleets: Sequence[str] | None, now: datetime, days: int = 30
) -> dict[str, Any]:
    """Alarms per day and month, the severity split against the reference deployment,
    intervention delivery time, recurrence after intervention, the riskiest vehicles and
    drivers. Alarms, not readings: thousands of rows a month, read by index."""
    since = now - timedelta(days=days)
    args: list[Any] = [since]
    scope = _fleet_clause(fleets, "v.fleet_id", args)
    per_day = await conn.fetch(
        f"""SELECT (a.first_ts AT TIME ZONE 'Asia/Shanghai')::date AS day, a.severity, count(*) AS n
            FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id
            WHERE a.first_ts > $1 AND {scope} GROUP BY 1, 2 ORDER BY 1""",
        *args,
    )
    year_args: list[Any] = [now - timedelta(days=366)]
    year_scope = _fleet_clause(fleets, "v.fleet_id", year_args)
    per_month = await conn.fetch(
        f"""SELECT to_char(a.first_ts AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') AS month,
                   a.severity, count(*) AS n
            FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id
            WHERE a.first_ts > $1 AND {year_scope} GROUP BY 1, 2 ORDER BY 1""",
        *year_args,
    )
    delivery = await conn.fetchrow(
        f"""SELECT count(*) AS issued,
                   count(d.at) AS delivered,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY d.secs) AS p50_s,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY d.secs) AS p95_s
            FROM interventions i JOIN vehicles v ON v.id = i.vehicle_id
            LEFT JOIN LATERAL (SELECT min(s.at) AS at,
                                      extract(epoch FROM min(s.at) - i.issued_at) AS secs
                               FROM intervention_status s
                               WHERE s.intervention_id = i.id AND s.status <> 'issued') d ON true
            WHERE i.issued_at > $1 AND {scope}""",
        *args,
    )
    recurrence = await conn.fetch(
        f"""SELECT i.severity, count(*) AS n,
                   avg(o.recurred_10m::int) AS r10, avg(o.recurred_30m::int) AS r30
            FROM intervention_outcomes o JOIN interventions i ON i.id = o.intervention_id
            JOIN vehicles v ON v.id = i.vehicle_id
            WHERE i.issued_at > $1 AND {scope} GROUP BY 1""",
        *args,
    )
    # Risk points: 1 per general, 5 per moderate, 50 per severe alarm (documented in the page).
    riskiest_vehicles = await conn.fetch(
        f"""SELECT a.vehicle_id AS id, v.plate, count(*) AS alarms,
                   sum(CASE a.severity WHEN 'severe' THEN 50 WHEN 'moderate' THEN 5 ELSE 1 END)
                       AS points
            FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id
            WHERE a.first_ts > $1 AND {scope} GROUP BY 1, 2 ORDER BY points DESC, 1 LIMIT 10""",
        *args,
    )
    riskiest_drivers = await conn.fetch(
        f"""SELECT e.driver_id AS id, count(*) AS alarms,
                   sum(CASE a.severity WHEN 'severe' THEN 50 WHEN 'moderate' THEN 5 ELSE 1 END)
                       AS points
            FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id
            JOIN events e ON e.vehicle_id = a.vehicle_id AND e.seq = a.first_seq
            WHERE a.first_ts > $1 AND {scope} AND e.driver_id IS NOT NULL
            GROUP BY 1 ORDER BY points DESC, 1 LIMIT 10""",
        *args,
    )
    split_counts = {s: 0 for s in SEVERITY_RANK}
    for r in per_day:
        split_counts[r["severity"]] += r["n"]
    total = sum(split_counts.values())
    return {
        "days": days,
        "alarms_per_day": [
            {"day": r["day"].isoformat(), "severity": r["severity"], "count": r["n"]}
            for r in per_day
        ],
        "alarms_per_month": [
            {"month": r["month"], "severity": r["severity"], "count": r["n"]} for r in per_month
        ],
        "severity_split": {
            s: {"count": n, "percent": round(100 * n / total, 2) if total else 0.0}
            for s, n in split_counts.items()
        },
        "reference_split": REFERENCE_SPLIT,
        "delivery": {
            "issued": delivery["issued"],
            "delivered": delivery["delivered"],
            "p50_s": _round(delivery["p50_s"]),
            "p95_s": _round(delivery["p95_s"]),
        },
        "recurrence": [
            {
                "severity": r["severity"],
                "interventions": r["n"],
                "recurred_10m_percent": round(100 * float(r["r10"]), 1),
                "recurred_30m_percent": round(100 * float(r["r30"]), 1),
            }
            for r in recurrence
        ],
        "riskiest_vehicles": [dict(r) for r in riskiest_vehicles],
        "riskiest_drivers": [dict(r) for r in riskiest_drivers],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)
