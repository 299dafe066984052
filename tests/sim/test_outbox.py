"""The outbox: numbering, window accounting, ack, welcome replay, frame building, cap."""

from __future__ import annotations

from typing import Any

import orjson

from telematics.sim.outbox import MAX_BATCH_ITEMS, MAX_FRAME_BYTES, Outbox


def _item(kind: str = "telemetry", pad: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "seq": 0, "ts": "2026-11-26T08:00:00.000Z",
                            "lat": 31.3, "lon": 120.6, "speed_kmh": 50.0}  # fmt: skip
    if kind == "event":
        item["kind"] = "fatigue"
    if pad:
        item["driver_id"] = "x" * pad
    return item


def _seqs(payload: bytes) -> list[int]:
    obj = orjson.loads(payload)
    if obj["type"] == "batch":
        return [i["seq"] for i in obj["items"]]
    return [obj["seq"]]


def test_numbering_starts_after_the_servers_last_seq() -> None:
    box = Outbox()
    box.start(41)
    assert [box.add(_item()) for _ in range(3)] == [42, 43, 44]
    box.start(1000)  # only the first welcome fixes numbering
    assert box.add(_item()) == 45


def test_single_item_frames_and_batches() -> None:
    box = Outbox()
    box.start(0)
    for _ in range(5):
        box.add(_item())
    box.add(_item("event"))
    one = box.take_frame(1, 0.0)
    assert one is not None
    assert orjson.loads(one.payload)["type"] == "telemetry"
    assert (one.first_seq, one.last_seq, one.new_items) == (1, 1, 1)
    rest = box.take_frame(10, 0.0)
    assert rest is not None
    assert _seqs(rest.payload) == [2, 3, 4, 5, 6]
    assert rest.event_seqs == (6,)
    assert box.inflight == 2
    assert box.take_frame(10, 0.0) is None


def test_ack_drops_items_and_measures_latency() -> None:
    box = Outbox()
    box.start(0)
    for _ in range(10):
        box.add(_item())
    box.take_frame(4, 1.0)  # 1..4
    box.take_frame(4, 2.0)  # 5..8
    result = box.ack(6, 2.5)  # covers frame 1 only completely
    assert result.acked == 6
    assert result.latencies == [1.5]
    assert box.inflight == 1
    assert list(box.held_seqs()) == [7, 8, 9, 10]
    result = box.ack(8, 3.0)
    assert result.latencies == [1.0]
    assert box.inflight == 0
    assert box.ack(3, 3.0).acked == 0  # stale ack: nothing to drop
    assert len(box) == 2


def test_welcome_replays_everything_after_last_seq() -> None:
    box = Outbox()
    box.start(0)
    for _ in range(20):
        box.add(_item())
    for _ in range(3):
        box.take_frame(5, 0.0)  # 1..15 sent, none acked: the connection drops
    box.ack(4, 0.0)
    for _ in range(5):
        box.add(_item())  # generated while offline: 21..25
    assert box.welcome(9) == 5  # server had stored up to 9
    assert box.inflight == 0
    replay = box.take_frame(MAX_BATCH_ITEMS, 0.0)
    assert replay is not None
    assert _seqs(replay.payload) == list(range(10, 26))
    assert replay.new_items == 10  # 16..25 had never been sent
    assert box.take_frame(MAX_BATCH_ITEMS, 0.0) is None
    box.ack(25, 0.0)
    assert len(box) == 0
    assert box.add(_item()) == 26


def test_ack_beyond_what_was_generated_moves_numbering_on() -> None:
    box = Outbox()
    box.start(0)
    box.add(_item())
    box.welcome(500)  # another process used the same token
    assert len(box) == 0
    assert box.add(_item()) == 501


def test_batches_respect_item_and_byte_limits() -> None:
    box = Outbox()
    box.start(0)
    for _ in range(2500):
        box.add(_item())
    sizes = []
    while (frame := box.take_frame(MAX_BATCH_ITEMS, 0.0)) is not None:
        sizes.append(frame.items)
        assert len(frame.payload) <= MAX_FRAME_BYTES
    assert sizes == [1000, 1000, 500]
    big = Outbox()
    big.start(0)
    for _ in range(300):
        big.add(_item(pad=60) | {"attrs": {"blob": "y" * 900}})
    frame = big.take_frame(MAX_BATCH_ITEMS, 0.0)
    assert frame is not None
    assert frame.items < 300
    assert len(frame.payload) <= MAX_FRAME_BYTES


def test_cap_drops_oldest_and_counts() -> None:
    box = Outbox(cap=100)
    box.start(0)
    for _ in range(1000):
        box.add(_item())
    assert len(box) == 100
    assert box.dropped == 900
    assert list(box.held_seqs()) == list(range(901, 1001))
    frame = box.take_frame(MAX_BATCH_ITEMS, 0.0)
    assert frame is not None
    assert _seqs(frame.payload) == list(range(901, 1001))


def test_long_run_stays_compact() -> None:
    box = Outbox()
    box.start(0)
    for i in range(100_000):
        box.add(_item())
        frame = box.take_frame(1, float(i))
        assert frame is not None
        box.ack(frame.last_seq, float(i))
    assert len(box) == 0
    assert len(box._data) < 1000  # acked items are released
