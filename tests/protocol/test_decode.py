"""Pure decoding: valid frames become typed items; every bad input a Rejection naming
its field; nothing ever raises."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from telematics.protocol.decode import decode_frame
from telematics.protocol.messages import (
    EVENT_KINDS,
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def tel(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "telemetry", "seq": 42, "ts": "2026-11-26T08:00:01Z",
                            "lat": 31.299, "lon": 120.5853, "speed_kmh": 62.5}  # fmt: skip
    item.update(fields)
    return item


def one(frame: Any) -> Any:
    data = frame if isinstance(frame, (str, bytes)) else orjson.dumps(frame)
    out = decode_frame(data, NOW)
    assert len(out) == 1
    return out[0]


def test_contract_example_telemetry() -> None:
    frame = ('{"type":"telemetry","seq":42,"ts":"2026-11-26T08:00:01Z","lat":31.2990,'
             '"lon":120.5853,"speed_kmh":62.5,"heading_deg":87,"driver_id":"D-0117",'
             '"ignition":true,"odometer_km":120533.2,"tires":[{"pos":"1L","kpa":830,'
             '"temp_c":41.5},{"pos":"1R","kpa":828,"temp_c":40.9},{"pos":"2LO","kpa":845,'
             '"temp_c":44.0,"sensor_battery_pct":71}]}')  # fmt: skip
    item = one(frame)
    assert isinstance(item, Telemetry)
    assert (item.seq, item.lat, item.speed_kmh, item.driver_id) == (42, 31.299, 62.5, "D-0117")
    assert item.ts == datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC)
    assert [t.pos for t in item.tires] == ["1L", "1R", "2LO"]
    assert item.tires[2].sensor_battery_pct == 71 and item.extra is None


def test_contract_example_event() -> None:
    frame = ('{"type":"event","seq":43,"ts":"2026-11-26T08:00:02.100Z","kind":"fatigue",'
             '"level":2,"lat":31.2991,"lon":120.5860,"speed_kmh":88.0,"driver_id":"D-0117",'
             '"attrs":{"eye_closure_s":2.4}}')  # fmt: skip
    item = one(frame)
    assert isinstance(item, DeviceEvent)
    assert (item.kind, item.level, item.attrs) == ("fatigue", 2, {"eye_closure_s": 2.4})


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
def test_every_v1_kind_is_accepted(kind: str) -> None:
    item = one({**tel(), "type": "event", "kind": kind})
    assert isinstance(item, DeviceEvent) and item.kind == kind


def test_offsets_and_unknown_fields() -> None:
    item = one(tel(ts="2026-11-26T16:00:01+08:00", firmware="2.1.0"))
    assert item.ts == datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC)
    assert item.extra == {"firmware": "2.1.0"}  # newer units may send more; kept


def test_old_ts_is_fine_but_not_far_future() -> None:
    assert isinstance(one(tel(ts="2021-01-01T00:00:00Z")), Telemetry)
    assert isinstance(one(tel(ts=(NOW + timedelta(minutes=4)).isoformat())), Telemetry)
    bad = one(tel(ts=(NOW + timedelta(minutes=6)).isoformat()))
    assert isinstance(bad, Rejection) and bad.message.startswith("ts:")


BAD: list[tuple[Any, str, str]] = [
    ("{", "bad_json", "frame"),
    ("[]", "bad_json", "frame"),
    ('"text"', "bad_json", "frame"),
    ("\xff\xfe", "bad_json", "frame"),
    ('{"type":"telemetry","seq":1,"driver_id":"a\\ud800b"}', "bad_json", "frame"),  # lone
    ({"seq": 1}, "invalid_item", "type"),
    ({"type": 7, "seq": 1}, "unknown_type", "type"),
    (tel(seq=0), "invalid_item", "seq"),
    (tel(seq=True), "invalid_item", "seq"),
    (tel(seq=1.5), "invalid_item", "seq"),
    (tel(ts="yesterday"), "invalid_item", "ts"),
    (tel(ts="2026-11-26T08:00:01"), "invalid_item", "ts"),
    (tel(ts="1999-12-31T23:59:59Z"), "invalid_item", "ts"),
    (tel(lat=None), "invalid_item", "lat"),
    (tel(lon=181), "invalid_item", "lon"),
    (tel(speed_kmh=-1), "invalid_item", "speed_kmh"),
    (tel(speed_kmh=501), "invalid_item", "speed_kmh"),
    (tel(speed_kmh=True), "invalid_item", "speed_kmh"),
    (tel(heading_deg=400), "invalid_item", "heading_deg"),
    (tel(ignition="yes"), "invalid_item", "ignition"),
    (tel(driver_id="D\x00"), "invalid_item", "driver_id"),
    (tel(driver_id="x" * 65), "invalid_item", "driver_id"),
    (tel(tires={"pos": "1L"}), "invalid_item", "tires"),
    (tel(tires=[{"pos": "front"}]), "invalid_item", "tires[0].pos"),
    (tel(tires=[{"pos": "1L", "temp_c": 999}]), "invalid_item", "tires[0].temp_c"),
    (tel(tires=[{"pos": "1L"}] * 33), "invalid_item", "tires"),
    ({**tel(), "type": "event"}, "invalid_item", "kind"),
    ({**tel(), "type": "event", "kind": {"a": 1}}, "invalid_item", "kind"),  # unhashable
    ({**tel(), "type": "event", "kind": "fatigue", "level": 3}, "invalid_item", "level"),
    ({**tel(), "type": "event", "kind": "fatigue", "attrs": [1]}, "invalid_item", "attrs"),
    ({**tel(), "type": "event", "kind": "fatigue", "attrs": {"a": "\x00"}}, "invalid_item",
     "attrs"),
    ({**tel(), "type": "event", "kind": "fatigue", "attrs": {"a": "x" * 20000}},
     "invalid_item", "attrs"),
    ({"type": "intervention_ack", "id": "abc", "status": "heard"}, "invalid_item", "status"),
    ({"type": "intervention_ack", "status": "delivered"}, "invalid_item", "id"),
    ({"type": "batch", "items": {}}, "invalid_item", "items"),
    ({"type": "welcome"}, "unknown_type", "type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "code", "field"), BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_names_the_field(frame: Any, code: str, field: str) -> None:
    data = frame.encode("latin-1") if isinstance(frame, str) else orjson.dumps(frame)
    item = one(data)
    assert isinstance(item, Rejection)
    assert item.code == code
    assert item.message.startswith(field + ":"), item.message
    assert item.raw == data


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        (_nested(100_000), "bad_json", "frame"),  # deeper than any JSON reader recurses
        (b'{"type":"batch","items":' + _nested(5000) + b"}", "bad_json", "frame"),
        (b'{"a":' * 3000 + b"NaN" + b"}" * 3000, "bad_json", "frame"),
        (orjson.dumps({**tel(), "type": "event", "kind": "fatigue"})[:-1]
         + b',"attrs":{"a":' + _nested(300) + b"}}", "invalid_item", "attrs"),
        (orjson.dumps(tel())[:-1] + b',"x":' + _nested(300) + b"}", "invalid_item",
         "(extra fields)"),
    ],
    ids=["array-100000", "batch-items-5000", "object-3000-nan", "attrs-300", "extra-300"],
)  # fmt: skip
def test_deep_nesting_is_rejected_and_kept(frame: bytes, code: str, field: str) -> None:
    """orjson reads 1,024 levels and writes 255; deeper input is refused by name, never
    raised out of the decoder (a RecursionError or TypeError once escaped here)."""
    item = one(frame)
    assert isinstance(item, Rejection)
    assert (item.code, item.raw) == (code, frame)
    assert item.message.startswith(field + ":"), item.message


def test_a_decoder_bug_costs_the_frame_not_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever escapes the decoders becomes a kept rejection, not an exception."""
    from telematics.protocol import decode

    def broken(raw: bytes, now: datetime) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(decode, "decode_valid", broken)
    frame = orjson.dumps(tel())
    item = one(frame)
    assert isinstance(item, Rejection)
    assert (item.code, item.raw) == ("invalid_item", frame)
    assert item.message.startswith("frame:")


def test_rejection_keeps_a_readable_seq() -> None:
    assert one(tel(lat=200)).seq == 42
    assert one(tel(seq="7")).seq is None


def test_batch_items_in_order_with_their_own_rejections() -> None:
    out = decode_frame(orjson.dumps({"type": "batch", "items": [
        tel(seq=1), tel(seq=2, lat=95), {"type": "batch", "seq": 3}, 5, tel(seq=6),
    ]}), NOW)  # fmt: skip
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["Telemetry", "Rejection", "Rejection", "Rejection", "Telemetry"]
    assert [getattr(x, "seq", None) for x in out] == [1, 2, 3, None, 6]
    refused = out[1]
    assert isinstance(refused, Rejection)
    assert orjson.loads(refused.raw)["lat"] == 95  # each refused item is kept on its own


def test_intervention_ack() -> None:
    ack = one({"type": "intervention_ack", "id": "6f1c", "status": "driver_confirmed"})
    assert ack == InterventionAck("6f1c", "driver_confirmed")


def test_random_bytes_never_raise() -> None:
    """A small fuzz: random and mutated frames only ever produce documented outcomes."""
    rng = random.Random(7)
    seed = orjson.dumps({"type": "batch", "items": [tel(seq=1), {**tel(seq=2), "type": "event",
                         "kind": "fatigue", "attrs": {"x": [1, 2]}}]})  # fmt: skip
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        for out in decode_frame(bytes(data), NOW):
            if isinstance(out, Rejection):
                assert out.code in ("bad_json", "unknown_type", "invalid_item")
    for _ in range(500):
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        assert all(isinstance(o, Rejection) for o in decode_frame(blob, NOW))


def _mutations(rng: random.Random) -> Any:
    """Frames near the valid ones: every field swapped for an edge value now and then."""
    values: list[Any] = [
        None, True, False, 0, -1, 1, 2, 3, 1.0, 59.9, -0.0, 90, 91, 180.5, 360, 360.5, 500.1,
        2**63, 2**64, 1e8, 1e9, "x", "", "D" * 64, "D" * 65, "a\u0000b", "1L", "2RO", "0L",
        "1LX", "fatigue", "yawn", [1], {"k": "\u0000"}, {"k": "v" * 17_000}, {"n": 2**70},
        "2026-11-26T08:00:01Z", "2026-11-26T08:00:01z", "2026-11-26 08:00:01Z",
        "2026-11-26T16:00:01+08:00", "2026-11-26T08:00:01.123456789Z", "2026-11-26T08:00:01",
        "20261126T080001Z", "2026-11-26T08:06:00Z", "1999-12-31T23:59:59Z", "2026-11-26",
    ]  # fmt: skip
    tel_fields = ["seq", "ts", "lat", "lon", "speed_kmh", "heading_deg", "driver_id",
                  "ignition", "odometer_km", "tires", "type", "firmware"]  # fmt: skip
    ev_fields = ["seq", "ts", "kind", "level", "lat", "lon", "speed_kmh", "driver_id",
                 "attrs", "type", "firmware"]  # fmt: skip
    tire_fields = ["pos", "kpa", "temp_c", "sensor_battery_pct", "note"]

    def item() -> dict[str, Any]:
        if rng.random() < 0.5:
            obj = tel(heading_deg=87, driver_id="D-1", ignition=True, odometer_km=5.0,
                      tires=[{"pos": "1L", "kpa": 830, "temp_c": 41.5},
                             {"pos": "2RO", "kpa": 845.5, "sensor_battery_pct": 71}])  # fmt: skip
            fields = tel_fields
        else:
            obj = {**tel(), "type": "event", "kind": "fatigue", "level": 2,
                   "driver_id": "D-1", "attrs": {"eye_closure_s": 2.4}}  # fmt: skip
            fields = ev_fields
        for _ in range(rng.choice((0, 0, 1, 2))):
            if "tires" in obj and rng.random() < 0.3 and isinstance(obj["tires"], list):
                rng.choice(obj["tires"])[rng.choice(tire_fields)] = rng.choice(values)
            elif rng.random() < 0.1:
                obj.pop(rng.choice(fields), None)
            else:
                obj[rng.choice(fields)] = rng.choice(values)
        return obj

    if rng.random() < 0.5:
        return item()
    return {"type": "batch", "items": [item() for _ in range(rng.randint(0, 4))]}


def test_fast_path_agrees_with_checked_path() -> None:
    """msgspec's fast path accepts only frames the checked path accepts whole, and
    decodes them to equal items; it also takes the common frames (or it saves nothing)."""
    from telematics.protocol.decode import decode_checked
    from telematics.protocol.fastpath import decode_valid

    rng = random.Random(3)
    taken = 0
    for _ in range(6000):
        raw = json.dumps(_mutations(rng)).encode()  # orjson cannot write 2**64
        fast = decode_valid(raw, NOW)
        checked = decode_checked(raw, NOW)
        if fast is None:
            continue
        taken += 1
        assert not any(isinstance(c, Rejection) for c in checked), raw
        assert fast == checked, raw
    assert taken > 1500  # the unmutated and harmlessly mutated frames
    for raw in (orjson.dumps(tel()), orjson.dumps({"type": "batch", "items": [tel()] * 50})):
        assert decode_valid(raw, NOW) == decode_checked(raw, NOW)
