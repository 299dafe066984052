"""Connection housekeeping: idle timeout, pings, rate limiting, health and stats."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import RunningServer, Unit, add_vehicle, start_server, telemetry


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
