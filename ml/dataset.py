"""``telematics ml dataset``: labelled alarms from PostgreSQL, features by replay.

Features are not rebuilt with SQL approximations: each vehicle's stored telemetry, tire
readings and events are replayed, in seq order, through the server's own pure state code
(geofence tracker, ``VehicleState``) with a grader that records every
:class:`GradingInput`. The snapshot kept for an alarm row is the one taken at its first
occurrence (``first_seq``, ``kind``): exactly what a model serving at that moment sees.

Replay starts ``lookback`` before the period, so driving time, recurrence and the
driver's history have their past (state older than that is not reconstructed). Zones
are today's (``zones`` keeps no history of geometry edits). Alarms that are outcomes
(collision, rollover) are not rows.

Label: a collision or rollover of the same vehicle within ``horizon`` after the alarm's
first occurrence, as an event or an alarm, or a paid insurance claim that occurred in
that window (:class:`ClaimOutcomes`, the outcomes insurers post through their API).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import orjson

from ml.rows import LabelledAlarm
from telematics.classify.context import Graded, Grader, GradingInput, RulesGrader
from telematics.classify.risk_policy import RiskPolicy, load_policy
from telematics.fleet import Vehicle
from telematics.geo.index import ZoneIndex
from telematics.geo.tracker import GeofenceTracker
from telematics.protocol.messages import DeviceEvent, Telemetry, TireReading
from telematics.sim.risk import HORIZON_S, OUTCOME_KINDS
from telematics.state.vehicle import VehicleState
from telematics.store.zones import zones_snapshot

DEFAULT_HORIZON = timedelta(seconds=HORIZON_S)
DEFAULT_LOOKBACK = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class AlarmRef:
    id: str
    vehicle_id: str
    kind: str
    first_seq: int
    first_ts: datetime


class OutcomeSource(Protocol):
    """More positives: the ids of the alarms it knows were followed by a loss."""

    async def positives(
        self, conn: asyncpg.Connection, alarms: Sequence[AlarmRef], horizon: timedelta
    ) -> set[str]: ...


class ClaimOutcomes:
    """Positives from the insurers' claims (``claim_outcomes``, posted through the insurer
    API): an alarm is followed by a loss when a claim of the same vehicle that was paid in
    full or in part occurred within ``horizon`` after it. Denied or withdrawn claims are no
    evidence either way and leave the label to the collision events."""

    async def positives(
        self, conn: asyncpg.Connection, alarms: Sequence[AlarmRef], horizon: timedelta
    ) -> set[str]:
        rows = await conn.fetch(
            """SELECT a.id FROM alarms a
               WHERE a.id = ANY($1::text[]) AND EXISTS (
                 SELECT 1 FROM claim_outcomes c
                 WHERE c.vehicle_id = a.vehicle_id
                   AND c.outcome IN ('paid', 'partially_paid')
                   AND c.occurred_at > a.first_ts AND c.occurred_at <= a.first_ts + $2)""",
            [a.id for a in alarms],
            horizon,
        )
        return {r["id"] for r in rows}


#: Claims from the insurer API label alarms too (sql/007 ``claim_outcomes``).
CLAIMS_SOURCE: OutcomeSource | None = ClaimOutcomes()


class _Recorder:
    """A grader that keeps every snapshot it is asked to grade (and grades by the rules)."""

    def __init__(self, policy: RiskPolicy) -> None:
        self._rules = RulesGrader(policy)
        self.seen: list[GradingInput] = []

    @property
    def version(self) -> str:
        return self._rules.version

    def grade_many(self, inputs: Sequence[GradingInput]) -> list[Graded]:
        self.seen.extend(inputs)
        return self._rules.grade_many(inputs)


async def _alarms(
    conn: asyncpg.Connection, since: datetime, until: datetime, fleet: str | None
) -> list[AlarmRef]:
    rows = await conn.fetch(
        """SELECT a.id, a.vehicle_id, a.kind, a.first_seq, a.first_ts
           FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id
           WHERE a.first_ts >= $1 AND a.first_ts < $2 AND NOT (a.kind = ANY($3::text[]))
             AND ($4::text IS NULL OR v.fleet_id = $4)
           ORDER BY a.vehicle_id, a.first_seq""",
        since,
        until,
        list(OUTCOME_KINDS),
        fleet,
    )
    return [AlarmRef(r["id"], r["vehicle_id"], r["kind"], r["first_seq"], r["first_ts"])
            for r in rows]  # fmt: skip


async def _labels(
    conn: asyncpg.Connection, alarms: Sequence[AlarmRef], horizon: timedelta
) -> set[str]:
    rows = await conn.fetch(
        """SELECT a.id FROM alarms a
           WHERE a.id = ANY($1::text[]) AND (
             EXISTS (SELECT 1 FROM events e
                     WHERE e.vehicle_id = a.vehicle_id AND e.kind = ANY($2::text[])
                       AND e.ts > a.first_ts AND e.ts <= a.first_ts + $3)
             OR EXISTS (SELECT 1 FROM alarms o
                        WHERE o.vehicle_id = a.vehicle_id AND o.kind = ANY($2::text[])
                          AND o.first_ts > a.first_ts AND o.first_ts <= a.first_ts + $3))""",
        [a.id for a in alarms],
        list(OUTCOME_KINDS),
        horizon,
    )
    return {r["id"] for r in rows}


def _json(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return value if isinstance(value, dict) else None


async def _items(
    conn: asyncpg.Connection, vehicle_id: str, start: datetime, end: datetime
) -> list[Telemetry | DeviceEvent]:
    tires: dict[int, list[TireReading]] = {}
    for r in await conn.fetch(
        """SELECT seq, pos, kpa, temp_c, sensor_battery_pct FROM tire_readings
           WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3 ORDER BY seq, pos""",
        vehicle_id, start, end,
    ):  # fmt: skip
        tires.setdefault(r["seq"], []).append(
            TireReading(r["pos"], r["kpa"], r["temp_c"], r["sensor_battery_pct"])
        )
    items: list[Telemetry | DeviceEvent] = [
        Telemetry(
            r["seq"],
            r["ts"],
            r["lat"],
            r["lon"],
            r["speed_kmh"],
            r["heading_deg"],
            r["driver_id"],
            r["ignition"],
            r["odometer_km"],
            tuple(tires.get(r["seq"], ())),
            _json(r["extra"]),
        )
        for r in await conn.fetch(
            """SELECT seq, ts, lat, lon, speed_kmh, heading_deg, driver_id, ignition,
                      odometer_km, extra FROM telemetry
               WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3""",
            vehicle_id,
            start,
            end,
        )
    ]
    items += [
        DeviceEvent(
            r["seq"],
            r["ts"],
            r["kind"],
            r["level"],
            r["lat"],
            r["lon"],
            r["speed_kmh"],
            r["driver_id"],
            _json(r["attrs"]),
            _json(r["extra"]),
        )
        for r in await conn.fetch(
            """SELECT seq, ts, kind, level, lat, lon, speed_kmh, driver_id, attrs, extra
               FROM events WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3""",
            vehicle_id,
            start,
            end,
        )
    ]
    items.sort(key=lambda item: item.seq)  # the order the server processed them in
    return items


def replay(
    vehicle: Vehicle,
    items: Sequence[Telemetry | DeviceEvent],
    policy: RiskPolicy,
    index: ZoneIndex,
) -> dict[tuple[int, str], tuple[GradingInput, str | None]]:
    """Feed one vehicle's items through the serving state; (seq, kind) → snapshot, driver."""
    recorder = _Recorder(policy)
    grader: Grader = recorder
    state = VehicleState(vehicle, policy, grader)
    tracker = GeofenceTracker(index)
    out: dict[tuple[int, str], tuple[GradingInput, str | None]] = {}
    for item in items:
        recorder.seen.clear()
        if isinstance(item, Telemetry):
            zones = tracker.update(item.ts, item.lon, item.lat)
            kinds = [c.kind for c in state.observe_telemetry(item, zones)]
        else:
            kinds = [state.observe_event(item).kind]
        for kind, x in zip(kinds, recorder.seen, strict=True):
            out.setdefault((item.seq, kind), (x, item.driver_id))
    return out


async def export_dataset(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    lookback: timedelta = DEFAULT_LOOKBACK,
    fleet: str | None = None,
    policy: RiskPolicy | None = None,
    claims: OutcomeSource | None = CLAIMS_SOURCE,
) -> tuple[list[LabelledAlarm], int]:
    """Labelled rows of the alarms first raised in [since, until), and how many alarms
    could not be matched to a replayed snapshot (their items are missing)."""
    policy = policy or load_policy()
    alarms = await _alarms(conn, since, until, fleet)
    positives = await _labels(conn, alarms, horizon) if alarms else set()
    if claims is not None and alarms:
        positives |= await claims.positives(conn, alarms, horizon)
    _, zones = await zones_snapshot(conn)
    index = ZoneIndex(zones)
    vehicles = {
        r["id"]: Vehicle(
            r["id"],
            r["fleet_id"],
            r["vehicle_class"],
            r["plate"],
            tuple(r["tire_layout"]),
            float(r["placard_kpa"]),
        )
        for r in await conn.fetch(
            "SELECT id, fleet_id, vehicle_class, plate, tire_layout, placard_kpa FROM vehicles"
            " WHERE id = ANY($1::text[])",
            sorted({a.vehicle_id for a in alarms}),
        )
    }
    rows: list[LabelledAlarm] = []
    unmatched = 0
    by_vehicle: dict[str, list[AlarmRef]] = {}
    for a in alarms:
        by_vehicle.setdefault(a.vehicle_id, []).append(a)
    for vid, refs in by_vehicle.items():
        vehicle = vehicles[vid]
        end = max(a.first_ts for a in refs) + timedelta(seconds=1)
        items = await _items(conn, vid, since - lookback, end)
        seen = replay(vehicle, items, policy, index)
        for a in refs:
            found = seen.get((a.first_seq, a.kind))
            if found is None:
                unmatched += 1
                continue
            x, driver = found
            rows.append(LabelledAlarm(a.id, vid, vehicle.fleet_id, driver, x, a.id in positives))
    return rows, unmatched
