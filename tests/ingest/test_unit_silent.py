"""The unit_silent alarm end to end: a real server (or two, or one restarted), real units
over websockets, PostgreSQL. The server's clock is moved past ``silent_after`` (5 min by
the default policy) instead of waiting; ``alarm_tick`` is the timer's turn, called at
once rather than waited for (the timer itself runs too, every second: both together
must still open one alarm)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import asyncpg
import orjson

from telematics.store.operators import add_operator, new_operator_token
from tests.helpers import Clock, RunningServer, Unit, add_vehicle, start_server, telemetry

SILENT_AFTER_S = 300


async def drive(server: RunningServer, token: str, clock: Clock, speed: float, n: int = 3) -> None:
    """A unit streams ``n`` fixes at ``speed`` (timed by the server's clock), then goes
    quiet: the connection drops (crash, power cut, no coverage)."""
    unit = await Unit.connect(server.ws_url, token)
    first = unit.welcome["last_seq"] + 1
    for seq in range(first, first + n):
        await unit.send(telemetry(seq, ts=clock(), speed_kmh=speed))
    await unit.ack_reaching(first + n - 1)
    await unit.close()


async def silent_alarms(db: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        """SELECT id, vehicle_id, severity, reason, active, derived, clear_reason, first_ts,
                  model_version
           FROM alarms WHERE kind = 'unit_silent' ORDER BY first_ts"""
    )
    return rows


async def test_silent_on_the_road_opens_one_alarm_and_the_unit_clears_it_on_return(
    db_url: str, db: asyncpg.Connection
) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        token = await add_vehicle(db_url, "SU-S1", "coach")
        await drive(server, token, clock, 87.0)
        await server.hub.alarm_tick()
        assert await silent_alarms(db) == []  # just dropped: not silent yet
        clock.advance(SILENT_AFTER_S + 61)
        await asyncio.gather(server.hub.alarm_tick(), server.hub.alarm_tick())
        await asyncio.sleep(1.2)  # and the timer's own turn
        [alarm] = await silent_alarms(db)
        assert alarm["vehicle_id"] == "SU-S1" and alarm["active"] and alarm["derived"]
        assert alarm["severity"] == "moderate" and alarm["model_version"] is None
        # (", night" follows when the test runs at night in Suzhou)
        assert alarm["reason"].startswith("unit silent 6 min, last seen at 87 km/h, coach")
        task = await db.fetchrow(
            "SELECT severity, status FROM dispatch_tasks WHERE alarm_id = $1", alarm["id"]
        )
        assert (task["severity"], task["status"]) == ("moderate", "open")
        assert await db.fetchval("SELECT count(*) FROM interventions") == 0  # none for the cab
        assert await db.fetchval("SELECT count(*) FROM insurer_outbox") == 0  # not severe

        # Back: it reconnects and replays what it recorded while out of coverage (old
        # timestamps); the alarm clears as of the reconnect, and nothing raises it again.
        unit = await Unit.connect(server.ws_url, token)
        back = clock()
        gap = [
            telemetry(seq, ts=back - timedelta(seconds=300 - seq), speed_kmh=80.0) for seq in (4, 5)
        ]
        await unit.send({"type": "batch", "items": gap})
        await unit.ack_reaching(5)
        await server.hub.alarm_tick()
        [alarm] = await silent_alarms(db)
        assert not alarm["active"] and alarm["clear_reason"] == "unit_heard"
        audit = await db.fetch(
            "SELECT action, actor, at, detail FROM alarm_audit WHERE alarm_id = $1 ORDER BY id",
            alarm["id"],
        )
        assert [(a["action"], a["actor"]) for a in audit] == [
            ("opened", "system"),
            ("cleared", "system"),
        ]
        assert orjson.loads(audit[1]["detail"])["reason"] == "unit_heard"
        assert abs((audit[1]["at"] - back).total_seconds()) < 2
        assert (
            await db.fetchval("SELECT status FROM dispatch_tasks WHERE alarm_id = $1", alarm["id"])
            == "closed"
        )
        clock.advance(60)
        await server.hub.alarm_tick()
        assert len(await silent_alarms(db)) == 1
        await unit.close()
    finally:
        await server.stop()


async def test_a_vehicle_parked_when_its_unit_went_quiet_raises_nothing(
    db_url: str, db: asyncpg.Connection
) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        await drive(server, await add_vehicle(db_url, "SU-P1", "coach"), clock, 4.0)
        clock.advance(3600)
        await server.hub.alarm_tick()
        assert await silent_alarms(db) == []
    finally:
        await server.stop()


async def test_hazmat_is_severe_and_shows_in_the_operators_alarm_queue(
    db_url: str, db: asyncpg.Connection
) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        await drive(server, await add_vehicle(db_url, "SU-H1", "hazmat"), clock, 87.0)
        clock.advance(SILENT_AFTER_S + 1)
        await server.hub.alarm_tick()
        [alarm] = await silent_alarms(db)
        assert alarm["severity"] == "severe" and "87 km/h, hazmat" in alarm["reason"]
        outbox = await db.fetchrow("SELECT payload FROM insurer_outbox")
        assert orjson.loads(outbox["payload"])["kind"] == "unit_silent"
        await add_operator(db, "wang", "dispatcher", None)
        token = await new_operator_token(db, "wang")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server.http_url}/api/v1/alarms?kind=unit_silent",
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            assert resp.status == 200
            [row] = (await resp.json())["alarms"]
        assert (row["kind"], row["severity"], row["vehicle_id"]) == (
            "unit_silent",
            "severe",
            "SU-H1",
        )
        assert row["task"]["status"] == "open" and row["interventions"] == []
    finally:
        await server.stop()


async def test_time_the_server_was_down_is_not_silence(db_url: str, db: asyncpg.Connection) -> None:
    """Both units were driving when the server stopped; it is down 20 minutes. One unit
    comes back after the restart and then goes silent: that silence counts. The other
    never comes back: nobody knows what it did while the server was down (most likely it
    parked), so no alarm, however long it stays away."""
    clock = Clock()
    gone = await add_vehicle(db_url, "SU-GONE", "coach")
    back = await add_vehicle(db_url, "SU-BACK", "coach")
    first = await start_server(db_url, clock=clock)
    await drive(first, gone, clock, 90.0)
    await drive(first, back, clock, 90.0)
    await first.stop()

    clock.advance(20 * 60)
    second = await start_server(db_url, clock=clock)
    try:
        await second.hub.alarm_tick()
        assert await silent_alarms(db) == []  # not for the 20 minutes of downtime
        await drive(second, back, clock, 90.0)
        clock.advance(SILENT_AFTER_S + 1)
        await second.hub.alarm_tick()
        clock.advance(3600)
        await second.hub.alarm_tick()
        assert [a["vehicle_id"] for a in await silent_alarms(db)] == ["SU-BACK"]
    finally:
        await second.stop()


async def test_two_workers_open_one_alarm(db_url: str, db: asyncpg.Connection) -> None:
    """Two server processes on one database (``serve --workers 2``), their alarm timers
    looking at the same silent unit at the same moment: one alarm, one task."""
    clock = Clock()
    one = await start_server(db_url, clock=clock)
    two = await start_server(db_url, clock=clock)
    try:
        await drive(one, await add_vehicle(db_url, "SU-W1", "hazmat"), clock, 70.0)
        clock.advance(SILENT_AFTER_S + 1)
        await asyncio.gather(*(s.hub.alarm_tick() for s in (one, two, one, two)))
        assert len(await silent_alarms(db)) == 1
        assert await db.fetchval("SELECT count(*) FROM dispatch_tasks") == 1
        assert await db.fetchval("SELECT count(*) FROM insurer_outbox") == 1
    finally:
        await one.stop()
        await two.stop()


async def test_silence_while_the_database_failed_is_not_counted(
    db_url: str, db: asyncpg.Connection
) -> None:
    """The writer had to retry (the database refused or went away): what units sent
    meanwhile may not be stored, so silence counts afresh from the next good turn."""
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        await drive(server, await add_vehicle(db_url, "SU-D1", "coach"), clock, 80.0)
        clock.advance(SILENT_AFTER_S + 1)
        server.hub.writer.stats.retries += 1
        await server.hub.alarm_tick()
        assert await silent_alarms(db) == []
        await server.hub.alarm_tick()
        clock.advance(3600)
        await server.hub.alarm_tick()
        assert await silent_alarms(db) == []  # it went quiet before the failure
    finally:
        await server.stop()


async def test_the_latest_contact_rides_on_the_cursor(db_url: str, db: asyncpg.Connection) -> None:
    """Items stored and reconnects both count as hearing from the unit, in the server's
    clock (the unit's own timestamps may be old: a replay)."""
    clock = Clock()
    clock.advance(-3600)  # the server's clock an hour behind the database's
    server = await start_server(db_url, clock=clock)
    try:
        token = await add_vehicle(db_url, "SU-C1")
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(telemetry(1, ts=clock() - timedelta(days=1)))
        await unit.ack_reaching(1)
        heard = await db.fetchval("SELECT heard_at FROM ingest_cursor")
        assert abs((heard - clock()).total_seconds()) < 5
        await unit.close()
        clock.advance(120)
        unit = await Unit.connect(server.ws_url, token)
        await server.hub.alarm_tick()
        reconnected = await db.fetchval("SELECT heard_at FROM ingest_cursor")
        assert 115 < (reconnected - heard).total_seconds() < 125
        await unit.close()
    finally:
        await server.stop()
