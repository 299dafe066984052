"""Acks follow commits; replays never duplicate; restarts lose nothing; backpressure."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from websockets.exceptions import InvalidStatus

from telematics.store import registry
from tests.helpers import (
    RunningServer,
    Unit,
    add_vehicle,
    eventually,
    start_server,
    telemetry,
)


async def test_ack_only_after_commit(server: RunningServer, db: asyncpg.Connection) -> None:
    """While the database cannot commit, no ack is sent; once it can, the ack follows."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    blocker = await asyncpg.connect(server.db_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT * FROM ingest_cursor FOR UPDATE")  # the writer must wait
    await unit.send(telemetry(1))
    with pytest.raises(TimeoutError):
        await unit.ack_reaching(1, timeout=1.0)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 0
    await tx.rollback()
    await blocker.close()
    await unit.ack_reaching(1)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 1
    await unit.close()


async def test_replay_after_reconnect_never_duplicates(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send({"type": "batch", "items": [telemetry(i) for i in range(1, 11)]})
    await unit.ack_reaching(10)
    await unit.close()
    # The unit did not see the ack (say) and replays 1..15 on the next connection.
    again = await Unit.connect(server.ws_url, token)
    assert again.welcome["last_seq"] == 10
    await again.send({"type": "batch", "items": [telemetry(i) for i in range(1, 16)]})
    await again.ack_reaching(15)
    await again.send(telemetry(3))  # a lone duplicate is acked again at once
    assert (await again.ack_reaching(15))["seq"] == 15
    seqs = await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM telemetry")
    assert seqs == list(range(1, 16))
    assert await db.fetchval("SELECT count(*) FROM rejected_items") == 0
    await again.close()


async def test_two_connections_of_one_vehicle_store_once(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """A stale connection and its replacement send the same seqs: stored once."""
    token = await add_vehicle(server.db_url)
    first = await Unit.connect(server.ws_url, token)
    second = await Unit.connect(server.ws_url, token)  # replaces the first
    await second.send({"type": "batch", "items": [telemetry(i) for i in range(1, 6)]})
    await second.ack_reaching(5)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 5
    await first.close()
    await second.close()


async def test_server_restart_keeps_everything(db_url: str, db: asyncpg.Connection) -> None:
    token = await add_vehicle(db_url)
    first = await start_server(db_url)
    unit = await Unit.connect(first.ws_url, token)
    await unit.send({"type": "batch", "items": [telemetry(i) for i in range(1, 101)]})
    await unit.ack_reaching(100)
    await first.stop()
    second = await start_server(db_url)
    again = await Unit.connect(second.ws_url, token)
    assert again.welcome["last_seq"] == 100
    await again.send({"type": "batch", "items": [telemetry(i) for i in range(90, 121)]})
    await again.ack_reaching(120)
    assert await db.fetchval("SELECT count(DISTINCT seq), count(*) FROM telemetry") == 120
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 120
    await again.close()
    await second.stop()


async def test_items_in_flight_at_shutdown_are_committed(
    db_url: str, db: asyncpg.Connection
) -> None:
    """A graceful stop commits what was received before closing the units."""
    token = await add_vehicle(db_url)
    server = await start_server(db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send({"type": "batch", "items": [telemetry(i) for i in range(1, 501)]})
    await unit.ack_reaching(500)
    await server.stop()
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 500


async def test_revoked_and_unknown_tokens_are_refused(server: RunningServer) -> None:
    token = await add_vehicle(server.db_url)
    conn = await asyncpg.connect(server.db_url)
    assert await registry.revoke_vehicle(conn, "SU-E12345") == 1
    await conn.close()
    for bad in (token, "not-a-token"):
        with pytest.raises(InvalidStatus) as refused:
            await Unit.connect(server.ws_url, bad)
        assert refused.value.response.status_code == 401


async def test_missing_token_is_refused(server: RunningServer) -> None:
    from websockets.asyncio.client import connect

    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url)
    assert refused.value.response.status_code == 401


async def test_backpressure_bounds_the_backlog(db_url: str, db: asyncpg.Connection) -> None:
    """With the database stalled, the server stops reading instead of queueing without end."""
    token = await add_vehicle(db_url)
    server = await start_server(db_url, max_pending_items=50)
    unit = await Unit.connect(server.ws_url, token)
    blocker = await asyncpg.connect(db_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT * FROM ingest_cursor FOR UPDATE")
    for i in range(1, 401):
        await unit.send(telemetry(i))
    await asyncio.sleep(1.0)
    hub = server.hub
    assert hub.writer.backlog <= 50 + 2  # bounded: at most one frame beyond the limit
    assert hub.stats.frames < 400  # the rest waits unread in the socket
    await tx.rollback()
    await blocker.close()
    await unit.ack_reaching(400, timeout=20)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 400
    await unit.close()
    await server.stop()


async def test_writer_retries_when_database_connection_drops(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """Killing the writer's database sessions delays acks but loses nothing."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(telemetry(1))
    await unit.ack_reaching(1)
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    for i in range(2, 12):
        await unit.send(telemetry(i))
    await unit.ack_reaching(11, timeout=20)
    assert await eventually(lambda: db.fetchval("SELECT count(*) = 11 FROM telemetry"))
    await unit.close()
