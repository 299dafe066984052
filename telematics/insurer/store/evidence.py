"""The rows of an evidence packet: one vehicle, one period (both already clipped to what
the insurer's coverage opens). Every query is an index range on (vehicle, time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True)
class EvidenceRows:
    telemetry: list[dict[str, Any]]
    tires: list[dict[str, Any]]
    events: list[dict[str, Any]]
    alarms: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    interventions: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    vehicle: dict[str, Any]


def _rows(records: list[asyncpg.Record], json_cols: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for r in records:
        row = dict(r)
        for col in json_cols:
            if isinstance(row.get(col), str):
                row[col] = orjson.loads(row[col])
        out.append(row)
    return out


async def evidence_rows(
    conn: asyncpg.Connection, vehicle_id: str, lo: datetime, hi: datetime
) -> EvidenceRows:
    telemetry = await conn.fetch(
        """SELECT t.ts, t.seq, t.lat, t.lon, t.speed_kmh, t.heading_deg, t.driver_id,
                  t.ignition, t.odometer_km
           FROM telemetry_seq_range($1, $2, $3) r
           JOIN telemetry t ON t.vehicle_id = $1 AND t.seq >= r.lo AND t.seq < r.hi
           WHERE t.ts >= $2 AND t.ts < $3 ORDER BY t.ts, t.seq""",
        vehicle_id,
        lo,
        hi,
    )
    tires = await conn.fetch(
        """SELECT ts, seq, pos, kpa, temp_c, sensor_battery_pct FROM tire_readings
           WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, pos""",
        vehicle_id,
        lo,
        hi,
    )
    events = await conn.fetch(
        """SELECT seq, ts, received_at, kind, level, lat, lon, speed_kmh, driver_id,
                  attrs::text AS attrs
           FROM events WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, seq""",
        vehicle_id,
        lo,
        hi,
    )
    alarms = await conn.fetch(
        """SELECT id, kind, key, severity, reason, derived, level, tire_pos, first_seq,
                  first_ts AS opened_at, last_seq, last_ts AS last_seen_at, occurrences,
                  lat, lon, speed_kmh, active, acknowledged, cleared_at, clear_reason,
                  acked_at, late, rules_version, probability, model_version, factors
           FROM alarms WHERE vehicle_id = $1 AND first_ts < $3 AND last_ts >= $2
           ORDER BY first_ts, id""",
        vehicle_id,
        lo,
        hi,
    )
    alarm_ids = [r["id"] for r in alarms]
    # Staff names are not evidence: people show as 'operator', the server as 'system'.
    audit = await conn.fetch(
        """SELECT alarm_id, at, CASE WHEN actor = 'system' THEN 'system' ELSE 'operator' END
                  AS actor, action, detail::text AS detail
           FROM alarm_audit WHERE alarm_id = ANY ($1::text[]) ORDER BY alarm_id, id""",
        alarm_ids,
    )
    interventions = await conn.fetch(
        """SELECT id, alarm_id, severity, action, message, cause_seq, cause_kind, issued_at,
                  status, status_at
           FROM interventions
           WHERE alarm_id = ANY ($1::text[])
              OR (vehicle_id = $2 AND issued_at >= $3 AND issued_at < $4)
           ORDER BY issued_at, id""",
        alarm_ids,
        vehicle_id,
        lo,
        hi,
    )
    statuses = await conn.fetch(
        """SELECT intervention_id, status, at, source FROM intervention_status
           WHERE intervention_id = ANY ($1::text[]) ORDER BY intervention_id, at""",
        [r["id"] for r in interventions],
    )
    vehicle = await conn.fetchrow(
        "SELECT id, fleet_id, vehicle_class, plate FROM vehicles WHERE id = $1", vehicle_id
    )
    return EvidenceRows(
        _rows(telemetry),
        _rows(tires),
        _rows(events, ("attrs",)),
        _rows(alarms),
        _rows(audit, ("detail",)),
        _rows(interventions),
        _rows(statuses),
        dict(vehicle) if vehicle is not None else {"id": vehicle_id},
    )
