"""``/v1/device``: token check on the upgrade, then hand the socket to a DeviceConnection."""

from __future__ import annotations

import logging

from aiohttp import web

from telematics.ingest.connection import KEEP_RAW_BYTES, DeviceConnection, welcome_time
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


async def device_endpoint(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    token = _bearer(request)
    if token is None:
        return _unauthorized("Authorization: Bearer <device token> is required")
    async with hub.pool.acquire() as db:
        found = await registry.authenticate(db, token)
    if found is None:
        return _unauthorized("unknown or revoked device token")
    vehicle, last_seq = found
    ws = web.WebSocketResponse(
        max_msg_size=KEEP_RAW_BYTES, autoping=False, compress=False, decode_text=False
    )
    await ws.prepare(request)
    session = DeviceSession(vehicle.id, last_seq, hub.settings.garbage_limit)
    conn = DeviceConnection(hub, ws, request, session, await hub.processor_for(vehicle, last_seq))
    conn.post(session.welcome(welcome_time()))
    await hub.attach(conn)
    try:
        await conn.serve()
    except Exception:  # a bug here must cost one connection at most, never the server
        log.exception("connection of %s failed", vehicle.id)
        await ws.close(code=1011, message=b"internal error")
    finally:
        hub.detach(conn)
    return ws
