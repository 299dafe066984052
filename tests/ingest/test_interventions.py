"""Interventions: resent until the cab acknowledges, also after a reconnect; grouped
repeats; rises in severity; stale replays stay out of the cab."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.helpers import (
    RunningServer,
    Unit,
    add_vehicle,
    event,
    eventually,
    iso,
    start_server,
    telemetry,
)


def _is_intervention(frame: dict[str, object]) -> bool:
    return frame["type"] == "intervention"


async def test_resent_until_delivered(db_url: str, db: asyncpg.Connection) -> None:
    server = await start_server(db_url, intervention_resend_s=0.5)
    token = await add_vehicle(db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, "phone_call", 1))
    first = await unit.committed_intervention()
    again = await unit.recv_until(_is_intervention, timeout=5)  # not acked: resent
    assert again == first
    await unit.send({"type": "intervention_ack", "id": first["id"], "status": "delivered"})
    await unit.send(telemetry(2))
    await unit.ack_reaching(2)
    with pytest.raises(TimeoutError):
        await unit.recv_until(_is_intervention, timeout=2.5)  # delivered: no more resends
    assert await db.fetchval("SELECT status FROM interventions") == "delivered"
    await unit.close()
    await server.stop()


async def test_resent_on_the_next_connection(server: RunningServer, db: asyncpg.Connection) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, "phone_call", 1))
    first = await unit.committed_intervention()
    await unit.close()  # gone before acknowledging
    again = await Unit.connect(server.ws_url, token)
    resent = await again.recv_until(_is_intervention, timeout=3)
    assert resent["id"] == first["id"]
    await again.send({"type": "intervention_ack", "id": first["id"], "status": "delivered"})
    delivered = "SELECT status = 'delivered' FROM interventions WHERE id = $1"
    assert await eventually(lambda: db.fetchval(delivered, first["id"]))
    await again.close()
    third = await Unit.connect(server.ws_url, token)
    with pytest.raises(TimeoutError):
        await third.recv_until(_is_intervention, timeout=1.5)
    await third.close()


async def test_repeats_grouped_and_rise_goes_out(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """Repeats extend one open alarm; a rise in severity alerts again (general is a voice
    alert too: escalation.json)."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, "smoking", 1))
    first = await unit.committed_intervention()
    assert first["severity"] == "general" and first["action"] == "voice_alert"
    await unit.send(event(2, "smoking", 1))
    await unit.send(event(3, "smoking", 1))
    await unit.ack_reaching(3)
    await unit.send(event(4, "smoking", 2, speed_kmh=90.0))
    risen = await unit.committed_intervention()
    assert risen["severity"] == "moderate" and risen["cause"]["seq"] == 4
    alarm = await db.fetchrow("SELECT occurrences, severity, first_seq, last_seq FROM alarms")
    assert dict(alarm) == {"occurrences": 4, "severity": "moderate", "first_seq": 1, "last_seq": 4}
    assert await db.fetchval("SELECT count(*) FROM interventions") == 2
    await unit.close()


async def test_replayed_batch_raises_no_second_alarm(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    batch = {"type": "batch", "items": [telemetry(1), event(2, "fatigue", 2), telemetry(3)]}
    await unit.send(batch)
    await unit.ack_reaching(3)
    await unit.close()
    again = await Unit.connect(server.ws_url, token)
    await again.send(batch)
    await again.ack_reaching(3)
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM alarms") == 1
    assert await db.fetchval("SELECT count(*) FROM interventions") == 1
    await again.close()


async def test_a_vehicle_back_from_another_worker_extends_its_open_alarm(
    db_url: str, db: asyncpg.Connection
) -> None:
    """Two workers: the first one keeps the vehicle's processor after the unit leaves; the
    alarm the second one opened meanwhile must be extended there, not opened twice."""
    token = await add_vehicle(db_url)
    first, second = await start_server(db_url), await start_server(db_url)
    try:
        unit = await Unit.connect(first.ws_url, token)
        await unit.send(telemetry(1))
        await unit.ack_reaching(1)
        await unit.close()
        unit = await Unit.connect(second.ws_url, token)
        await unit.send(event(2, "smoking", 1))
        await unit.committed_intervention()
        await unit.close()
        unit = await Unit.connect(first.ws_url, token)
        await unit.send(event(3, "smoking", 1))
        await unit.ack_reaching(3)
        await unit.close()
        alarms = await db.fetch("SELECT first_seq, last_seq, occurrences FROM alarms")
        assert [tuple(a) for a in alarms] == [(2, 3, 2)]
        assert await db.fetchval("SELECT count(*) FROM interventions") == 1
    finally:
        await first.stop()
        await second.stop()


async def test_items_stored_first_by_another_worker_leave_one_alarm_and_lose_nothing(
    db_url: str, db: asyncpg.Connection
) -> None:
    """A unit leaves a worker whose commit is still pending and replays the same items to
    another worker, which stores them first: the first worker's alarm for them is dropped
    as a duplicate. Its next occurrence there must rise the stored alarm, and the item
    that raised it must be stored, not refused."""
    token = await add_vehicle(db_url)
    slow = await start_server(db_url, flush_interval_ms=2000)  # commits at most every 2 s
    fast = await start_server(db_url)
    try:
        unit = await Unit.connect(slow.ws_url, token)
        await unit.send(telemetry(1))
        await unit.ack_reaching(1)  # just committed: the next commit waits 2 s
        await unit.send(event(2, "smoking", 1))
        await unit.recv_until(_is_intervention)  # graded and alerted, not yet stored
        await unit.close()
        unit = await Unit.connect(fast.ws_url, token)
        assert unit.welcome["last_seq"] == 1
        await unit.send(event(2, "smoking", 1))
        await unit.ack_reaching(2)
        await unit.close()
        assert await eventually(lambda: _writer_idle(slow), timeout=5)  # item 2 dropped there
        unit = await Unit.connect(slow.ws_url, token)
        await unit.send(event(3, "smoking", 2, speed_kmh=90.0))
        risen = await unit.recv_until(lambda f: _is_intervention(f) and f["cause"]["seq"] == 3)
        await unit.ack_reaching(3)
        await unit.close()
        assert await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM events") == [2, 3]
        assert await db.fetchval("SELECT count(*) FROM rejected_items") == 0
        alarm = await db.fetchrow("SELECT id, severity, first_seq, last_seq, active FROM alarms")
        assert (alarm["severity"], alarm["first_seq"], alarm["last_seq"]) == ("moderate", 2, 3)
        assert await db.fetchval("SELECT count(*) FROM alarms") == 1
        stored = await db.fetch("SELECT id, alarm_id, cause_seq FROM interventions ORDER BY 3")
        assert [tuple(r) for r in stored] == [
            (stored[0]["id"], alarm["id"], 2),
            (risen["id"], alarm["id"], 3),
        ]
    finally:
        await slow.stop()
        await fast.stop()


async def test_an_item_rising_an_alarm_dropped_in_the_same_commit_is_stored(
    db_url: str, db: asyncpg.Connection
) -> None:
    """A unit leaves a worker whose commit is pending, replays the same items to another
    worker, which stores them first, and is back before the first worker commits: its
    alarm for them is dropped as a duplicate in the very commit that holds the next
    item's rise of it. That item is stored all the same (the intervention of an alarm
    that is not stored is skipped), not refused."""
    token = await add_vehicle(db_url)
    slow = await start_server(db_url, flush_interval_ms=2000)
    fast = await start_server(db_url)
    try:
        unit = await Unit.connect(slow.ws_url, token)
        await unit.send(telemetry(1))
        await unit.ack_reaching(1)
        await unit.send(event(2, "smoking", 1))
        await unit.recv_until(_is_intervention)
        await unit.close()
        unit = await Unit.connect(fast.ws_url, token)
        await unit.send(event(2, "smoking", 1))
        await unit.ack_reaching(2)
        await unit.close()
        unit = await Unit.connect(slow.ws_url, token)
        assert slow.hub.writer.backlog > 0  # item 2 still waits there
        await unit.send(event(3, "smoking", 2, speed_kmh=90.0))
        await unit.ack_reaching(3)
        await unit.close()
        assert await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM events") == [2, 3]
        assert await db.fetchval("SELECT count(*) FROM rejected_items") == 0
        assert await db.fetchval("SELECT count(*) FROM alarms") == 1
    finally:
        await slow.stop()
        await fast.stop()


async def _writer_idle(server: RunningServer) -> bool:
    return server.hub.writer.backlog == 0


async def test_stale_replay_is_stored_but_not_sent_to_the_cab(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    old = iso(datetime.now(UTC) - timedelta(minutes=10))
    await unit.send({"type": "batch", "items": [event(1, "fatigue", 2, ts=old)]})
    await unit.ack_reaching(1)
    with pytest.raises(TimeoutError):
        await unit.recv_until(_is_intervention, timeout=1.0)
    alarm = await db.fetchrow("SELECT late, kind FROM alarms")
    assert alarm["late"] is True and alarm["kind"] == "fatigue"
    assert await db.fetchval("SELECT count(*) FROM interventions") == 0
    await unit.close()


async def test_derived_fast_leak_reaches_the_cab(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """A tire losing pressure fast (from telemetry alone) triggers an intervention."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    start = datetime.now(UTC) - timedelta(seconds=60)
    items = []
    for i in range(7):  # 10 s apart, front-left tire loses 10 kPa every 10 s (60 kPa/min)
        tires = [{"pos": "1L", "kpa": 850 - 10 * i, "temp_c": 40.0},
                 {"pos": "1R", "kpa": 850, "temp_c": 40.0}]  # fmt: skip
        items.append(telemetry(i + 1, ts=start + timedelta(seconds=10 * i), speed_kmh=90.0,
                               tires=tires))  # fmt: skip
    await unit.send({"type": "batch", "items": items})
    frame = await unit.committed_intervention()
    assert frame["cause"]["kind"] == "tire_fast_leak"
    assert frame["severity"] == "severe"
    alarm = await db.fetchrow("SELECT derived, tire_pos, reason FROM alarms")
    assert alarm["derived"] is True and alarm["tire_pos"] == "1L"
    assert "1L" in alarm["reason"]
    await unit.close()
