"""The recorded fleet (benchmarks/recorded_fleet.py) plays the simulator's own items."""

from __future__ import annotations

import asyncio
import sys
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import uvloop

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


async def _registered(db_url: str, tmp_path: Path, n: int) -> Path:
    from tests.helpers import add_vehicle

    lines = []
    for i in range(n):
        vehicle_class = ("coach", "hazmat")[i % 2]
        token = await add_vehicle(db_url, f"R-{i}", vehicle_class)
        lines.append(f"R-{i},{token},{vehicle_class}\n")
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("".join(lines))
    return tokens


async def _stored(db_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(
            "SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM events)"))  # fmt: skip
    finally:
        await conn.close()


async def test_played_units_are_stored_acked_and_answer_interventions(
    server: Any, db_url: str, tmp_path: Path
) -> None:
    from recorded_fleet import play

    tokens = await _registered(db_url, tmp_path, 4)
    recordings = render(str(tokens), 3.0, 4.0, 50.0, 3, (0.5, 1.0), 0.0)
    # On uvloop, as the benchmark plays: its clock and timers move in whole milliseconds.
    play_on_uvloop = partial(uvloop.run, play(recordings, server.ws_url, 4.0, 8, 0.0, 5.0, 50.0))
    summary = await asyncio.to_thread(play_on_uvloop)
    rendered = sum(len(r[3]) for r in recordings)
    assert summary["ever_connected"] == 4
    assert summary["items_sent"] == summary["items_acked"] == rendered
    assert summary["unacked_items"] == summary["items_never_sent"] == 0
    assert summary["events_sent"] > 0 and summary["interventions_received"] > 0
    assert summary["intervention_acks_sent"]["delivered"] >= summary["interventions_received"]
    assert summary["samples"]["event_to_intervention_count"] > 0
    # No warm-up: every ack of the ~3 s phase is in the first 10 s window (or the second,
    # for the last acks of a slow run), with a p99 of its own.
    by_window = summary["by_window"]["ack_p99_ms"]
    assert 1 <= len(by_window) <= 2 and all(p99 > 0 for p99 in by_window[:1])
    # About one timer per item: a timer that fires before the clock reaches the item's
    # due time must not re-arm itself turn after turn (it did, ~140 times an item).
    assert summary["timer_wakes"] <= 2 * rendered
    assert await _stored(db_url) == rendered


async def test_flood_mode_sends_batches_and_starts_over_when_out_of_items(
    server: Any, db_url: str, tmp_path: Path
) -> None:
    from recorded_fleet import play

    tokens = await _registered(db_url, tmp_path, 2)
    recordings = render(str(tokens), 2.0, 1.0, 50.0, 3, None, 0.0, items_per_unit=30)
    summary = await play(recordings, server.ws_url, 1.0, 2, 0.0, 5.0, 50.0, 20, 2.0)
    assert summary["units_rewound"] > 0  # 30 items a unit last well under 2 s
    assert summary["items_sent"] == summary["items_acked"] > 2 * 30
    assert summary["items_sent"] % 20 == 0  # whole batches of 20
    assert await _stored(db_url) == summary["items_sent"]
