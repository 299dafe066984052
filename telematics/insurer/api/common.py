"""Helpers every insurer handler uses: the caller's coverage now, JSON responses."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp import web

from telematics.api.keys import CLOCK
from telematics.insurer.api.gate import identity_of
from telematics.insurer.model import Coverage
from telematics.insurer.store.insurers import coverage


async def coverage_of(request: web.Request, conn: asyncpg.Connection, consent: str) -> Coverage:
    return await coverage(conn, identity_of(request).insurer_id, consent, request.app[CLOCK]())


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
