"""``/api/v1/live``: the dashboard's WebSocket. A snapshot on connect (so a reconnect
resynchronises), then vehicle positions at most once per vehicle per second and alarms
as they are raised or change.

Every server worker runs one :class:`LiveFeed` that reads the shared truth, PostgreSQL:
it polls ``vehicle_status`` once a second and listens to the alarm channels the batch
writer and the lifecycle store notify at commit. So a browser sees the whole fleet
whichever worker it is connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp import WSMsgType, web

from telematics.api.alarms import queue_rows
from telematics.api.auth import operator_of
from telematics.api.errors import ApiError
from telematics.store import alarms as alarm_store
from telematics.store import fleetview
from telematics.store.notify import listen_forever
from telematics.store.operators import Operator

log = logging.getLogger(__name__)

POLL_S = 1.0  # positions: at most one update per vehicle per second
_SEND_TIMEOUT_S = 5.0  # a browser that cannot take a frame in this long is dropped
_SNAPSHOT_ALARMS = 500


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    operator: Operator


@dataclass
class LiveFeed:
    pool: asyncpg.Pool
    database_url: str
    clock: Callable[[], datetime]
    clients: set[_Client] = field(default_factory=set)
    _fleet_of: dict[str, str] = field(default_factory=dict)
    _sent: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # vehicle → what was sent
    _pending_alarms: set[str] = field(default_factory=set)
    _alarm_wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(self._poll_positions(), self._listen(), self._push_alarms())

    # -- connections -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise ApiError(403, "forbidden", "Origin: cross-site WebSocket refused")
        operator = operator_of(request)
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        client = _Client(ws, operator)
        async with self.pool.acquire() as conn:
            vehicles = await fleetview.vehicles(conn, operator.fleet_filter(), self.clock())
            alarms = await alarm_store.open_alarms(
                conn,
                operator.fleet_filter(),
                include_cleared_unacked=True,
                limit=_SNAPSHOT_ALARMS,
            )
            rows = await queue_rows(conn, alarms)
        for v in vehicles:
            self._fleet_of[v["id"]] = v["fleet"]
        await ws.send_str(
            orjson.dumps({"type": "snapshot", "vehicles": vehicles, "alarms": rows}).decode()
        )
        self.clients.add(client)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str('{"type":"pong"}')
        finally:
            self.clients.discard(client)
        return ws

    async def _send(self, make: Callable[[Operator], dict[str, Any] | None]) -> None:
        for client in list(self.clients):
            frame = make(client.operator)
            if frame is None:
                continue
            try:
                await asyncio.wait_for(
                    client.ws.send_str(orjson.dumps(frame).decode()), _SEND_TIMEOUT_S
                )
            except (TimeoutError, ConnectionError, RuntimeError):
                self.clients.discard(client)
                with contextlib.suppress(Exception):
                    await client.ws.close()

    def _visible(self, operator: Operator, vehicle_id: str) -> bool:
        fleet = self._fleet_of.get(vehicle_id)
        return fleet is not None and operator.sees_fleet(fleet)

    # -- positions ---------------------------------------------------------------------

    async def _poll_positions(self) -> None:
        since: datetime | None = None
        while True:
            await asyncio.sleep(POLL_S)
            if not self.clients:
                since = None
                continue
            now = self.clock()
            try:
                async with self.pool.acquire() as conn:
                    # Overlap the window: a fix stamped just before the last poll may
                    # have committed just after it. What was already sent is skipped.
                    changed = await fleetview.vehicles(
                        conn, None, now, changed_since=None if since is None else since
                    )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("live positions poll failed: %r", exc)
                continue
            since = now - timedelta(seconds=5)
            await self._send_vehicles(changed)

    async def _send_vehicles(self, rows: list[dict[str, Any]]) -> None:
        fresh = []
        for v in rows:
            self._fleet_of[v["id"]] = v["fleet"]
            sig = (v["last_seen"], v["worst_severity"], v["online"], v["open_alarms"])
            if self._sent.get(v["id"]) != sig:
                self._sent[v["id"]] = sig
                fresh.append(v)
        if not fresh:
            return

        def frame(op: Operator) -> dict[str, Any] | None:
            mine = [v for v in fresh if op.sees_fleet(v["fleet"])]
            return {"type": "vehicles", "vehicles": mine} if mine else None

        await self._send(frame)

    # -- alarms ------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Missed notices (while reconnecting) are caught up by the next snapshot: the
        page resynchronises when its socket reconnects."""
        channels = [alarm_store.RAISED_CHANNEL, alarm_store.CHANNEL]
        await listen_forever(self.database_url, channels, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            alarm_id = orjson.loads(payload)["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if self.clients:
            self._pending_alarms.add(alarm_id)
            self._alarm_wakeup.set()

    async def _push_alarms(self) -> None:
        while True:
            await self._alarm_wakeup.wait()
            self._alarm_wakeup.clear()
            ids, self._pending_alarms = self._pending_alarms, set()
            try:
                async with self.pool.acquire() as conn:
                    alarms = await alarm_store.alarms_by_id(conn, sorted(ids))
                    rows = await queue_rows(conn, alarms)
                    vehicles = await fleetview.vehicles(
                        conn, None, self.clock(), vehicle_ids=sorted({a.vehicle_id for a in alarms})
                    )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("live alarm push failed: %r", exc)
                continue
            for v in vehicles:
                self._fleet_of[v["id"]] = v["fleet"]
            await self._send(self._alarms_frame(rows))
            await self._send_vehicles(vehicles)

    def _alarms_frame(
        self, rows: list[dict[str, Any]]
    ) -> Callable[[Operator], dict[str, Any] | None]:
        def frame(op: Operator) -> dict[str, Any] | None:
            mine = [r for r in rows if self._visible(op, r["vehicle_id"])]
            return {"type": "alarms", "alarms": mine} if mine else None

        return frame


LIVE = web.AppKey("live_feed", LiveFeed)


async def live_endpoint(request: web.Request) -> web.StreamResponse:
    return await request.app[LIVE].handle(request)


async def close_live(app: web.Application) -> None:
    """On shutdown: end the browsers' sockets so their handlers return now."""
    feed = app.get(LIVE)
    if feed is None:
        return
    for client in list(feed.clients):
        with contextlib.suppress(Exception):
            await client.ws.close()
