"""Insurer test helpers: an insurer with a policy and key, an API client, severe alarms."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from telematics.insurer.store import insurers
from tests.helpers import RunningServer, Unit, add_vehicle, event


class InsurerApi:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str | None) -> None:
        self.http, self.base, self.key = http, base, key

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        sent.update(headers or {})
        url = self.base + "/api/v1/insurer" + path
        async with self.http.request(method, url, json=body, headers=sent) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()


async def insurer_with_policy(
    db: asyncpg.Connection,
    insurer_id: str,
    *,
    fleet: str | None = None,
    vehicle: str | None = None,
    consent: Sequence[str] = ("events", "locations", "evidence"),
    scopes: Sequence[str] | None = None,
    starts_at: datetime | None = None,
) -> str:
    """Create the insurer (if new) and a policy running from ``starts_at`` for a year;
    returns a new API key."""
    if not await db.fetchval("SELECT true FROM insurers WHERE id = $1", insurer_id):
        await insurers.add_insurer(db, insurer_id, f"{insurer_id} Insurance")
    if fleet is not None:  # vehicles may register into it later
        await db.execute(
            "INSERT INTO fleets (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", fleet
        )
    start = starts_at or datetime.now(UTC) - timedelta(days=30)
    await insurers.add_policy(
        db,
        insurer_id,
        starts_at=start,
        ends_at=start + timedelta(days=365),
        consent=consent,
        fleet_id=fleet,
        vehicle_id=vehicle,
    )
    return await insurers.issue_key(db, insurer_id, scopes)


async def severe_alarm(
    server: RunningServer, unit: Unit, seq: int, kind: str = "collision"
) -> None:
    """A device event graded severe (collisions always are), committed."""
    await unit.send(event(seq, kind, None))
    await unit.ack_reaching(seq)


async def connect_vehicle(server: RunningServer, vehicle: str, fleet: str) -> Unit:
    token = await add_vehicle(server.db_url, vehicle, fleet=fleet)
    return await Unit.connect(server.ws_url, token)
