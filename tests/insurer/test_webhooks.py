"""Signed webhooks from the durable outbox, against a real HTTP receiver: signatures,
exactly one accepted delivery per webhook-id across a server restart, 410, redelivery,
secret rotation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from telematics.insurer import signing
from tests.helpers import eventually, start_server
from tests.insurer.helpers import InsurerApi, connect_vehicle, insurer_with_policy, severe_alarm


class Receiver:
    """An insurer's endpoint: verifies every signature, answers ``self.status``."""

    def __init__(self) -> None:
        self.status = 200
        self.secrets: list[str] = []
        self.accepted: Counter[str] = Counter()  # webhook-id → 2xx answers given
        self.refused = 0
        self.bad_signatures = 0
        self.bodies: dict[str, dict[str, Any]] = {}
        self.signature_headers: list[str] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.signature_headers.append(request.headers["webhook-signature"])
        for secret in self.secrets:
            try:
                signing.verify(secret, request.headers, body, int(time.time()))
            except signing.BadSignature:
                self.bad_signatures += 1
        if self.status // 100 == 2:
            msg_id = request.headers["webhook-id"]
            self.accepted[msg_id] += 1
            self.bodies[msg_id] = orjson.loads(body)
        else:
            self.refused += 1
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    assert r.runner is not None
    await r.runner.cleanup()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMATICS_WEBHOOK_POLL_S", "0.05")
    monkeypatch.setenv("TELEMATICS_WEBHOOK_RETRY_BASE_S", "0.05")
    monkeypatch.setenv("TELEMATICS_WEBHOOK_RETRY_CAP_S", "0.2")
    monkeypatch.setenv("TELEMATICS_WEBHOOK_LEASE_S", "2")
    monkeypatch.setenv("TELEMATICS_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on 127.0.0.1


async def register(api: InsurerApi, receiver: Receiver, types: list[str]) -> dict[str, Any]:
    status, body = await api.call("POST", "/webhooks", {"url": receiver.url, "event_types": types})
    assert status == 201, body
    assert body["secret"].startswith("whsec_")
    receiver.secrets = [body["secret"]]
    endpoint: dict[str, Any] = body["endpoint"]
    return endpoint


async def test_every_message_arrives_exactly_once_across_a_restart(
    db_url: str, db: asyncpg.Connection, receiver: Receiver, fast_retries: None
) -> None:
    server = await start_server(db_url)
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    async with aiohttp.ClientSession() as http:
        api = InsurerApi(http, server.http_url, key)
        await register(api, receiver, ["alarm.severe", "collision.detected"])
        receiver.status = 503  # down: deliveries pile up in the outbox
        for n in range(3):
            unit = await connect_vehicle(server, f"SU-W{n}", "F1")
            await severe_alarm(server, unit, 1)
            await unit.close()
        # another insurer's fleet: its alarms must never reach this endpoint
        other = await connect_vehicle(server, "SU-OTHER", "F2")
        await severe_alarm(server, other, 1)
        await other.close()

        async def all_tried() -> bool:
            n = await db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE attempts > 0 AND status = 'pending'"
            )
            return bool(n == 6)

        assert await eventually(all_tried)
        assert receiver.refused >= 6 and not receiver.accepted
        await server.stop()

        receiver.status = 200
        server = await start_server(db_url)

        async def all_delivered() -> bool:
            n = await db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
            )
            return bool(n == 6)

        assert await eventually(all_delivered)
        await server.stop()  # nothing more can go out

    ids = set(await db.fetchval("SELECT array_agg(webhook_id) FROM webhook_deliveries"))
    assert set(receiver.accepted) == ids and len(ids) == 6
    assert all(count == 1 for count in receiver.accepted.values()), receiver.accepted
    assert receiver.bad_signatures == 0
    types = Counter(b["type"] for b in receiver.bodies.values())
    assert types == {"alarm.severe": 3, "collision.detected": 3}
    assert {b["data"]["vehicle_id"] for b in receiver.bodies.values()} == {
        "SU-W0",
        "SU-W1",
        "SU-W2",
    }
    log = await db.fetch("SELECT status_code FROM webhook_attempts ORDER BY id")
    assert {r["status_code"] for r in log} >= {503, 200}


async def test_410_disables_the_endpoint_and_a_redelivery_goes_out_again(
    db_url: str, db: asyncpg.Connection, receiver: Receiver, fast_retries: None
) -> None:
    server = await start_server(db_url)
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    try:
        async with aiohttp.ClientSession() as http:
            api = InsurerApi(http, server.http_url, key)
            endpoint = await register(api, receiver, ["alarm.severe"])
            receiver.status = 410
            unit = await connect_vehicle(server, "SU-G1", "F1")
            await severe_alarm(server, unit, 1, kind="panic_button")

            async def disabled() -> Any:
                status, body = await api.call("GET", f"/webhooks/{endpoint['id']}")
                return status == 200 and not body["endpoint"]["enabled"]

            assert await eventually(disabled)
            _status, body = await api.call("GET", f"/webhooks/{endpoint['id']}/deliveries")
            (delivery,) = body["deliveries"]
            assert delivery["status"] == "disabled" and delivery["log"][0]["status_code"] == 410

            receiver.status = 204
            assert (await api.call("POST", f"/webhooks/{endpoint['id']}/enable"))[0] == 200
            path = f"/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver"
            assert (await api.call("POST", path))[0] == 202

            async def delivered() -> bool:
                return receiver.accepted[delivery["webhook_id"]] == 1

            assert await eventually(delivered)
            await unit.close()
    finally:
        await server.stop()


async def test_rotation_signs_with_both_secrets_for_a_while(
    db_url: str, db: asyncpg.Connection, receiver: Receiver, fast_retries: None
) -> None:
    server = await start_server(db_url)
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    try:
        async with aiohttp.ClientSession() as http:
            api = InsurerApi(http, server.http_url, key)
            endpoint = await register(api, receiver, ["alarm.severe"])
            old = receiver.secrets[0]
            status, body = await api.call("POST", f"/webhooks/{endpoint['id']}/rotate-secret", {})
            assert status == 200 and body["secret"] != old
            receiver.secrets = [old, body["secret"]]  # each must verify on its own
            unit = await connect_vehicle(server, "SU-R1", "F1")
            await severe_alarm(server, unit, 1)

            async def got() -> int:
                return len(receiver.accepted)

            assert await eventually(got)
            assert receiver.bad_signatures == 0
            assert len(receiver.signature_headers[-1].split()) == 2
            await unit.close()
    finally:
        await server.stop()


async def test_a_killed_server_process_loses_no_delivery(
    db_url: str, db: asyncpg.Connection, receiver: Receiver, fast_retries: None
) -> None:
    """A real `telematics serve` process is SIGKILLed while its delivery worker holds the
    pending messages; a server started afterwards delivers every one, once each."""
    server = await start_server(db_url)  # ingest only: its worker is stopped below
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    async with aiohttp.ClientSession() as http:
        api = InsurerApi(http, server.http_url, key)
        await register(api, receiver, ["alarm.severe"])
        receiver.status = 503
        for n in range(4):
            unit = await connect_vehicle(server, f"SU-K{n}", "F1")
            await severe_alarm(server, unit, 1)
            await unit.close()
        await server.stop()

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "TELEMATICS_DATABASE_URL": db_url, "TELEMATICS_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "telematics", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            before = receiver.refused

            async def worker_busy() -> bool:  # the process is retrying: it holds the messages
                return receiver.refused >= before + 8

            assert await eventually(worker_busy, timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        pending = await db.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
        )
        assert pending == 4 and not receiver.accepted

        receiver.status = 200
        server = await start_server(db_url)

        async def all_delivered() -> bool:
            n = await db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
            )
            return bool(n == 4)

        assert await eventually(all_delivered, timeout=20)
        await server.stop()
    ids = set(await db.fetchval("SELECT array_agg(webhook_id) FROM webhook_deliveries"))
    assert set(receiver.accepted) == ids and len(ids) == 4
    assert all(count == 1 for count in receiver.accepted.values()), receiver.accepted
