"""Every bad input gets its documented error or close code, the connection and server
survive, and the raw item is kept in rejected_items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import RunningServer, Unit, add_vehicle, eventually, iso, telemetry

NAN_FRAME = (
    f'{{"type":"telemetry","seq":1,"ts":"{iso(datetime.now(UTC))}",'
    '"lat":31.3,"lon":120.5,"speed_kmh":NaN}'
)
DEEP_ATTRS_FRAME = (
    orjson.dumps({**telemetry(1), "type": "event", "kind": "fatigue"}).decode()[:-1]
    + ',"attrs":{"a":' + "[" * 300 + "]" * 300 + "}}"
)  # fmt: skip
CASES: list[tuple[str, Any, str, str, int | None]] = [
    # (name, frame, code, field named in the message, seq in the error)
    ("non-JSON", "this is not json", "bad_json", "frame", None),
    ("JSON array", "[1, 2, 3]", "bad_json", "frame", None),
    ("nested 100,000 deep", "[" * 100_000 + "]" * 100_000, "bad_json", "frame", None),
    ("attrs nested 300 deep", DEEP_ATTRS_FRAME, "invalid_item", "attrs", 1),
    (
        "missing seq",
        {k: v for k, v in telemetry(1).items() if k != "seq"},
        "invalid_item",
        "seq",
        None,
    ),
    ("string speed", telemetry(1, speed_kmh="62"), "invalid_item", "speed_kmh", 1),
    ("NaN", NAN_FRAME, "invalid_item", "speed_kmh", 1),
    ("lat 200", telemetry(1, lat=200), "invalid_item", "lat", 1),
    ("unknown type", {"type": "position", "seq": 1}, "unknown_type", "type", 1),
    (
        "unknown kind",
        {**telemetry(1), "type": "event", "kind": "alien_abduction"},
        "invalid_item",
        "kind",
        1,
    ),
    ("future ts", telemetry(1, ts=datetime.now(UTC) + timedelta(hours=2)), "invalid_item", "ts", 1),
    (
        "bad tire",
        telemetry(1, tires=[{"pos": "1L", "kpa": "high"}]),
        "invalid_item",
        "tires[0].kpa",
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "frame", "code", "field", "seq"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_item_gets_error_and_is_kept(
    server: RunningServer,
    db: asyncpg.Connection,
    name: str,
    frame: Any,
    code: str,
    field: str,
    seq: int | None,
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(frame)
    error = await unit.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == code
    assert error["message"].startswith(field + ":"), error["message"]
    assert error.get("seq") == seq
    # The connection survives: a good item afterwards is stored and acked.
    await unit.send(telemetry(5))
    await unit.ack_reaching(5)
    row = await db.fetchrow("SELECT code, reason, raw, seq FROM rejected_items")
    assert row["code"] == code and row["seq"] == seq
    sent = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
    assert bytes(row["raw"]).decode() == sent  # byte for byte
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 1
    await unit.close()


async def test_rejected_seq_is_consumed(server: RunningServer, db: asyncpg.Connection) -> None:
    """The ack covers a rejected seq, and last_seq after reconnect includes it."""
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(telemetry(1, lat=200))
    await unit.ack_reaching(1)
    await unit.close()
    again = await Unit.connect(server.ws_url, token)
    assert again.welcome["last_seq"] == 1
    await again.close()


async def test_oversized_frame_closes_1009_and_is_kept(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    big = telemetry(1, padding="x" * (300 * 1024))
    await unit.send(big)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await unit.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    row = await eventually(
        lambda: db.fetchrow("SELECT reason, length(raw) AS n FROM rejected_items")
    )
    assert row["reason"].startswith("frame:") and row["n"] > 300 * 1024
    # The server survives: the unit reconnects and carries on.
    again = await Unit.connect(server.ws_url, token)
    await again.send(telemetry(2))
    await again.ack_reaching(2)
    await again.close()


async def test_batch_over_1000_items_rejected(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    ts = iso(datetime.now(UTC))
    items = [
        {"type": "telemetry", "seq": i, "ts": ts, "lat": 31.3, "lon": 120.6, "speed_kmh": 0}
        for i in range(1, 2001)
    ]
    frame = orjson.dumps({"type": "batch", "items": items})
    assert len(frame) < 256 * 1024  # within the frame limit: only the item count is wrong
    await unit.send(frame.decode())
    error = await unit.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_item" and error["message"].startswith("items:")
    assert error["seq"] == 2000
    await unit.ack_reaching(2000)  # consumed, so the unit does not loop resending it
    assert await db.fetchval("SELECT count(*) FROM rejected_items") == 1
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 0
    await unit.close()


async def test_seq_going_backwards(server: RunningServer, db: asyncpg.Connection) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send({"type": "batch", "items": [telemetry(10), telemetry(11)]})
    await unit.send(telemetry(7))
    error = await unit.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_item" and error["seq"] == 7
    assert error["message"].startswith("seq:")
    await unit.ack_reaching(11)
    assert await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM telemetry") == [10, 11]
    assert await db.fetchval("SELECT seq FROM rejected_items") == 7
    await unit.close()


async def test_batch_with_bad_items_keeps_the_good(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    items = [telemetry(1), telemetry(2, speed_kmh=-5), telemetry(3), "oops"]
    await unit.send({"type": "batch", "items": items})
    errors = [await unit.recv_until(lambda f: f["type"] == "error") for _ in range(2)]
    assert [e["message"].split(":")[0] for e in errors] == ["speed_kmh", "items[]"]
    await unit.ack_reaching(3)
    assert await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM telemetry") == [1, 3]
    assert await db.fetchval("SELECT count(*) FROM rejected_items") == 2
    await unit.close()


async def test_garbage_only_unit_is_closed_1008(server: RunningServer) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(server.settings.garbage_limit + 5):
            await unit.send("garbage")
        while True:
            await unit.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_binary_frame_is_refused(server: RunningServer, db: asyncpg.Connection) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    await unit.send(b"\x00\x01binary")
    error = await unit.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "bad_json"
    await unit.send(telemetry(1))
    await unit.ack_reaching(1)
    assert bytes(await db.fetchval("SELECT raw FROM rejected_items")) == b"\x00\x01binary"
    await unit.close()
