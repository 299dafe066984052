"""What a simulated unit records: valid protocol items, ts format, seq numbering."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import orjson

from telematics.fleet import VEHICLE_CLASSES
from telematics.protocol.decode import decode_frame
from telematics.protocol.messages import EVENT_KINDS, DeviceEvent, Rejection, Telemetry
from telematics.sim.clock import format_ts
from telematics.sim.outbox import Outbox
from telematics.sim.vehicle import VehicleSim
from telematics.sim.world import CENTER, distance_km

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
T0 = 1_795_680_000.0  # 2026-11-26T08:00:00Z


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_format_ts() -> None:
    assert format_ts(T0) == "2026-11-26T08:00:00.000Z"
    assert format_ts(T0 + 0.25) == "2026-11-26T08:00:00.250Z"
    assert format_ts(T0 + 1.999) == "2026-11-26T08:00:01.999Z"
    assert format_ts(T0 + 61.0) == "2026-11-26T08:01:01.000Z"
    parsed = datetime.fromisoformat(format_ts(T0 + 3.5))
    assert parsed == datetime(2026, 11, 26, 8, 0, 3, 500_000, tzinfo=UTC)


def test_items_are_valid_protocol_items() -> None:
    """Hours of items from every class pass the server's own decoder."""
    clock = FakeClock()
    kinds: Counter[str] = Counter()
    for n, vehicle_class in enumerate(VEHICLE_CLASSES * 3):
        fault = ("slow_leak", "fast_leak", "overheat", "sensor_fault", False)[n % 5]
        sim = VehicleSim(f"SU-{n}", vehicle_class, 7, unit_index=n, tire_fault=fault, clock=clock)
        outbox = Outbox()
        outbox.start(0)
        prev_seq = 0
        for _ in range(4 * 3600):
            clock.t += 1.0
            for item in sim.step(1.0):
                seq = outbox.add(item)
                assert seq == prev_seq + 1
                prev_seq = seq
                assert TS.match(item["ts"])
                assert distance_km(*CENTER, item["lat"], item["lon"]) < 60.0
                if item["type"] == "event":
                    assert item["kind"] in EVENT_KINDS
                    kinds[item["kind"]] += 1
                    if item["kind"].startswith("tire_"):
                        assert item["attrs"]["pos"]
        now = datetime.fromtimestamp(clock.t, UTC)
        # decode everything the unit recorded, as the server would
        decoded = decode_frame(
            b'{"type":"batch","items":['
            + b",".join(outbox.item(s) for s in outbox.held_seqs()[-1000:])
            + b"]}",
            now,
        )
        assert not [d for d in decoded if isinstance(d, Rejection)]
        for seq in list(outbox.held_seqs())[::97]:
            (one,) = decode_frame(outbox.item(seq), now)
            assert isinstance(one, Telemetry | DeviceEvent), one
    assert {"lane_departure", "headway_too_close", "yawning"} <= set(kinds)
    assert any(k.startswith("tire_") for k in kinds)


def test_same_seed_same_items() -> None:
    def items(seed: int) -> list[bytes]:
        sim = VehicleSim("SU-E12345", "hazmat", seed, clock=FakeClock())
        return [orjson.dumps(i) for _ in range(2000) for i in sim.step(1.0)]

    assert items(5) == items(5)
    assert items(5) != items(6)


def test_telemetry_fields() -> None:
    clock = FakeClock()
    sim = VehicleSim("SU-1", "coach", 1, unit_index=58, clock=clock)
    item = sim.step(1.0)[0]
    assert item["type"] == "telemetry"
    assert item["driver_id"] in ("D-0117", "D-0118")
    assert isinstance(item["ignition"], bool)
    assert item["odometer_km"] > 0
    assert item["ts"] == "2026-11-26T08:00:00.000Z"
    odo = item["odometer_km"]
    for _ in range(600):
        clock.t += 1.0
        item = sim.step(1.0)[0]
        assert item["odometer_km"] >= odo
        odo = item["odometer_km"]
        assert 0 <= item["heading_deg"] <= 360
