"""The risk engine end to end, through a real server and PostgreSQL: graded interventions,
the alarm lifecycle and its dispatcher tasks, escalation, geofences and derived alarms."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from telematics.classify.context import load_policy
from telematics.geo.zones import Zone, disc, offset
from telematics.ingest.hub import Hub
from telematics.store import alarms as alarm_store
from telematics.store.zones import add_zone
from tests.helpers import (
    Clock,
    RunningServer,
    Unit,
    add_vehicle,
    event,
    eventually,
    iso,
    start_server,
    telemetry,
)

LON, LAT = 120.5853, 31.2990
MPS_120 = 120 / 3.6  # 33.3 m between fixes at 1 Hz


def _is_intervention(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "intervention")


def _caused_by(kind: str) -> Any:
    return lambda f: f["type"] == "intervention" and f["cause"]["kind"] == kind


def fix(seq: int, ts: datetime, east_m: float, north_m: float, speed: float) -> dict[str, Any]:
    """A telemetry item ``east_m`` / ``north_m`` metres from (LON, LAT)."""
    lon, lat = offset(LON, LAT, east_m, north_m)
    return telemetry(seq, ts=ts, lon=lon, lat=lat, speed_kmh=speed)


def braking(start: datetime, seq0: int = 1) -> list[dict[str, Any]]:
    """1 Hz fixes northwards, 72 km/h then 54 km/h: −5 m/s² between the 3rd and 4th."""
    speeds = [72.0, 72.0, 72.0, 54.0, 54.0]
    north, items = 0.0, []
    for i, v in enumerate(speeds):
        if i:
            north += (speeds[i - 1] + v) / 2 / 3.6  # positions agree with the speeds
        items.append(fix(seq0 + i, start + timedelta(seconds=i), 0.0, north, v))
    return items


async def _levels(db: asyncpg.Connection, task_id: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT level, target FROM escalations WHERE task_id = $1 ORDER BY level", task_id
    )
    return [(r["level"], r["target"]) for r in rows]


# -- graded interventions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "level", "severity", "ack_within_s", "insurer"),
    [
        ("yawning", 1, "general", None, False),
        ("fatigue", 2, "moderate", 300, False),
        ("collision", None, "severe", 120, True),
    ],
)
async def test_each_grade_gets_its_interventions(
    server: RunningServer,
    db: asyncpg.Connection,
    kind: str,
    level: int | None,
    severity: str,
    ack_within_s: int | None,
    insurer: bool,
) -> None:
    """general → voice alert; moderate → + dispatcher task; severe → + insurer notice."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, kind, level))
    frame = await unit.committed_intervention()
    assert (frame["severity"], frame["action"]) == (severity, "voice_alert")
    alarm = await db.fetchrow(
        "SELECT id, severity, reason, active, acknowledged, rules_version FROM alarms"
    )
    assert alarm["severity"] == severity and alarm["active"] and not alarm["acknowledged"]
    assert alarm["rules_version"] == load_policy().version
    assert kind.replace("_", " ") in alarm["reason"] and "km/h" in alarm["reason"]
    audit = await db.fetch(
        "SELECT action, actor FROM alarm_audit WHERE alarm_id = $1 ORDER BY id", alarm["id"]
    )
    assert [(r["action"], r["actor"]) for r in audit] == [("opened", "system")]
    task = await db.fetchrow(
        """SELECT severity, status, due_at - created_at AS within FROM dispatch_tasks
           WHERE alarm_id = $1""",
        alarm["id"],
    )
    if ack_within_s is None:
        assert task is None
    else:
        assert (task["severity"], task["status"]) == (severity, "open")
        assert task["within"] == timedelta(seconds=ack_within_s)
    outbox = await db.fetchrow(
        "SELECT kind, payload FROM insurer_outbox WHERE alarm_id = $1", alarm["id"]
    )
    if insurer:
        payload = orjson.loads(outbox["payload"])
        assert outbox["kind"] == "severe_alarm"
        assert (payload["kind"], payload["severity"], payload["late"]) == (kind, severity, False)
    else:
        assert outbox is None
    await unit.close()


# -- escalation --------------------------------------------------------------------------


async def test_escalation_fires_on_time_and_stops_on_acknowledgement(
    db_url: str, db: asyncpg.Connection
) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        token = await add_vehicle(db_url)
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(event(1, "collision", None))
        await unit.committed_intervention()
        task_id = await db.fetchval("SELECT id FROM dispatch_tasks")
        # the severe chain: shift supervisor at once, safety manager after 2 minutes
        assert await eventually(lambda: _levels(db, task_id)) == [(1, "shift_supervisor")]
        clock.advance(60)
        await asyncio.sleep(1.5)  # more than one tick of the alarm timer
        assert await _levels(db, task_id) == [(1, "shift_supervisor")]  # not due yet
        clock.advance(65)

        async def two() -> bool:
            return len(await _levels(db, task_id)) == 2

        assert await eventually(two)
        assert (await _levels(db, task_id))[1] == (2, "safety_manager")

        await alarm_store.acknowledge_task(db, task_id, "dispatcher Wang", now=clock())
        clock.advance(600)  # the fleet director's step would be due by now
        await asyncio.sleep(2.5)
        assert [level for level, _ in await _levels(db, task_id)] == [1, 2]
        task = await db.fetchrow("SELECT status, next_escalation_at FROM dispatch_tasks")
        assert (task["status"], task["next_escalation_at"]) == ("acknowledged", None)
        assert await db.fetchval("SELECT acknowledged FROM alarms") is True
        await unit.close()
    finally:
        await server.stop()


async def test_restart_mid_alarm_and_escalation(db_url: str, db: asyncpg.Connection) -> None:
    """The server stops with an open alarm and a pending escalation step and comes back
    after the step fell due: the step fires once, late, and the next occurrence extends
    the same alarm."""
    clock = Clock()
    token = await add_vehicle(db_url)
    first = await start_server(db_url, clock=clock)
    unit = await Unit.connect(first.ws_url, token)
    await unit.send(event(1, "collision", None))
    frame = await unit.committed_intervention()
    await unit.send({"type": "intervention_ack", "id": frame["id"], "status": "delivered"})
    await unit.send(telemetry(2))
    await unit.ack_reaching(2)
    alarm_id, task_id = await db.fetchrow("SELECT alarm_id, id FROM dispatch_tasks")
    assert await eventually(lambda: _levels(db, task_id)) == [(1, "shift_supervisor")]
    await unit.close()
    await first.stop()

    clock.advance(150)  # down for 2.5 minutes: the safety manager's step fell due
    second = await start_server(db_url, clock=clock)
    try:

        async def two() -> bool:
            return len(await _levels(db, task_id)) == 2

        assert await eventually(two)
        late = await db.fetchrow(
            "SELECT target, at - due_at AS late FROM escalations WHERE level = 2"
        )
        assert late["target"] == "safety_manager" and late["late"] > timedelta(seconds=20)
        assert await second.hub.alarm_tick() == []  # asked again: nothing fires twice

        unit = await Unit.connect(second.ws_url, token)
        await unit.send(event(3, "collision", None, ts=iso(clock())))
        await unit.ack_reaching(3)
        alarm = await db.fetchrow("SELECT id, occurrences, last_seq, active FROM alarms")
        assert dict(alarm) == {"id": alarm_id, "occurrences": 2, "last_seq": 3, "active": True}
        assert await db.fetchval("SELECT count(*) FROM alarms") == 1
        assert await db.fetchval("SELECT count(*) FROM dispatch_tasks") == 1
        assert await db.fetchval("SELECT count(*) FROM insurer_outbox") == 1
        assert await db.fetchval("SELECT count(*) FROM interventions") == 1  # a repeat: none
        await asyncio.sleep(1.5)
        assert [level for level, _ in await _levels(db, task_id)] == [1, 2]
        await unit.close()
    finally:
        await second.stop()


# -- lifecycle ---------------------------------------------------------------------------


async def test_alarm_cleared_by_a_dispatcher_is_forgotten_by_ingest(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url, "SU-L1")
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, "fatigue", 2))
    await unit.committed_intervention()
    alarm_id = await db.fetchval("SELECT id FROM alarms")
    processor = server.hub.processors["SU-L1"]
    assert processor.alarms["fatigue"].id == alarm_id
    await alarm_store.clear_alarm(db, alarm_id, "dispatcher Wang", "driver called")

    async def forgotten() -> bool:
        return "fatigue" not in processor.alarms  # told by NOTIFY telematics_alarms

    assert await eventually(forgotten)
    await unit.send(event(2, "fatigue", 2))
    frame = await unit.committed_intervention()
    rows = await db.fetch("SELECT id, active, first_seq FROM alarms ORDER BY first_seq")
    assert [(r["active"], r["first_seq"]) for r in rows] == [(False, 1), (True, 2)]
    assert (
        await db.fetchval("SELECT alarm_id FROM interventions WHERE id = $1", frame["id"])
        == (rows[1]["id"])
    )
    await unit.close()


async def test_absent_behaviour_clears_automatically(db_url: str, db: asyncpg.Connection) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        token = await add_vehicle(db_url, "SU-A1")
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(event(1, "yawning", 1))
        await unit.committed_intervention()
        clock.advance(16 * 60)  # yawning clears after 15 minutes without
        await server.hub.alarm_tick()  # (or the timer's own turn, whichever is first)

        async def cleared() -> bool:
            return await db.fetchval("SELECT clear_reason = 'absent' FROM alarms") is True

        assert await eventually(cleared)
        assert await db.fetchval("SELECT cleared_at - first_ts FROM alarms") == timedelta(
            minutes=15
        )
        assert "yawning" not in server.hub.processors["SU-A1"].alarms
        await unit.close()
    finally:
        await server.stop()


async def test_tire_back_to_normal_clears_its_alarm_and_closes_the_task(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    start = datetime.now(UTC) - timedelta(seconds=20)
    hot = [{"pos": "1L", "kpa": 850, "temp_c": 86.0}]
    await unit.send(telemetry(1, ts=start, tires=hot))
    frame = await unit.recv_until(_caused_by("tire_temp_high"))
    await unit.ack_reaching(1)  # interventions go out before the commit
    assert frame["severity"] == "moderate"
    alarm_id = await db.fetchval("SELECT id FROM alarms WHERE kind = 'tire_temp_high'")
    assert await db.fetchval("SELECT status FROM dispatch_tasks WHERE alarm_id = $1", alarm_id) == (
        "open"
    )
    cool = [{"pos": "1L", "kpa": 850, "temp_c": 60.0}]
    await unit.send(telemetry(2, ts=start + timedelta(seconds=10), tires=cool))
    await unit.ack_reaching(2)
    alarm = await db.fetchrow(
        "SELECT active, clear_reason, cleared_by FROM alarms WHERE id = $1", alarm_id
    )
    assert dict(alarm) == {
        "active": False,
        "clear_reason": "condition_ended",
        "cleared_by": "system",
    }
    assert await db.fetchval("SELECT status FROM dispatch_tasks WHERE alarm_id = $1", alarm_id) == (
        "closed"
    )
    actions = await db.fetch(
        "SELECT action FROM alarm_audit WHERE alarm_id = $1 ORDER BY id", alarm_id
    )
    assert [r["action"] for r in actions] == ["opened", "cleared"]
    await unit.close()


# -- derived alarms and geofences --------------------------------------------------------


async def test_harsh_braking_from_telemetry_raises_a_derived_alarm(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send({"type": "batch", "items": braking(datetime.now(UTC) - timedelta(seconds=10))})
    frame = await unit.recv_until(_caused_by("harsh_brake"))
    await unit.ack_reaching(4)
    assert frame["cause"]["seq"] == 4
    alarm = await db.fetchrow(
        "SELECT derived, level, first_seq, reason FROM alarms WHERE kind = 'harsh_brake'"
    )
    assert alarm["derived"] is True and alarm["level"] == 2 and alarm["first_seq"] == 4
    assert alarm["reason"].startswith("harsh brake L2 −5.0 m/s², 72→54 km/h")
    await unit.close()


@pytest.mark.parametrize("vehicle_class", ["hazmat", "coach"])
async def test_geofence_crossing_at_120_kmh_through_a_50_m_zone(
    db_url: str, db: asyncpg.Connection, vehicle_class: str
) -> None:
    zone = Zone("HZ-1", "hazmat_restricted", "Jinji Lake tunnel mouth", disc(LON, LAT, 25))
    await add_zone(db, zone)  # before the start: loaded with the zone index
    server = await start_server(db_url)
    try:
        token = await add_vehicle(db_url, "SU-H0001", vehicle_class)
        unit = await Unit.connect(server.ws_url, token)
        start = datetime.now(UTC) - timedelta(seconds=30)
        # 20 m north of the centre the chord is 30 m, shorter than the 33 m between fixes:
        # no fix lands inside, only the segment from seq 11 to seq 12 crosses the zone
        east0 = -16.7 - 10 * MPS_120
        items = [
            fix(i + 1, start + timedelta(seconds=i), east0 + i * MPS_120, 20, 120.0)
            for i in range(20)
        ]
        await unit.send({"type": "batch", "items": items})
        await unit.ack_reaching(20)
        rows = await db.fetch(
            """SELECT vehicle_id, zone_id, transition, seq FROM zone_transitions
               ORDER BY seq, transition"""
        )
        assert [tuple(r) for r in rows] == [
            ("SU-H0001", "HZ-1", "enter", 12),
            ("SU-H0001", "HZ-1", "exit", 12),
        ]
        alarm = await db.fetchrow(
            """SELECT key, derived, first_seq, severity, reason FROM alarms
               WHERE kind = 'hazmat_restricted_zone'"""
        )
        if vehicle_class == "coach":
            assert alarm is None
        else:
            assert alarm["key"] == "hazmat_restricted_zone:HZ-1" and alarm["derived"] is True
            assert alarm["first_seq"] == 12 and "Jinji Lake tunnel mouth" in alarm["reason"]
            frame = await unit.recv_until(_caused_by("hazmat_restricted_zone"))
            assert frame["severity"] == alarm["severity"]
        await unit.close()
    finally:
        await server.stop()


async def test_zone_added_while_running_takes_effect(
    db_url: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Hub, "zones_poll_s", 0.1)
    server = await start_server(db_url)
    try:
        token = await add_vehicle(db_url, "SU-D1", "bus")
        unit = await Unit.connect(server.ws_url, token)
        start = datetime.now(UTC) - timedelta(seconds=30)
        await unit.send(fix(1, start, -400, 0, 36.0))
        await unit.ack_reaching(1)
        before = server.hub.zones.index.version
        await add_zone(db, Zone("DEPOT-1", "depot", "Suzhou north depot", disc(LON, LAT, 100)))

        async def reloaded() -> bool:
            return server.hub.zones.index.version != before

        assert await eventually(reloaded)
        east = [-300, -200, -50, 0]  # into the 100 m depot between seq 3 and seq 4
        items = [
            fix(i + 2, start + timedelta(seconds=10 * (i + 1)), e, 0, 36.0)
            for i, e in enumerate(east)
        ]
        await unit.send({"type": "batch", "items": items})
        await unit.ack_reaching(5)
        rows = await db.fetch("SELECT zone_id, transition, seq FROM zone_transitions ORDER BY seq")
        assert [tuple(r) for r in rows] == [("DEPOT-1", "enter", 4)]
        await unit.close()
    finally:
        await server.stop()


# -- replays -----------------------------------------------------------------------------


async def test_replayed_batch_creates_no_duplicate_alarm_task_or_intervention(
    db_url: str, db: asyncpg.Connection
) -> None:
    """The unit reconnects to another worker before its first delivery is committed and
    replays the batch: that worker grades it afresh (new alarm ids), and the writer drops
    the replay, lifecycle rows included."""
    token = await add_vehicle(db_url)
    a = await start_server(db_url)
    b = await start_server(db_url)
    try:
        start = datetime.now(UTC) - timedelta(seconds=10)
        batch = {
            "type": "batch",
            "items": [*braking(start), event(6, "collision", None), event(7, "fatigue", 2)],
        }
        blocker = await asyncpg.connect(db_url)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT * FROM ingest_cursor FOR UPDATE")  # writers must wait
        first = await Unit.connect(a.ws_url, token)
        await first.send(batch)

        async def queued_a() -> bool:
            return a.hub.writer.backlog > 0

        async def queued_b() -> bool:
            return b.hub.writer.backlog > 0

        assert await eventually(queued_a)
        second = await Unit.connect(b.ws_url, token)
        assert second.welcome["last_seq"] == 0
        await second.send(batch)
        assert await eventually(queued_b)
        await tx.rollback()
        await blocker.close()
        await first.ack_reaching(7)
        await second.ack_reaching(7)
        dropped = a.hub.writer.stats.duplicates_dropped + b.hub.writer.stats.duplicates_dropped
        assert dropped == 7  # one whole delivery reached a writer and was dropped there
        kinds = await db.fetch("SELECT kind, count(*) AS n FROM alarms GROUP BY kind ORDER BY 1")
        assert [(r["kind"], r["n"]) for r in kinds] == [
            ("collision", 1),
            ("fatigue", 1),
            ("harsh_brake", 1),
        ]
        counts = await db.fetchrow(
            """SELECT (SELECT count(*) FROM interventions) AS interventions,
                      (SELECT count(*) FROM dispatch_tasks) AS tasks,
                      (SELECT count(*) FROM insurer_outbox) AS insurer,
                      (SELECT count(*) FROM alarm_audit WHERE action = 'opened') AS opened,
                      (SELECT count(*) FROM alarm_audit a
                       WHERE NOT EXISTS (SELECT 1 FROM alarms WHERE id = a.alarm_id)) AS orphans,
                      (SELECT count(*) FROM telemetry) AS telemetry,
                      (SELECT count(*) FROM events) AS events"""
        )
        assert dict(counts) == {
            "interventions": 3,
            "tasks": 2,  # moderate fatigue and severe collision; general harsh braking: none
            "insurer": 1,
            "opened": 3,
            "orphans": 0,
            "telemetry": 5,
            "events": 2,
        }
        # the same batch once more on a live connection: duplicates, nothing new at all
        await second.send(batch)
        await second.ack_reaching(7)
        await asyncio.sleep(0.3)
        assert await db.fetchval("SELECT count(*) FROM interventions") == 3
        assert await db.fetchval("SELECT count(*) FROM alarms") == 3
        await first.close()
        await second.close()
    finally:
        await a.stop()
        await b.stop()
