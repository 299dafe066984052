"""A unit connects, streams telemetry and an event, gets acks and an intervention."""

from __future__ import annotations

import asyncpg

from tests.helpers import RunningServer, Unit, add_vehicle, event, telemetry


async def test_welcome_telemetry_ack_and_storage(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """Telemetry is stored with its tires, acked after commit, and last_seq starts at 0."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    assert unit.welcome["vehicle_id"] == "SU-E12345"
    assert unit.welcome["last_seq"] == 0
    tires = [{"pos": "1L", "kpa": 830, "temp_c": 41.5}, {"pos": "1R", "kpa": 828, "temp_c": 40.9}]
    await unit.send(telemetry(1, tires=tires))
    await unit.send(telemetry(2))
    ack = await unit.ack_reaching(2)
    assert ack == {"type": "ack", "seq": 2}
    rows = await db.fetch("SELECT seq, speed_kmh, driver_id FROM telemetry ORDER BY seq")
    assert [(r["seq"], r["speed_kmh"], r["driver_id"]) for r in rows] == [
        (1, 62.5, "D-0117"),
        (2, 62.5, "D-0117"),
    ]
    assert await db.fetchval("SELECT count(*) FROM tire_readings") == 2
    assert await db.fetchval("SELECT last_seq FROM ingest_cursor") == 2
    await unit.close()


async def test_event_raises_alarm_and_intervention(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """A level-2 fatigue event at speed becomes an alarm and a voice alert in the cab."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, "fatigue", 2, attrs={"eye_closure_s": 2.4}))
    frame = await unit.committed_intervention()
    assert frame["cause"] == {"seq": 1, "kind": "fatigue"}
    assert frame["severity"] in ("moderate", "severe")
    assert frame["action"] == "voice_alert"
    await unit.send({"type": "intervention_ack", "id": frame["id"], "status": "delivered"})
    await unit.send({"type": "intervention_ack", "id": frame["id"], "status": "played"})
    await unit.send(telemetry(2))
    await unit.ack_reaching(2)
    status = await db.fetchval("SELECT status FROM interventions WHERE id = $1", frame["id"])
    assert status == "played"
    history = await db.fetch(
        "SELECT status, source FROM intervention_status WHERE intervention_id = $1 ORDER BY at",
        frame["id"],
    )
    assert [(h["status"], h["source"]) for h in history] == [
        ("issued", "server"),
        ("delivered", "device"),
        ("played", "device"),
    ]
    alarm = await db.fetchrow("SELECT kind, reason, severity FROM alarms")
    assert alarm["kind"] == "fatigue" and "fatigue" in alarm["reason"]
    await unit.close()
