"""The recorded fleet (benchmarks/recorded_fleet.py) plays the simulator's own items."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from telematics.sim.fleet import tire_faults

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from recorded_fleet import _Clock, render

from telematics.sim.vehicle import VehicleSim


def test_rendered_frames_are_the_simulators_items(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("".join(f"V-{n},tok-{n},{c}\n" for n, c in enumerate(
        ("coach", "bus", "hazmat", "freight"))))  # fmt: skip
    recordings = render(str(tokens), 40.0, 1.0, 2.0, 7, (3.0, 6.0), 0.5, base=1.8e9)
    faults = tire_faults(4, 0.5, 7)
    kinds = set()
    for i, (vehicle_id, token, first, items) in enumerate(recordings):
        assert (vehicle_id, token) == (f"V-{i}", f"tok-{i}")
        assert i / 2.0 <= first < i / 2.0 + 1.0
        clock = _Clock(1.8e9)
        sim = VehicleSim(vehicle_id, ("coach", "bus", "hazmat", "freight")[i], 7, unit_index=i,
                         event_interval_s=(3.0, 6.0), tire_fault=faults.get(i, False),
                         clock=clock)  # fmt: skip
        expected = []
        k = 0
        while first + k < 40.0:
            clock.now = 1.8e9 + first + k
            expected += sim.step(1.0)
            k += 1
        assert len(items) == len(expected) > 0
        for n, ((head, tail, is_event), want) in enumerate(zip(items, expected, strict=True)):
            frame = b'%b%d,"ts":"%b"%b' % (head, 100 + n, b"2026-11-29T10:00:00.000Z", tail)
            got = orjson.loads(frame)
            assert got == {**want, "seq": 100 + n, "ts": "2026-11-29T10:00:00.000Z"}
            assert is_event == (want["type"] == "event")
            kinds.add(want["type"])
    assert kinds == {"telemetry", "event"}
