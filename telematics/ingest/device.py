"""``/v1/device``: token check on the upgrade, then hand the socket to a DeviceConnection."""

from __future__ import annotations

import logging

from aiohttp import web

from telematics.ingest.connection import KEEP_RAW_BYTES, DeviceConnection, welcome_time
from telematics.ingest.feed import DeviceSocket
from telematics.ingest.hub import Hub
from telematics.ingest.keys import HUB
from telematics.protocol.session import DeviceSession
from telematics.store import registry

log = logging.getLogger(__name__)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str) -> web.Response:
    return web.json_response(
        {"error": "unauthorized", "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="device"'},
    )


def _peer_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _abandoned(hub: Hub, request: web.Request) -> web.Response:
    """The unit hung up before its upgrade was answered (it gave up waiting, in a connect
    storm): count it and move on. Left to aiohttp, each one logged a 500 with a traceback,
    CPU the storm's survivors needed."""
    hub.stats.handshakes_abandoned += 1
    log.debug("unit at %s hung up before its upgrade was answered", request.remote)
    return web.Response(status=400, text="the unit hung up during the upgrade")


async def device_endpoint(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    arrival = next(hub.arrivals)  # before any wait: the order the unit dialled in
    token = _bearer(request)
    if token is None:
        return _unauthorized("Authorization: Bearer <device token> is required")
    async with hub.pool.acquire() as db:
        if _peer_gone(request):  # waited long for a connection: is anyone still there?
            return _abandoned(hub, request)
        login = await registry.authenticate(db, token, hub.pending_since())
    if login is None:
        return _unauthorized("unknown or revoked device token")
    vehicle, last_seq = login.vehicle, login.last_seq
    ws = DeviceSocket(
        max_msg_size=KEEP_RAW_BYTES, autoping=False, compress=False, decode_text=False
    )
    try:
        await ws.prepare(request)
    except ConnectionError:
        return _abandoned(hub, request)
    session = DeviceSession(vehicle.id, last_seq, hub.settings.garbage_limit)
    processor = await hub.processor_for(vehicle, last_seq, login.has_active_alarms)
    conn = DeviceConnection(hub, ws, request, session, processor, arrival)
    conn.post(session.welcome(welcome_time()))
    try:
        if not await hub.attach(conn, login.has_pending_interventions):
            return ws  # the unit is on a newer connection already
        await conn.serve()
    except Exception:  # a bug here must cost one connection at most, never the server
        log.exception("connection of %s failed", vehicle.id)
        await ws.close(code=1011, message=b"internal error")
    finally:
        hub.detach(conn)
    return ws
