"""run_fleet against a tiny in-test server: acks, interventions, reconnect replay."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from telematics.sim import FleetStats, SimConfig, UnitSpec, read_tokens, run_fleet


@dataclass
class FakeServer:
    """Stores seqs per token, acks every frame's highest seq, sends one intervention.

    The ``victim`` token's first connection is cut (without acking its last frames)
    after ``cut_after`` frames, so the unit must replay on its next connection.
    """

    last_seq: dict[str, int] = field(default_factory=dict)
    stored: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    duplicates: int = 0
    connections: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    intervention_acks: list[tuple[str, str]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    intervention_sent: bool = False
    victim: str | None = None
    cut_after: int = 20
    port: int = 0

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        token = ws.request.headers["Authorization"].removeprefix("Bearer ")
        self.connections[token] += 1
        first_connection = self.connections[token] == 1
        welcome = {"type": "welcome", "vehicle_id": token,
                   "last_seq": self.last_seq.get(token, 0),
                   "server_time": "2026-11-26T08:00:00.000Z"}  # fmt: skip
        await ws.send(orjson.dumps(welcome).decode())
        frames_here = 0
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg["type"] == "intervention_ack":
                    self.intervention_acks.append((msg["id"], msg["status"]))
                    continue
                items = msg["items"] if msg["type"] == "batch" else [msg]
                self.batch_sizes.append(len(items))
                top = self.last_seq.get(token, 0)
                for item in items:
                    if item["seq"] <= top:
                        self.duplicates += 1
                    else:
                        self.stored[token].append(item["seq"])
                        top = item["seq"]
                frames_here += 1
                self.frames[token] += 1
                cut = token == self.victim and first_connection
                if cut and frames_here > self.cut_after:
                    ws.transport.abort()  # store but never ack the last frame: replay needed
                    self.last_seq[token] = top - len(items)
                    self.stored[token] = [s for s in self.stored[token] if s <= top - len(items)]
                    return
                self.last_seq[token] = top
                await ws.send(orjson.dumps({"type": "ack", "seq": top}).decode())
                if not self.intervention_sent and frames_here == 5:
                    self.intervention_sent = True
                    await self._odd_frames(ws)
                    intervention = {"type": "intervention", "id": "iv-1", "severity": "severe",
                                    "action": "voice_alert", "message": "Pull over.",
                                    "cause": {"seq": items[-1]["seq"], "kind": "fatigue"},
                                    "issued_at": "2026-11-26T08:00:02.180Z"}  # fmt: skip
                    await ws.send(orjson.dumps(intervention).decode())
                    await ws.send(orjson.dumps(intervention).decode())  # a resend: same id
        except ConnectionClosed:
            pass

    async def _odd_frames(self, ws: ServerConnection) -> None:
        """Frames a unit must survive."""
        error = {"type": "error", "code": "invalid_item", "seq": 1, "message": "speed_kmh: no"}
        await ws.send(orjson.dumps(error).decode())
        await ws.send('{"type":"surprise"}')
        await ws.send("not json at all")
        await ws.send("[1,2,3]")
        await ws.send(b"\x00binary")
        await ws.send('{"type":"ack","seq":"seven"}')

    def assert_no_gaps(self, token: str) -> None:
        seqs = self.stored[token]
        assert seqs, token
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), token


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    srv: Server = await serve(server.handler, "127.0.0.1", 0, compression=None)
    server.port = srv.sockets[0].getsockname()[1]
    yield server
    srv.close()
    await srv.wait_closed()


def _config(fake: FakeServer, units: list[UnitSpec], **kw: Any) -> SimConfig:
    defaults: dict[str, Any] = {
        "rate_hz": 20.0,
        "duration_s": 3.0,
        "drops_per_hour": 0.0,
        "reconnect_delay_s": (0.2, 0.4),
        "connect_rate_per_s": 1000.0,
    }
    defaults.update(kw)
    return SimConfig(url=f"ws://127.0.0.1:{fake.port}/v1/device", units=units, **defaults)


async def test_fleet_acks_interventions_and_replays(fake: FakeServer) -> None:
    units = [UnitSpec(f"SU-{i}", f"tok-{i}", c) for i, c in enumerate(("coach", "bus", "hazmat"))]
    fake.victim = "tok-1"
    fake.last_seq["tok-2"] = 41  # the unit has sent before: numbering continues after 41
    stats = await run_fleet(_config(fake, units))

    assert stats.items_acked > 100
    assert stats.ack_latency_s.count > 0
    p50 = stats.percentile("ack", 50)
    assert p50 is not None and 0 < p50 < 1.0
    # the intervention is delivered once, its resend acked again, nothing crashed
    assert ("iv-1", "delivered") in fake.intervention_acks
    assert fake.intervention_acks.count(("iv-1", "delivered")) == 2
    assert stats.interventions_received == 1
    assert stats.interventions_duplicate == 1
    assert stats.event_to_intervention_s.count == 1
    assert stats.errors_by_code == {"invalid_item": 1}
    assert stats.unknown_frames >= 5
    # the cut connection came back and replayed without gaps
    assert fake.connections["tok-1"] >= 2
    assert stats.reconnects >= 1
    assert stats.items_resent > 0
    for unit in units:
        fake.assert_no_gaps(unit.token)
    assert fake.stored["tok-0"][0] == 1
    assert fake.stored["tok-2"][0] == 42
    assert stats.items_sent >= stats.items_acked - stats.items_resent
    assert stats.unacked_items() == stats.items_generated - stats.items_acked
    snap = stats.snapshot()
    assert snap["connected"] == 0
    orjson.dumps(snap)


async def test_flood_batches_and_client_drops(fake: FakeServer) -> None:
    units = [UnitSpec(f"SU-{i}", f"tok-{i}") for i in range(4)]
    stats = FleetStats()
    config = _config(fake, units, flood=True, batch_size=5, window=4, duration_s=2.5,
                     drops_per_hour=3600.0 * 2)  # fmt: skip
    await run_fleet(config, stats)
    assert stats.forced_drops >= 1
    assert stats.items_acked > 1000
    assert max(fake.batch_sizes) <= 1000
    assert fake.batch_sizes.count(5) > len(fake.batch_sizes) / 2
    for unit in units:
        fake.assert_no_gaps(unit.token)


@pytest.mark.parametrize("flood", [False, True])
async def test_drain_sends_the_last_short_batch_and_ends(fake: FakeServer, flood: bool) -> None:
    """Draining generates nothing more and sends a last batch shorter than batch_size:
    everything generated is acknowledged, long before the drain's limit."""
    units = [UnitSpec(f"SU-{i}", f"tok-{i}") for i in range(3)]
    config = _config(fake, units, batch_size=7, duration_s=1.0, drain_s=20.0, flood=flood)
    stats = await asyncio.wait_for(run_fleet(config), 10.0)
    assert stats.items_acked > 0
    assert stats.unacked_items() == 0
    assert stats.items_generated == stats.items_acked
    for unit in units:
        fake.assert_no_gaps(unit.token)


async def test_stop_event_stops_the_fleet(fake: FakeServer) -> None:
    stop = asyncio.Event()
    units = [UnitSpec("SU-1", "tok-1")]
    task = asyncio.create_task(run_fleet(_config(fake, units, duration_s=None), stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    stats = await asyncio.wait_for(task, 5.0)
    assert stats.ever_connected == 1
    assert stats.connected == 0


async def test_unreachable_server_does_not_crash() -> None:
    config = SimConfig(url="ws://127.0.0.1:9/v1/device", units=[UnitSpec("SU-1", "t")],
                       duration_s=0.5)  # fmt: skip
    stats = await run_fleet(config)
    assert stats.connect_failures >= 1
    assert stats.ever_connected == 0
    assert stats.items_generated == 0  # a unit boots on its first welcome


def test_read_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("id,token,class\n\nSU-1,abc\nSU-2, def ,hazmat\n\n")
    assert read_tokens(str(path)) == [
        UnitSpec("SU-1", "abc", "coach"),
        UnitSpec("SU-2", "def", "hazmat"),
    ]
