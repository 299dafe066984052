"""The insurers' API against a real server and PostgreSQL: scope isolation between
insurers, the gap-free feed, idempotent claims with evidence, scores, loss report."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from tests.helpers import RunningServer, iso, telemetry
from tests.insurer.helpers import InsurerApi, connect_vehicle, insurer_with_policy, severe_alarm


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def two_insurers(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> tuple[InsurerApi, InsurerApi]:
    """A covers fleet FA (SU-A1), B covers fleet FB (SU-B1); each vehicle has a collision
    and a few fixes."""
    a = InsurerApi(http, server.http_url, await insurer_with_policy(db, "ins-a", fleet="FA"))
    b = InsurerApi(http, server.http_url, await insurer_with_policy(db, "ins-b", fleet="FB"))
    for vehicle, fleet in (("SU-A1", "FA"), ("SU-B1", "FB")):
        unit = await connect_vehicle(server, vehicle, fleet)
        now = datetime.now(UTC)
        for seq in range(1, 4):
            await unit.send(
                telemetry(seq, now - timedelta(seconds=10 - seq), driver_id="D-" + vehicle)
            )
        await severe_alarm(server, unit, 4)
        await unit.close()
    return a, b


async def test_insurer_a_never_reads_insurer_b_vehicles(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    a, b = await two_insurers(server, db, http)
    occurred = iso(datetime.now(UTC) - timedelta(seconds=5))
    status, claim_b = await b.call(
        "POST",
        "/claims",
        {"vehicle_id": "SU-B1", "occurred_at": occurred, "description": "rear-ended"},
        {"Idempotency-Key": "b-1"},
    )
    assert status == 201, claim_b
    b_claim = claim_b["claim"]["id"]

    _, body = await a.call("GET", "/vehicles")
    assert [v["id"] for v in body["vehicles"]] == ["SU-A1"]
    _, body = await a.call("GET", "/feed?limit=1000")
    assert {i["alarm"]["vehicle_id"] for i in body["items"]} == {"SU-A1"}
    _, body = await a.call("GET", "/scores/vehicles?window_days=7")
    assert [s["vehicle_id"] for s in body["scores"]] == ["SU-A1"]
    _, body = await a.call("GET", "/scores/drivers")
    # D-0117 raised the collisions of both vehicles: A sees only what it did in SU-A1
    assert [s["driver_id"] for s in body["scores"]] == ["D-0117", "D-SU-A1"]
    assert all(s["vehicles"] == ["SU-A1"] for s in body["scores"])
    for method, path, payload in [
        ("GET", "/scores/vehicles/SU-B1", None),
        ("GET", "/scores/drivers/D-SU-B1", None),
        ("GET", f"/reports/loss-control?fleet=FB&month={datetime.now(UTC):%Y-%m}", None),
        ("GET", f"/claims/{b_claim}", None),
        ("GET", f"/claims/{b_claim}/evidence", None),
        ("GET", f"/claims/{b_claim}/evidence.zip", None),
        ("POST", f"/claims/{b_claim}/outcome", {"outcome": "paid"}),
        ("POST", "/claims", {"vehicle_id": "SU-B1", "occurred_at": occurred, "description": "x"}),
        ("GET", "/scores/vehicles/NO-SUCH", None),
    ]:
        status, body = await a.call(method, path, payload, {"Idempotency-Key": "a-probe"})
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    _, body = await a.call("GET", "/claims")
    assert body["claims"] == []
    # every request of A is in the access log, none names B's vehicle
    logged = await db.fetch(
        "SELECT status, vehicle_ids FROM insurer_access_log WHERE insurer_id = 'ins-a'"
    )
    assert len(logged) == 14
    assert all("SU-B1" not in r["vehicle_ids"] for r in logged)
    # operator tokens are not insurer keys, and the reverse
    assert (await InsurerApi(http, server.http_url, "nope").call("GET", "/vehicles"))[0] == 401
    async with http.get(
        server.http_url + "/api/v1/alarms", headers={"Authorization": f"Bearer {a.key}"}
    ) as resp:
        assert resp.status == 401


async def test_claims_are_idempotent_and_carry_the_evidence(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    a, _ = await two_insurers(server, db, http)
    claim = {
        "vehicle_id": "SU-A1",
        "occurred_at": iso(datetime.now(UTC) - timedelta(seconds=5)),
        "lat": 31.3,
        "lon": 120.6,
        "place": "G2 km 1021",
        "description": "collision with a truck",
    }
    first = await a.call("POST", "/claims", claim, {"Idempotency-Key": "k1"})
    again = await a.call("POST", "/claims", claim, {"Idempotency-Key": "k1"})
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["claim"]["id"] == again[1]["claim"]["id"]
    assert first[1]["evidence"]["status"] == "ready"
    assert await db.fetchval("SELECT count(*) FROM claims") == 1
    status, body = await a.call(
        "POST", "/claims", {**claim, "description": "x"}, {"Idempotency-Key": "k1"}
    )
    assert (status, body["error"]["code"]) == (422, "idempotency_conflict")
    assert (await a.call("POST", "/claims", claim))[0] == 422  # no key

    claim_id = first[1]["claim"]["id"]
    status, packet = await a.call("GET", f"/claims/{claim_id}/evidence")
    assert status == 200
    assert len(packet["speed_trace"]) == 3
    assert packet["track"]["features"][0]["geometry"]["type"] == "LineString"
    assert packet["driver"]["at_time_of_loss"] == "D-SU-A1"
    (alarm,) = packet["alarms"]
    assert alarm["kind"] == "collision" and alarm["lifecycle"][0]["action"] == "opened"
    assert packet["interventions"] and packet["interventions"][0]["delivery"]
    status, data = await a.call("GET", f"/claims/{claim_id}/evidence.zip")
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert {"manifest.json", "track.geojson", "speed_trace.csv", "alarms.json"} <= names

    status, body = await a.call(
        "POST",
        f"/claims/{claim_id}/outcome",
        {"outcome": "paid", "at_fault": True, "loss_amount": 12000.5, "currency": "CNY"},
    )
    assert status == 200, body
    label = await db.fetchrow("SELECT * FROM claim_outcomes WHERE claim_id = $1", claim_id)
    assert label["outcome"] == "paid" and label["vehicle_id"] == "SU-A1"
    assert label["alarm_ids"] == [alarm["id"]]


async def test_feed_never_passes_an_uncommitted_change(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession, db_url: str
) -> None:
    a, _ = await two_insurers(server, db, http)
    _, page = await a.call("GET", "/feed")
    assert [i["change"] for i in page["items"]] == ["opened"]
    cursor = page["next_cursor"]
    # a slow transaction takes a change number first and commits last
    slow = await asyncpg.connect(db_url)
    tx = slow.transaction()
    await tx.start()
    await slow.execute(
        "UPDATE alarms SET active = false, cleared_at = now() WHERE vehicle_id = 'SU-A1'"
    )
    unit = await connect_vehicle(server, "SU-A2", "FA")
    await severe_alarm(server, unit, 1)
    await unit.close()
    _, page = await a.call("GET", f"/feed?cursor={cursor}")
    assert page["items"] == [] and page["next_cursor"] == cursor  # held behind the slow one
    await tx.commit()
    await slow.close()
    _, page = await a.call("GET", f"/feed?cursor={cursor}")
    assert [(i["change"], i["alarm"]["vehicle_id"]) for i in page["items"]] == [
        ("updated", "SU-A1"),
        ("opened", "SU-A2"),
    ]
    _, page = await a.call("GET", f"/feed?cursor={page['next_cursor']}")
    assert page["items"] == []
    _, body = await a.call("GET", "/feed?severity=general")
    assert body["items"] == []
    assert (await a.call("GET", "/feed?cursor=garbage"))[0] == 422


async def test_loss_report_json_and_csv(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    a, _ = await two_insurers(server, db, http)
    month = f"{datetime.now(UTC):%Y-%m}"
    status, report = await a.call("GET", f"/reports/loss-control?fleet=FA&month={month}")
    assert status == 200
    assert report["collisions"] == 1 and report["by_severity"]["severe"] == 1
    assert report["interventions"] >= 1
    status, csv_bytes = await a.call(
        "GET", f"/reports/loss-control?fleet=FA&month={month}&format=csv"
    )
    lines = csv_bytes.decode().splitlines()
    assert lines[0].startswith("fleet,month,kind,alarms") and lines[-1].split(",")[2] == "all"


async def test_webhooks_must_go_to_public_https_endpoints(
    server: RunningServer, db: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    await db.execute("INSERT INTO fleets (id, name) VALUES ('FA', 'FA') ON CONFLICT DO NOTHING")
    api = InsurerApi(http, server.http_url, await insurer_with_policy(db, "ins-a", fleet="FA"))
    for url, why in [
        ("http://claims.example.com/hook", "https"),
        ("https://127.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
    ]:
        status, body = await api.call(
            "POST", "/webhooks", {"url": url, "event_types": ["alarm.severe"]}
        )
        assert status == 422 and why in body["error"]["message"], (url, body)
    status, _ = await api.call(
        "POST",
        "/webhooks",
        {"url": "https://claims.example.com/hook", "event_types": ["alarm.severe"]},
    )
    assert status in (200, 201)
