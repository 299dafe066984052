"""The per-connection state machine, fed frames like a timeline (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from telematics.protocol.session import CLOSE_POLICY_VIOLATION, DeviceSession, ack_payload

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def tel(seq: int, **fields: Any) -> bytes:
    item = {"type": "telemetry", "seq": seq, "ts": "2026-11-26T08:00:00Z", "lat": 31.3,
            "lon": 120.6, "speed_kmh": 50.0, **fields}  # fmt: skip
    return orjson.dumps(item)


def batch(*seqs: int) -> bytes:
    return orjson.dumps({"type": "batch", "items": [orjson.loads(tel(s)) for s in seqs]})


def test_welcome_reports_stored_seq() -> None:
    s = DeviceSession("V", 41)
    assert s.welcome("2026-11-26T08:00:00.000Z") == {
        "type": "welcome", "vehicle_id": "V", "last_seq": 41,
        "server_time": "2026-11-26T08:00:00.000Z",
    }  # fmt: skip


def test_new_items_duplicates_and_acks() -> None:
    s = DeviceSession("V", 10)
    out = s.receive(batch(9, 10, 11, 12), NOW)
    assert [i.seq for i in out.items] == [11, 12] and out.duplicates == 2
    assert out.replies == []  # items in flight: the next ack covers the duplicates
    assert s.committed(12) and s.stored_seq == 12
    assert not s.committed(11)  # never moves back
    dup = s.receive(tel(12), NOW)
    assert dup.items == [] and dup.replies == [{"type": "ack", "seq": 12}]


def test_backwards_seq_is_refused_and_kept() -> None:
    s = DeviceSession("V", 0)
    s.receive(tel(5), NOW)
    out = s.receive(tel(4), NOW)
    assert out.items == [] and len(out.rejected) == 1
    assert out.replies[0]["code"] == "invalid_item" and out.replies[0]["seq"] == 4
    assert orjson.loads(out.rejected[0].raw)["seq"] == 4


def test_rejected_seq_is_consumed_once() -> None:
    s = DeviceSession("V", 0)
    out = s.receive(tel(1, lat=100), NOW)
    assert out.rejected[0].seq == 1 and s.received_seq == 1
    s.committed(1)
    replay = s.receive(tel(1, lat=100), NOW)  # replayed after it was consumed
    assert replay.rejected == [] and replay.duplicates == 1


def test_garbage_closes_after_limit_and_resets_on_good_frames() -> None:
    s = DeviceSession("V", 0, garbage_limit=3)
    assert s.receive(b"x", NOW).close_code is None
    assert s.receive(b"x", NOW).close_code is None
    s.receive(tel(1), NOW)  # a good frame resets the count
    assert s.receive(b"x", NOW).close_code is None
    assert s.receive(b"x", NOW).close_code is None
    assert s.receive(b"x", NOW).close_code == CLOSE_POLICY_VIOLATION


def test_invalid_items_do_not_count_as_garbage() -> None:
    s = DeviceSession("V", 0, garbage_limit=2)
    for seq in range(1, 6):
        assert s.receive(tel(seq, lat=500), NOW).close_code is None


def test_intervention_acks_pass_through() -> None:
    s = DeviceSession("V", 0)
    out = s.receive(b'{"type":"intervention_ack","id":"a1","status":"delivered"}', NOW)
    assert [(a.id, a.status) for a in out.intervention_acks] == [("a1", "delivered")]


def test_the_written_out_ack_is_the_ack_frame_as_json() -> None:
    for seq in (0, 1, 42, 2**53, 2**63 - 1):
        assert ack_payload(seq) == orjson.dumps(DeviceSession.ack_frame(seq))
        assert orjson.loads(ack_payload(seq)) == {"type": "ack", "seq": seq}
