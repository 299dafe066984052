"""Test helpers: start/stop a real server, register vehicles, talk like a unit."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from telematics.config import Settings
from telematics.ingest.app import build_app
from telematics.ingest.hub import Hub
from telematics.ingest.keys import HUB
from telematics.store import registry


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass
class RunningServer:
    runner: web.AppRunner
    port: int
    db_url: str
    settings: Settings

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/device"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Hub:
        return self.runner.app[HUB]

    async def stop(self) -> None:
        await self.runner.cleanup()


NO_MODELS = Path(tempfile.gettempdir()) / "telematics-tests-no-models"


class Clock:
    """Real time plus an offset a test moves forward (``start_server(clock=...)``)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def start_server(
    db_url: str, port: int = 0, clock: Clock | None = None, **overrides: Any
) -> RunningServer:
    # No trained model unless a test brings one: a developer's var/models must not change
    # what the tests see.
    overrides.setdefault("model_dir", NO_MODELS)
    settings = Settings(host="127.0.0.1", port=port, **overrides)
    app = build_app(settings, db_url) if clock is None else build_app(settings, db_url, clock)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    return RunningServer(runner, bound, db_url, settings)


async def add_vehicle(
    db_url: str, vehicle_id: str = "SU-E12345", vehicle_class: str = "coach", fleet: str = "F1"
) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        pairs = await registry.add_vehicles(
            conn, [registry.NewVehicle(vehicle_id, fleet, vehicle_class, "苏E12345")]
        )
    finally:
        await conn.close()
    return pairs[0][1]


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def telemetry(seq: int, ts: datetime | None = None, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "telemetry",
        "seq": seq,
        "ts": iso(ts or datetime.now(UTC)),
        "lat": 31.2990,
        "lon": 120.5853,
        "speed_kmh": 62.5,
        "heading_deg": 87,
        "driver_id": "D-0117",
    }
    item.update(fields)
    return item


def event(seq: int, kind: str = "fatigue", level: int | None = 2, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "event",
        "seq": seq,
        "ts": iso(datetime.now(UTC)),
        "kind": kind,
        "lat": 31.2991,
        "lon": 120.5860,
        "speed_kmh": 88.0,
        "driver_id": "D-0117",
    }
    if level is not None:
        item["level"] = level
    item.update(fields)
    return item


class Unit:
    """A scripted in-vehicle unit over a real websockets client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.held: list[dict[str, Any]] = []  # read ahead, returned first by recv()

    @classmethod
    async def connect(cls, url: str, token: str, ping_interval: float | None = 20) -> Unit:
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_size=2**22,
            open_timeout=10,
            ping_interval=ping_interval,
        )
        unit = cls(ws)
        unit.welcome = await unit.recv()
        assert unit.welcome["type"] == "welcome"
        return unit

    async def send(self, frame: dict[str, Any] | list[Any] | str | bytes) -> None:
        if isinstance(frame, (dict, list)):
            frame = orjson.dumps(frame).decode()
        await self.ws.send(frame)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        if self.held:
            return self.held.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def recv_until(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Read frames until one matches; others are collected in ``self.seen``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.01))
            if predicate(frame):
                return frame

    async def ack_reaching(self, seq: int, timeout: float = 10.0) -> dict[str, Any]:
        return await self.recv_until(lambda f: f["type"] == "ack" and f["seq"] >= seq, timeout)

    async def committed_intervention(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next intervention, once its cause is acked (so its alarm is stored).

        Interventions go out before the commit; frames other than acks read while waiting
        for the ack are held for the next ``recv``.
        """
        frame = await self.recv_until(lambda f: f["type"] == "intervention", timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        later: list[dict[str, Any]] = []
        while True:
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self.ws.recv(), max(left, 0.01))
            seen: dict[str, Any] = orjson.loads(raw)
            if seen["type"] == "ack" and seen["seq"] >= frame["cause"]["seq"]:
                break
            later.append(seen)
        self.held.extend(later)
        return frame

    async def close(self) -> None:
        await self.ws.close()


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


async def eventually(query: Any, timeout: float = 10.0) -> Any:
    """Await ``query()`` until it returns something truthy (for effects committed later)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await query()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)
