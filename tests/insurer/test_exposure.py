"""Driven distance and time for insurers: the hourly rollups (sql/012) give the same
figures as summing the fixes, whatever part is rolled up, for fixes that arrive after
their hour was summed, for policies that start mid-hour or overlap, and for new settings.
The reference is a plain walk over the fixes the units sent."""

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
    ExposureRow,
    covered_spans,
    exposure,
    raw_spans,
    roll_up,
    whole_hours,
)
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


def test_spans_split_into_whole_hours_and_raw_parts() -> None:
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
    assert whole_hours(spans) == [("A", h9, h9 + timedelta(hours=4))]
    stale = {"A": {h9 + HOUR, h9 + 2 * HOUR, h9 + 10 * HOUR}}  # the last is outside: ignored
    assert raw_spans(spans, stale) == [
        ("A", t0, h9),
        ("A", h9 + HOUR, h9 + 3 * HOUR),  # a run of stale hours: one range
        ("A", h9 + 4 * HOUR, t0 + timedelta(hours=5)),
        ("B", t0 + timedelta(minutes=5), t0 + timedelta(minutes=30)),
    ]
    # the stale hour next to the tail joins it
    assert raw_spans(spans, {"A": {h9 + 3 * HOUR}})[-2:] == [
        ("A", h9 + 3 * HOUR, t0 + timedelta(hours=5)),
        ("B", t0 + timedelta(minutes=5), t0 + timedelta(minutes=30)),
    ]
