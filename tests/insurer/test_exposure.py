"""Driven distance and time for insurers: the hourly rollups (sql/012) and those of an
hour's first slices (sql/015) give the same figures as summing the fixes, whatever part
is rolled up, for fixes that arrive after their hour or slice was summed, for policies
that start mid-hour or overlap, for windows ending in the open hour, and for new
settings. The reference is a plain walk over the fixes the units sent."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from telematics.insurer.model import Coverage
from telematics.insurer.store.exposure import (
    HOUR,
    ROLLUP_DELAY,
    SLICE,
    ExposureRow,
    covered_spans,
    exposure,
    roll_up,
    rolled_until,
    split_spans,
)
from telematics.pipeline import StorePlan
from telematics.store.writer import LATE_SLICE_S, _late_before, _scan_telemetry
from tests.helpers import RunningServer, Unit, add_vehicle, telemetry

GAP_S, MIN_KMH = 120.0, 5.0
Fix = tuple[datetime, float, float, float, str | None]  # ts, lat, lon, speed, driver


def drive(start: datetime, end: datetime, seed: int) -> list[Fix]:
    """Fixes every 7–13 s with a few long gaps, stops, driver changes, no-driver spells."""
    rng = random.Random(seed)
    fixes: list[Fix] = []
    t, lat, lon = start.replace(microsecond=0), 31.3, 120.6
    while t < end:
        speed = 0.0 if rng.random() < 0.15 else rng.uniform(5.0, 95.0)
        lat += rng.uniform(-1, 1) * speed * 1e-5
        lon += rng.uniform(-1, 1) * speed * 1e-5
        hour_of_run = int((t - start) / HOUR)
        driver = None if hour_of_run == 2 else f"D-{seed}-{hour_of_run % 2}"
        fixes.append((t, round(lat, 6), round(lon, 6), round(speed, 1), driver))
        t += timedelta(milliseconds=rng.randint(7000, 13000) if rng.random() > 0.01 else 600_000)
    return fixes


def reference(
    fixes: dict[str, list[Fix]], coverage: Coverage, since: datetime, until: datetime, gap_s: float
) -> dict[tuple[str, str | None], tuple[float, float]]:
    out: dict[tuple[str, str | None], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for vehicle, rows in fixes.items():
        windows = coverage.clip(vehicle, since, until)
        for prev, fix in itertools.pairwise(rows):
            dt = (fix[0] - prev[0]).total_seconds()
            if dt > gap_s or not any(w.start <= fix[0] < w.end for w in windows):
                continue
            p1, p2 = math.radians(prev[1]), math.radians(fix[1])
            dlat, dlon = p2 - p1, math.radians(fix[2] - prev[2])
            a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
            sums = out[vehicle, fix[4]]
            sums[0] += 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))
            if fix[3] >= MIN_KMH:
                sums[1] += dt / 3600
    return {k: (v[0], v[1]) for k, v in out.items()}


def assert_same(rows: list[ExposureRow], expected: dict[Any, tuple[float, float]]) -> None:
    got = {(r.vehicle_id, r.driver_id): (r.km, r.hours) for r in rows}
    assert got.keys() == expected.keys()
    for key, (km, hours) in expected.items():
        assert got[key][0] == pytest.approx(km, rel=1e-9, abs=1e-9), key
        assert got[key][1] == pytest.approx(hours, rel=1e-9, abs=1e-9), key


async def send(server: RunningServer, token: str, fixes: list[Fix], first_seq: int) -> int:
    unit = await Unit.connect(server.ws_url, token)
    seq = first_seq
    for i in range(0, len(fixes), 500):
        items = []
        for ts, lat, lon, speed, driver in fixes[i : i + 500]:
            item = telemetry(seq, ts=ts, lat=lat, lon=lon, speed_kmh=speed, driver_id=driver)
            if driver is None:
                del item["driver_id"]
            items.append(item)
            seq += 1
        await unit.send({"type": "batch", "items": items})
    await unit.ack_reaching(seq - 1)
    await unit.close()
    return seq


async def roll_all(db: asyncpg.Connection, gap_s: float = GAP_S) -> int:
    total = 0
    while done := await roll_up(db, now=datetime.now(UTC), gap_s=gap_s, min_kmh=MIN_KMH):
        total += done
    return total


async def test_rollups_give_the_figures_of_the_fixes(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=6, minutes=20)
    tokens = {v: await add_vehicle(server.db_url, v, fleet="F") for v in ("V-1", "V-2")}
    fixes = {"V-1": drive(start, now - timedelta(minutes=1), 1)}
    # V-2 goes quiet in the middle of an hour and sends the rest after it was rolled up.
    v2 = drive(start + timedelta(minutes=5), now - timedelta(minutes=2), 2)
    cut = start + timedelta(hours=3, minutes=30)
    fixes["V-2"] = [f for f in v2 if f[0] < cut]
    await send(server, tokens["V-1"], fixes["V-1"], 1)
    next_v2 = await send(server, tokens["V-2"], fixes["V-2"], 1)

    # Policies: V-1 under two overlapping ones, V-2 from the middle of an hour.
    coverage = Coverage.of(
        "events",
        [
            ("V-1", start - timedelta(days=1), start + timedelta(hours=2, minutes=10)),
            ("V-1", start + timedelta(hours=1, minutes=45), now + timedelta(days=1)),
            ("V-2", start + timedelta(hours=1, minutes=17, seconds=3), now + timedelta(days=1)),
        ],
    )
    since = start + timedelta(minutes=33)

    async def check(gap_s: float = GAP_S) -> None:
        until = datetime.now(UTC)
        rows = await exposure(db, coverage, since, until, gap_s=gap_s, min_kmh=MIN_KMH)
        assert_same(rows, reference(fixes, coverage, since, until, gap_s))

    await check()  # nothing rolled up: all from the fixes
    rolled = await roll_all(db)
    assert rolled >= 8  # the closed hours of both vehicles
    assert await db.fetchval("SELECT count(*) FROM exposure_hours") >= 8
    await check()  # whole hours from the rollups, the part-hours from the fixes

    # The rest of V-2's drive arrives late, into an hour already summed.
    late = [f for f in v2 if f[0] >= cut]
    assert late[0][0] < cut.replace(minute=0) + HOUR  # the first go into the rolled-up hour
    await send(server, tokens["V-2"], late, next_v2)
    fixes["V-2"] = v2
    stale = await db.fetchval(
        """SELECT count(*) FROM telemetry_hours WHERE vehicle_id = 'V-2'
           AND hour = $1 AND rolled_version IS DISTINCT FROM version""",
        cut.replace(minute=0),
    )
    assert stale == 1  # the writer marked it for summing again
    await check()  # that hour from its fixes meanwhile
    assert await roll_all(db) >= 1
    await check()

    # Other settings: the rollups are not used until summed again with them.
    await check(gap_s=30.0)
    assert await roll_all(db, gap_s=30.0) >= 8
    await check(gap_s=30.0)
    await check()  # and the first settings still give their own figures


def steady(start: datetime, end: datetime, step_s: int, seed: int) -> list[Fix]:
    """A fix every ``step_s`` seconds from ``start`` (so on every slice and hour boundary
    when ``step_s`` divides them), one driver."""
    rng = random.Random(seed)
    fixes: list[Fix] = []
    t, lat, lon = start, 31.3, 120.6
    while t < end:
        speed = rng.uniform(0.0, 90.0)
        lat, lon = lat + speed * 1e-6, lon + rng.uniform(-1, 1) * speed * 1e-6
        fixes.append((t, round(lat, 6), round(lon, 6), round(speed, 1), f"D-{seed}"))
        t += timedelta(seconds=step_s)
    return fixes


async def rolled_s(db: asyncpg.Connection, vehicle: str, hour: datetime) -> int | None:
    value: int | None = await db.fetchval(
        """SELECT rolled_s FROM telemetry_hours WHERE vehicle_id = $1 AND hour = $2
           AND rolled_version = version""",
        vehicle,
        hour,
    )
    return value


async def roll_at(db: asyncpg.Connection, now: datetime) -> int:
    total = 0
    while done := await roll_up(db, now=now, gap_s=GAP_S, min_kmh=MIN_KMH):
        total += done
    return total


async def test_open_hour_rolled_up_by_slices_gives_the_figures_of_the_fixes(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    """An hour in the past stands for the open one: rolled up as at a time inside it."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    tokens = {v: await add_vehicle(server.db_url, v, fleet="F") for v in ("V-1", "V-2", "V-3")}
    # V-1 drives through the hour and the next; V-2 only in the hour, from 7 minutes in,
    # a fix every 10 s (on every slice boundary); V-3 too, but its minutes 10–15 arrive
    # late, after those slices were summed.
    fixes = {
        "V-1": drive(hour - timedelta(minutes=40), hour + timedelta(minutes=100), 7),
        "V-2": steady(hour + timedelta(minutes=7), hour + timedelta(minutes=50), 10, 8),
    }
    v3 = steady(hour + timedelta(minutes=2), hour + timedelta(minutes=55), 10, 9)
    gap = [f for f in v3 if hour + timedelta(minutes=10) <= f[0] < hour + timedelta(minutes=15)]
    fixes["V-3"] = [f for f in v3 if f not in gap]
    for vehicle in ("V-1", "V-2"):
        await send(server, tokens[vehicle], fixes[vehicle], 1)
    next_v3 = await send(server, tokens["V-3"], fixes["V-3"], 1)
    coverage = Coverage.of("events", [(v, hour - 5 * HOUR, hour + 5 * HOUR) for v in tokens])

    async def check(since: datetime, until: datetime) -> None:
        rows = await exposure(db, coverage, since, until, gap_s=GAP_S, min_kmh=MIN_KMH)
        assert_same(rows, reference(fixes, coverage, since, until, GAP_S))

    # As at 31 minutes past: the slices up to 25 past are summed (31 past less 6 minutes).
    at = hour + timedelta(minutes=31)
    assert rolled_until(at) == hour + timedelta(minutes=25)
    assert await roll_at(db, at) >= 4  # V-1's hour before, and the hour of each
    for vehicle in tokens:
        assert await rolled_s(db, vehicle, hour) == 25 * 60
    assert await rolled_s(db, "V-1", hour + HOUR) is None  # not begun
    # reads of the rest start at V-2's fix 2 min (the gap) before 25 past: 16 min after its first
    tail = "SELECT rolled_seq FROM telemetry_hours WHERE vehicle_id = $1 AND hour = $2"
    assert await db.fetchval(tail, "V-2", hour) == 1 + 16 * 6
    windows = [
        (hour - HOUR, at),  # ends in the open hour after its rolled slices
        (hour, hour + timedelta(minutes=25)),  # ends where the rollup ends
        (hour, hour + timedelta(minutes=24, seconds=59)),  # short of it: all from fixes
        (hour + timedelta(seconds=1), at),  # starts inside the rolled part
        (hour + timedelta(minutes=25), hour + timedelta(minutes=40)),
        (hour - 2 * HOUR, datetime.now(UTC)),  # the hour and those after, not rolled up
    ]
    for since, until in windows:
        await check(since, until)

    # V-3's buffered minutes arrive now, into slices already summed: the writer marks
    # the hour, and reads take it from the fixes until it is summed again.
    await send(server, tokens["V-3"], gap, next_v3)
    fixes["V-3"] = v3
    assert await rolled_s(db, "V-3", hour) is None
    for since, until in windows:
        await check(since, until)
    assert await roll_at(db, at) == 1  # only V-3's hour, from its start again
    assert await rolled_s(db, "V-3", hour) == 25 * 60
    for since, until in windows:
        await check(since, until)

    # Later slices extend the rollups; the hour closes and is whole.
    assert await roll_at(db, hour + timedelta(minutes=47)) == 3
    assert await rolled_s(db, "V-2", hour) == 40 * 60
    await check(hour, hour + timedelta(minutes=41))
    assert await roll_at(db, hour + HOUR + ROLLUP_DELAY) == 3
    for vehicle in tokens:
        assert await rolled_s(db, vehicle, hour) == 3600
    for since, until in windows:
        await check(since, until)


def test_spans_split_into_rollups_and_raw_parts() -> None:
    t0 = datetime(2026, 11, 2, 8, 20, tzinfo=UTC)
    coverage = Coverage.of(
        "events",
        [
            ("A", t0, t0 + timedelta(hours=2)),
            ("A", t0 + timedelta(hours=1), t0 + timedelta(hours=5)),  # overlaps: merged
            ("B", t0 + timedelta(minutes=5), t0 + timedelta(minutes=30)),  # inside one hour
        ],
    )
    spans = covered_spans(coverage, t0 - timedelta(days=1), t0 + timedelta(days=1))
    assert spans == [("A", t0, t0 + timedelta(hours=5)), ("B", t0 + timedelta(minutes=5),
                                                         t0 + timedelta(minutes=30))]  # fmt: skip
    h9 = t0.replace(hour=9, minute=0)
    end = t0 + timedelta(hours=5)  # 13:20
    assert split_spans(spans, {}) == (
        [("A", h9, h9 + 4 * HOUR)],
        [("A", t0, h9), ("A", h9 + 4 * HOUR, end), spans[1]],
    )
    # stale hours (0 s usable), one outside the span: ignored
    stale = {"A": {h9 + HOUR: 0, h9 + 2 * HOUR: 0, h9 + 10 * HOUR: 0}}
    assert split_spans(spans, stale) == (
        [("A", h9, h9 + HOUR), ("A", h9 + 3 * HOUR, h9 + 4 * HOUR)],
        [
            ("A", t0, h9),
            ("A", h9 + HOUR, h9 + 3 * HOUR),  # a run of stale hours: one range
            ("A", h9 + 4 * HOUR, end),
            spans[1],
        ],
    )
    # the stale hour next to the tail joins it
    assert split_spans(spans, {"A": {h9 + 3 * HOUR: 0}})[1][-2:] == [
        ("A", h9 + 3 * HOUR, end),
        spans[1],
    ]
    # the last hour summed to 13:15, inside the window: its rollup and 5 minutes of fixes
    m = timedelta(minutes=1)
    assert split_spans(spans, {"A": {h9 + 4 * HOUR: 15 * 60}}) == (
        [("A", h9, h9 + 5 * HOUR)],
        [("A", t0, h9), ("A", h9 + 4 * HOUR + 15 * m, end), spans[1]],
    )
    # summed to 13:20 exactly: nothing from the fixes at that end
    assert split_spans(spans, {"A": {h9 + 4 * HOUR: 20 * 60}}) == (
        [("A", h9, h9 + 5 * HOUR)],
        [("A", t0, h9), spans[1]],
    )
    # summed to 13:25, past the window: that hour from the fixes
    assert split_spans(spans, {"A": {h9 + 4 * HOUR: 25 * 60}}) == split_spans(spans, {})
    # an hour summed part-way inside the window: its rollup, then the fixes of the rest
    assert split_spans(spans, {"A": {h9 + HOUR: 10 * 60}}) == (
        [("A", h9, h9 + 4 * HOUR)],
        [
            ("A", t0, h9),
            ("A", h9 + HOUR + 10 * m, h9 + 2 * HOUR),
            ("A", h9 + 4 * HOUR, end),
            spans[1],
        ],
    )
    # a span from an hour's start to inside it, the hour summed part-way
    c = ("C", h9, h9 + 30 * m)
    tail = ("C", h9 + 25 * m, h9 + 30 * m)
    assert split_spans([c], {"C": {h9: 25 * 60}}) == ([("C", h9, h9 + HOUR)], [tail])
    assert split_spans([c], {}) == ([], [c])  # the hour summed whole: past the window
    assert split_spans([c], {"C": {h9: 0}}) == ([], [c])
    # a span inside one hour never uses its rollup
    assert split_spans([spans[1]], {"B": {t0.replace(minute=0): 10 * 60}}) == ([], [spans[1]])


def test_rolled_until_is_the_end_of_the_newest_slice_closed_long_enough() -> None:
    h = datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert SLICE == timedelta(seconds=LATE_SLICE_S)  # the writer marks late fixes by slice
    assert rolled_until(h + timedelta(minutes=34)) == h + timedelta(minutes=25)
    assert rolled_until(h + timedelta(minutes=31)) == h + timedelta(minutes=25)
    assert rolled_until(h + timedelta(minutes=30, seconds=59)) == h + timedelta(minutes=20)
    assert rolled_until(h + timedelta(minutes=2)) == h - timedelta(minutes=5)


def test_writer_marks_a_fix_late_once_its_slice_has_closed() -> None:
    h = datetime(2026, 11, 2, 8, tzinfo=UTC)
    now = (h + timedelta(minutes=24)).timestamp()
    late_before = _late_before(now)
    assert late_before == h + timedelta(minutes=20)  # the slice before closed 4 minutes ago
    assert _late_before(now - 1) == h + timedelta(minutes=15)  # not 4 minutes yet
    # a unit that stores and forwards every two minutes is on time, not late
    assert h + timedelta(minutes=22) >= late_before

    def plan(*ts: datetime) -> StorePlan:
        return StorePlan("V", telemetry=[("V", i + 10, t) for i, t in enumerate(ts)])

    marked = {"V": h}  # the writer has marked the open hour already
    # fixes of the open slice: nothing to mark
    assert (
        _scan_telemetry([plan(h + timedelta(minutes=20, seconds=5))], marked, late_before)[1] == {}
    )
    # a fix of a closed slice of the open hour: its hour is marked (and its rollup redone)
    late = plan(h + timedelta(minutes=20), h + timedelta(minutes=19, seconds=59))
    assert _scan_telemetry([late], marked, late_before)[1] == {("V", h): 11}
