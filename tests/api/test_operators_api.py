"""The operators' API against a real server and PostgreSQL: auth, fleet scope, zones and
the alarm lifecycle, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from telematics.store.operators import add_operator, disable_operator, new_operator_token
from tests.helpers import RunningServer, Unit, add_vehicle, event, eventually

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[120.60, 31.30], [120.61, 31.30], [120.61, 31.31], [120.60, 31.31], [120.60, 31.30]]
    ],
}


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            data = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, data


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def api_as(
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
    server: RunningServer,
    who: str,
    role: str,
    fleets: list[str] | None,
) -> Api:
    await add_operator(db, who, role, fleets)
    return Api(http, server.http_url, await new_operator_token(db, who))


async def open_alarm(server: RunningServer, vehicle: str, fleet: str, kind: str = "fatigue") -> str:
    token = await add_vehicle(server.db_url, vehicle, fleet=fleet)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(event(1, kind, 2))
    frame = await unit.committed_intervention()
    await unit.close()
    alarm_id: str = frame["id"]  # the intervention's id; the alarm's is looked up below
    return alarm_id


async def alarm_of(db: asyncpg.Connection, vehicle: str) -> str:
    alarm_id: str = await db.fetchval("SELECT id FROM alarms WHERE vehicle_id = $1", vehicle)
    return alarm_id


async def test_requests_without_a_valid_token_get_401_json(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    status, body = await Api(http, server.http_url, None).call("GET", "/api/v1/alarms")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await Api(http, server.http_url, "nope").call("GET", "/api/v1/zones")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    api = await api_as(db, http, server, "wang", "dispatcher", None)
    assert (await api.call("GET", "/api/v1/zones"))[0] == 200
    await disable_operator(db, "wang")
    assert (await api.call("GET", "/api/v1/zones"))[0] == 401


async def test_dispatcher_works_an_alarm_and_every_step_is_audited(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    await open_alarm(server, "SU-A1", "F1")
    alarm_id = await alarm_of(db, "SU-A1")
    api = await api_as(db, http, server, "wang", "dispatcher", ["F1"])

    status, body = await api.call("GET", "/api/v1/alarms")
    assert status == 200
    (listed,) = body["alarms"]
    assert listed["id"] == alarm_id and listed["status"] == "ACTIVE_UNACK"
    assert listed["severity"] == "moderate"  # fatigue L2 at 80 km/h by day: a task to ack

    status, body = await api.call("POST", f"/api/v1/alarms/{alarm_id}/assign", {"assignee": "li"})
    assert status == 200 and body["alarm"]["assignee"] == "li"
    status, body = await api.call(
        "POST", f"/api/v1/alarms/{alarm_id}/comment", {"text": "called the driver"}
    )
    assert status == 200
    status, body = await api.call("POST", f"/api/v1/alarms/{alarm_id}/acknowledge")
    assert status == 200 and body["alarm"]["status"] == "ACTIVE_ACK"
    assert body["task"]["status"] == "acknowledged" and body["task"]["acknowledged_by"] == "wang"
    status, body = await api.call("POST", f"/api/v1/alarms/{alarm_id}/clear", {"reason": "done"})
    assert status == 200 and body["alarm"]["status"] == "CLEARED_ACK"

    actions = [(e["actor"], e["action"]) for e in body["audit"]]
    assert actions[0][1] == "opened"
    assert actions[1:] == [
        ("wang", "assigned"),
        ("wang", "commented"),
        ("wang", "acknowledged"),
        ("wang", "cleared"),
    ]
    assert body["audit"][2]["detail"]["text"] == "called the driver"
    # cleared and acknowledged: off the queue; the live vehicle's processor forgot it
    assert (await api.call("GET", "/api/v1/alarms"))[1]["alarms"] == []

    async def forgotten() -> bool:
        return "fatigue" not in server.hub.processors["SU-A1"].alarms

    assert await eventually(forgotten)


async def test_a_fleet_a_dispatcher_never_sees_fleet_b(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    await open_alarm(server, "A-1", "FA")
    await open_alarm(server, "B-1", "FB")
    a_alarm, b_alarm = await alarm_of(db, "A-1"), await alarm_of(db, "B-1")
    api = await api_as(db, http, server, "a-desk", "dispatcher", ["FA"])
    admin = await api_as(db, http, server, "root", "admin", None)

    body = (await api.call("GET", "/api/v1/alarms"))[1]
    assert [a["id"] for a in body["alarms"]] == [a_alarm]
    assert (await api.call("GET", "/api/v1/alarms?fleet=FB"))[1]["alarms"] == []
    for method, path in [
        ("GET", f"/api/v1/alarms/{b_alarm}"),
        ("POST", f"/api/v1/alarms/{b_alarm}/acknowledge"),
        ("POST", f"/api/v1/alarms/{b_alarm}/clear"),
        ("GET", "/api/v1/alarms/no-such-alarm"),
    ]:
        status, body = await api.call(method, path)
        assert (status, body["error"]["code"]) == (404, "not_found"), path  # same as unknown
    assert await db.fetchval("SELECT acknowledged FROM alarms WHERE id = $1", b_alarm) is False
    body = (await admin.call("GET", "/api/v1/alarms"))[1]
    assert sorted(a["id"] for a in body["alarms"]) == sorted([a_alarm, b_alarm])


async def test_zones_are_edited_by_safety_managers_and_reach_the_live_index(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    manager = await api_as(db, http, server, "zhou", "safety_manager", None)
    dispatcher = await api_as(db, http, server, "wang", "dispatcher", None)
    feature = {
        "type": "Feature",
        "properties": {"kind": "school", "name": "Experimental School", "speed_limit_kmh": 30},
        "geometry": SQUARE,
    }
    status, body = await dispatcher.call("PUT", "/api/v1/zones/school-1", feature)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await manager.call("PUT", "/api/v1/zones/school-1", feature)
    assert status == 201 and body["properties"]["id"] == "school-1"
    status, body = await manager.call(
        "PUT", "/api/v1/zones/school-1", {**feature, "properties": {"kind": "school", "name": "S"}}
    )
    assert status == 200 and body["properties"]["name"] == "S"
    status, body = await dispatcher.call("GET", "/api/v1/zones")
    assert [f["id"] for f in body["features"]] == ["school-1"]

    async def indexed() -> bool:
        return any(z.id == "school-1" for z in server.hub.zones.index.zones)

    assert await eventually(indexed)

    status, body = await manager.call(
        "PUT",
        "/api/v1/zones/bad",
        {"type": "Feature", "properties": {"kind": "castle"}, "geometry": SQUARE},
    )
    assert status == 422 and body["error"]["code"] == "invalid_zone"
    assert "kind" in body["error"]["message"]
    status, body = await manager.call("PUT", "/api/v1/zones/x", "[1, 2")
    assert status in (400, 422)
    assert (await manager.call("DELETE", "/api/v1/zones/school-1"))[0] == 204
    status, body = await manager.call("DELETE", "/api/v1/zones/school-1")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (await dispatcher.call("GET", "/api/v1/zones/school-1"))[0] == 404


async def test_bad_requests_get_a_stable_code_naming_the_field(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    await open_alarm(server, "SU-A1", "F1")
    alarm_id = await alarm_of(db, "SU-A1")
    api = await api_as(db, http, server, "wang", "dispatcher", None)
    status, body = await api.call("POST", f"/api/v1/alarms/{alarm_id}/comment", {"text": " "})
    assert (status, body["error"]["code"]) == (422, "invalid_field")
    assert body["error"]["message"].startswith("text:")
    status, body = await api.call("GET", "/api/v1/alarms?severity=catastrophic")
    assert status == 422 and body["error"]["message"].startswith("severity:")
    status, body = await api.call("GET", "/api/v1/alarms?limit=0")
    assert status == 422 and body["error"]["message"].startswith("limit:")
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await api.call("DELETE", "/api/v1/alarms")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
