"""A unit that streams odd frames (edge values, clock jumps, replays, bad fields, deep
nesting) over a real connection: the server answers each, keeps its connection, logs no
error, and every seq the unit used is accounted for in the database."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import RunningServer, Unit, add_vehicle, telemetry

_EDGE_VALUES: list[Any] = [
    None, True, 0, -1, 90, -90, 180, 500, 500.1, 1e8, 2**63 - 1, "x", "", "D" * 64,
    "D" * 65, [1], {"k": [[[]]]}, "2000-01-01T00:00:00Z", "2007-03-14T12:00:00+08:00",
]  # fmt: skip
_FIELDS = ["lat", "lon", "speed_kmh", "heading_deg", "driver_id", "ignition", "odometer_km",
           "ts", "tires", "kind", "level", "attrs", "firmware"]  # fmt: skip
_TIRES = [{"pos": "1L", "kpa": 850, "temp_c": 40}, {"pos": "99RO", "kpa": 0, "temp_c": 250},
          {"pos": "1L", "kpa": 3000}, {"pos": "2LI", "sensor_battery_pct": 0}]  # fmt: skip


def _item(rng: random.Random, seq: int, now: datetime) -> dict[str, Any]:
    ts = now - timedelta(seconds=rng.choice([0, 1, 90, 3600, 86_400 * 365 * 19]))
    item = telemetry(seq, ts, tires=rng.sample(_TIRES, rng.randint(0, len(_TIRES))))
    if rng.random() < 0.3:
        item.update(type="event", kind=rng.choice(["fatigue", "collision", "tire_fast_leak",
                                                   "panic_button", "overspeed"]),
                    level=rng.choice([1, 2]), attrs={"tire_pos": "1L"})  # fmt: skip
        del item["tires"]
    for _ in range(rng.choice((0, 0, 1, 2))):
        item[rng.choice(_FIELDS)] = rng.choice(_EDGE_VALUES)
    return item


def _odd_frame(rng: random.Random, seq: int, now: datetime) -> tuple[Any, int]:
    """A frame and the highest seq the unit has used after it."""
    roll = rng.random()
    if roll < 0.05:
        return "[" * 2000 + "]" * 2000, seq
    if roll < 0.10:
        back = max(1, seq - rng.randint(1, 10))  # a replay of what was sent before
        return telemetry(back), seq
    if roll < 0.40:
        items = [_item(rng, seq + 1 + i, now) for i in range(rng.randint(1, 30))]
        return {"type": "batch", "items": items}, seq + len(items)
    return _item(rng, seq + 1, now), seq + 1


async def test_odd_streams_keep_the_connection_and_account_for_every_seq(
    server: RunningServer, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(11)
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    now = datetime.now(UTC)
    seq = 0
    with caplog.at_level(logging.ERROR):
        for _ in range(200):
            frame, seq = _odd_frame(rng, seq, now)
            await unit.send(frame)
        seq += 1
        await unit.send(telemetry(seq, ts=now, lat=31.3))
        await unit.ack_reaching(seq, timeout=30)  # the same connection, still answered
    assert not [r for r in caplog.records if r.name.startswith("telematics")], caplog.text
    used = await db.fetchval(
        """SELECT count(DISTINCT seq) FROM (
               SELECT seq FROM telemetry UNION ALL SELECT seq FROM events
               UNION ALL SELECT seq FROM rejected_items WHERE seq IS NOT NULL) AS s"""
    )
    assert used == seq  # each seq the unit used is stored or kept as rejected, once
    assert await db.fetchval("SELECT count(*) FROM rejected_items WHERE seq IS NULL") >= 1
    await unit.close()
