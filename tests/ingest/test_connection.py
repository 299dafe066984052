"""Connection housekeeping: idle timeout, pings, rate limiting, health and stats."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import aiohttp
import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import RunningServer, Unit, add_vehicle, eventually, start_server, telemetry


async def test_silent_unit_is_closed(db_url: str) -> None:
    server = await start_server(db_url, idle_timeout_s=1.5, ping_interval_s=100.0)
    token = await add_vehicle(db_url)
    unit = await Unit.connect(server.ws_url, token, ping_interval=None)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await unit.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    await server.stop()


async def test_unit_answering_pings_stays_connected(db_url: str) -> None:
    server = await start_server(db_url, idle_timeout_s=1.5, ping_interval_s=0.5)
    token = await add_vehicle(db_url)
    unit = await Unit.connect(server.ws_url, token, ping_interval=None)  # only answers pings
    with pytest.raises(TimeoutError):
        await unit.recv(timeout=3.5)  # nothing arrives, and the connection stays open
    await unit.send(telemetry(1))
    await unit.ack_reaching(1)
    await unit.close()
    await server.stop()


async def test_fast_unit_is_slowed_not_dropped(db_url: str, db: asyncpg.Connection) -> None:
    server = await start_server(db_url, max_frames_per_s=50.0, frame_burst=10.0)
    token = await add_vehicle(db_url)
    unit = await Unit.connect(server.ws_url, token)
    for i in range(1, 61):
        await unit.send(telemetry(i))
    warning = await unit.recv_until(lambda f: f["type"] == "error")
    assert warning["code"] == "rate_limited"
    await unit.ack_reaching(60)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 60  # nothing dropped
    await unit.close()
    await server.stop()


async def test_health_and_stats(server: RunningServer) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(telemetry(1))
    await unit.ack_reaching(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http_url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{server.http_url}/v1/stats") as resp:
            stats = await resp.json()
    assert stats["connected"] == 1 and stats["committed_items"] == 1
    await unit.close()


async def _hang_up_during_upgrade(port: int, token: str) -> None:
    """Ask for the upgrade, then reset the connection before any answer (SO_LINGER 0)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/device HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_unit_hanging_up_during_the_upgrade_is_counted_not_logged_as_an_error(
    server: RunningServer, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In a connect storm units give up on slow upgrades; each must not cost a 500 and a
    logged traceback, and the server goes on serving the others."""
    token = await add_vehicle(db_url)
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        for _ in range(3):
            await _hang_up_during_upgrade(server.port, token)

        async def all_counted() -> bool:
            return server.hub.stats.handshakes_abandoned == 3

        assert await eventually(all_counted)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(telemetry(1))
    await unit.ack_reaching(1)
    await unit.close()


async def test_a_handshake_finishing_after_the_units_newer_connection_does_not_replace_it(
    server: RunningServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a connect storm a unit gives up on a slow upgrade and dials again; when the
    abandoned upgrade finishes last, the unit's live connection must stay."""
    from telematics.store import registry

    token = await add_vehicle(db_url)
    authenticate = registry.authenticate
    calls = 0

    async def first_one_slow(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:  # the database answers the first upgrade late (fault injected)
            await asyncio.sleep(1.5)
        return await authenticate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "authenticate", first_one_slow)
    slow = asyncio.create_task(Unit.connect(server.ws_url, token))
    await asyncio.sleep(0.3)
    live = await Unit.connect(server.ws_url, token)  # dialled again: in first
    with pytest.raises(ConnectionClosed) as closed:  # its upgrade finishes last: closed
        await slow
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert "superseded" in closed.value.rcvd.reason
    await live.send(telemetry(1))
    assert (await live.ack_reaching(1))["seq"] == 1  # still the unit's connection
    assert server.hub.stats.handshakes_superseded == 1
    await live.close()
