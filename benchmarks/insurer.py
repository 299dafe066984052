"""Insurer API benchmark: evidence packet build time over 30 days of 1 Hz telemetry for
one vehicle (≈2.6 M rows), the latency of a 1,000-alarm feed page, and the vehicle's
30-day exposure (what scores and loss reports rest on) from its fixes and from the hourly
rollups (sql/012), with the time the rollups take.

    .venv/bin/python benchmarks/insurer.py [--days 30] [--alarms 20000] [--runs 7]

Uses TELEMATICS_DATABASE_URL if set, else a throw-away embedded PostgreSQL. The data are
bulk-loaded with generate_series (server-side, no client round trips); the server is the
real application (build_app) on a free port, measured over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from telematics.config import Settings
from telematics.ingest.app import build_app
from telematics.insurer.model import Coverage
from telematics.insurer.scoring import RiskWeights, load_weights
from telematics.insurer.store import insurers
from telematics.insurer.store.exposure import HOUR, exposure, roll_up, rolled_until
from telematics.store import registry
from telematics.store.migrate import migrate


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def load(url: str, days: int, alarms: int, end: datetime) -> str:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await registry.add_vehicles(conn, [registry.NewVehicle("BENCH-1", "FB", "coach")])
        start = end - timedelta(days=days)
        month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while month < end:
            await conn.execute("SELECT ensure_month_partitions($1::date)", month.date())
            month = (month + timedelta(days=32)).replace(day=1)
        t0 = time.perf_counter()
        # 1 Hz fixes along a slow circle; driver changes every 8 hours
        await conn.execute(
            """INSERT INTO telemetry (vehicle_id, seq, ts, lat, lon, speed_kmh, heading_deg,
                                      driver_id)
               SELECT 'BENCH-1', g, $1::timestamptz + make_interval(secs => g),
                      31.3 + 0.05 * sin(g / 3600.0), 120.6 + 0.05 * cos(g / 3600.0),
                      (40 + 30 * sin(g / 600.0))::real, (g % 360)::real,
                      'D-' || (g / 28800 % 3)
               FROM generate_series(1, $2::int) AS g""",
            start,
            days * 86400,
        )
        # The hour marks the batch writer keeps for every vehicle (sql/009).
        await conn.execute(
            """INSERT INTO telemetry_hours (vehicle_id, hour, first_seq)
               SELECT vehicle_id, date_trunc('hour', ts), min(seq) FROM telemetry
               WHERE vehicle_id = 'BENCH-1' GROUP BY 1, 2"""
        )
        await conn.execute(
            """INSERT INTO tire_readings (vehicle_id, seq, ts, pos, kpa, temp_c)
               SELECT 'BENCH-1', g, $1::timestamptz + make_interval(secs => g), p,
                      820 + (g % 7), 40 + (g % 5)
               FROM generate_series(60, $2::int, 60) AS g,
                    unnest(ARRAY['1L','1R','2LO','2LI','2RI','2RO']) AS p""",
            start,
            days * 86400,
        )
        loaded = time.perf_counter() - t0
        await conn.execute(
            """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived,
                                   first_seq, first_ts, last_seq, last_ts, lat, lon, speed_kmh,
                                   rules_version, active, cleared_at)
               SELECT 'al-' || g, 'BENCH-1', k, k, s, 'bench', false, g * 100,
                      $1::timestamptz + make_interval(secs => g * 100), g * 100,
                      $1::timestamptz + make_interval(secs => g * 100 + 5), 31.3, 120.6, 60,
                      'bench', false, $1::timestamptz + make_interval(secs => g * 100 + 60)
               FROM generate_series(1, $2::int) AS g,
                    LATERAL (SELECT (ARRAY['fatigue','phone_call','overspeed','collision'])
                                    [1 + g % 4] AS k,
                                    (ARRAY['general','moderate','severe'])[1 + g % 3] AS s) x""",
            start,
            alarms,
        )
        await conn.execute("ANALYZE")
        rows = await conn.fetchval("SELECT count(*) FROM telemetry")
        print(f"loaded {rows:,} telemetry rows in {loaded:.1f} s, {alarms:,} alarms")
        await insurers.add_insurer(conn, "bench", "Bench Mutual")
        await insurers.add_policy(
            conn,
            "bench",
            starts_at=start - timedelta(days=1),
            ends_at=end + timedelta(days=365),
            consent=["events", "locations", "evidence"],
            fleet_id="FB",
        )
        return await insurers.issue_key(conn, "bench")
    finally:
        await conn.close()


def summary(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    print(
        f"{name}: median {statistics.median(ms):.1f} ms, min {ms[0]:.1f} ms, "
        f"max {ms[-1]:.1f} ms over {len(ms)} runs"
    )


async def timed_exposure(
    conn: asyncpg.Connection,
    coverage: Coverage,
    since: datetime,
    until: datetime,
    runs: int,
    weights: RiskWeights,
) -> tuple[list[float], float]:
    """Seconds per read of the exposure, and the km it found."""
    samples, km = [], 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        rows = await exposure(
            conn,
            coverage,
            since,
            until,
            gap_s=weights.segment_gap_s,
            min_kmh=weights.driving_min_kmh,
        )
        samples.append(time.perf_counter() - t0)
        km = sum(r.km for r in rows)
    return samples, km


async def measure_exposure(url: str, runs: int, end: datetime, days: int) -> None:
    """The vehicle's exposure over the window, read from the fixes (nothing rolled up
    yet), then the roll-up of every closed hour, then the same read from the rollups."""
    weights = load_weights()
    gap_s, min_kmh = weights.segment_gap_s, weights.driving_min_kmh
    coverage = Coverage.of("events", [("BENCH-1", end - timedelta(days=400), end)])
    since = end - timedelta(days=days)
    conn = await asyncpg.connect(url)
    try:

        async def timed() -> tuple[list[float], float]:
            return await timed_exposure(conn, coverage, since, end, runs, weights)

        from_fixes, km_fixes = await timed()
        t0 = time.perf_counter()
        hours = 0
        later = end + timedelta(hours=2)  # every hour of the data has closed
        while done := await roll_up(conn, now=later, gap_s=gap_s, min_kmh=min_kmh):
            hours += done
        rolled_s = time.perf_counter() - t0
        from_rollups, km_rollups = await timed()
    finally:
        await conn.close()
    summary(f"{days}-day exposure from the fixes ({km_fixes:,.1f} km)", from_fixes)
    print(
        f"roll-up of {hours} vehicle-hours: {rolled_s:.1f} s "
        f"({hours / rolled_s:,.0f} vehicle-hours/s)"
    )
    summary(f"{days}-day exposure from the rollups ({km_rollups:,.1f} km)", from_rollups)
    print(
        f"ratio fixes / rollups (medians): "
        f"{statistics.median(from_fixes) / statistics.median(from_rollups):,.0f}"
    )


async def measure_fleet_exposure(url: str, fleet: int, runs: int, end: datetime, days: int) -> None:
    """A fleet's exposure as the scores read it: ``fleet`` vehicles, each with ``days``
    of rolled-up hours (synthetic rollup rows) and real 1 Hz fixes in the open hour, of
    which the server has summed the slices that closed ``ROLLUP_DELAY`` ago: read at 34
    minutes past, 9 minutes of fixes a vehicle are not summed yet, the average (the
    delay, half a slice and half the roll-up job's minute)."""
    weights = load_weights()
    gap_s, min_kmh = weights.segment_gap_s, weights.driving_min_kmh
    vehicles = [f"FLEET-{i:04d}" for i in range(fleet)]
    current = end.replace(minute=0, second=0)
    # the data are synthetic, so the time may be ahead
    end = current + timedelta(minutes=34)
    raw_from = rolled_until(end)  # what the server has not rolled up yet at `end`
    fixes_from = current  # rolled-up slices with fixes before the raw ones
    since = current - timedelta(days=days)
    first_hour = since - HOUR
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        await registry.add_vehicles(
            conn, [registry.NewVehicle(v, "FLEET", "coach") for v in vehicles]
        )
        # marks of the synthetic hours: seqs as if one fix a second from first_hour
        await conn.execute(
            """INSERT INTO telemetry_hours (vehicle_id, hour, first_seq)
               SELECT v, h, 1 + extract(epoch FROM h - $2)::bigint
               FROM unnest($1::text[]) AS v,
                    generate_series($2::timestamptz, $3::timestamptz - interval '1 hour',
                                    interval '1 hour') AS h""",
            vehicles,
            first_hour,
            fixes_from,
        )
        fixes_s = int((end - fixes_from).total_seconds())
        await conn.execute("SELECT ensure_month_partitions($1::date)", fixes_from.date())
        await conn.execute(
            """INSERT INTO telemetry (vehicle_id, seq, ts, lat, lon, speed_kmh, heading_deg,
                                      driver_id)
               SELECT v, $3 + g, $2::timestamptz + make_interval(secs => g),
                      31.3 + 0.05 * sin(g / 3600.0), 120.6 + 0.05 * cos(g / 3600.0),
                      (40 + 30 * sin(g / 600.0))::real, (g % 360)::real, 'D-' || v
               FROM unnest($1::text[]) AS v, generate_series(0, $4::int - 1) AS g""",
            vehicles,
            fixes_from,
            1 + int((fixes_from - first_hour).total_seconds()),
            fixes_s,
        )
        await conn.execute(
            """INSERT INTO telemetry_hours (vehicle_id, hour, first_seq)
               SELECT vehicle_id, date_trunc('hour', ts), min(seq) FROM telemetry
               WHERE vehicle_id LIKE 'FLEET-%' GROUP BY 1, 2"""
        )
        # everything before raw_from rolled up (rollup rows are synthetic: 42 km an hour)
        # and, as the roll-up leaves it, the open hour's first seq to read: the fix gap_s
        # before raw_from (seq = 1 + seconds since first_hour)
        await conn.execute(
            """UPDATE telemetry_hours SET rolled_version = version,
                   rolled_s = least(3600, extract(epoch FROM $1 - hour))::int,
                   rolled_seq = CASE WHEN hour = $2 THEN $3::bigint END
               WHERE vehicle_id LIKE 'FLEET-%' AND hour < $1""",
            raw_from,
            current,
            1 + int((raw_from - timedelta(seconds=gap_s) - first_hour).total_seconds()),
        )
        await conn.execute(
            """INSERT INTO exposure_hours (vehicle_id, hour, driver_id, km, driving_s)
               SELECT vehicle_id, hour, 'D-' || vehicle_id, 42.0 * rolled_s / 3600,
                      rolled_s * 0.8
               FROM telemetry_hours
               WHERE vehicle_id LIKE 'FLEET-%' AND rolled_version IS NOT NULL"""
        )
        await conn.execute(
            """INSERT INTO exposure_rollup_params (gap_s, min_kmh) VALUES ($1, $2)
               ON CONFLICT (only_row) DO UPDATE SET gap_s = $1, min_kmh = $2""",
            gap_s,
            min_kmh,
        )
        raw_s = int((end - raw_from).total_seconds())
        # as autovacuum leaves the rollups of past hours: pages all-visible (sql/016)
        await conn.execute("VACUUM ANALYZE exposure_hours")
        await conn.execute("ANALYZE")
        loaded = time.perf_counter() - t0
        coverage = Coverage.of("events", [(v, since - timedelta(days=1), end) for v in vehicles])
        samples, km = await timed_exposure(conn, coverage, since, end, runs, weights)
    finally:
        await conn.close()
    print(
        f"fleet of {fleet:,} vehicles: {days} days of rollups, {fleet * raw_s:,} fixes "
        f"of the last {raw_s / 60:.0f} min (loaded in {loaded:.1f} s)"
    )
    summary(f"{days}-day exposure of the whole fleet ({km:,.0f} km)", samples)


async def measure(url: str, key: str, runs: int, end: datetime, days: int) -> None:
    app = build_app(Settings(host="127.0.0.1", port=0), url)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/insurer"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            claims: list[float] = []
            for n in range(runs):
                at = end - timedelta(days=days * (n + 1) / (runs + 1))
                body: dict[str, Any] = {
                    "vehicle_id": "BENCH-1",
                    "occurred_at": at.isoformat(),
                    "description": "bench",
                }
                t0 = time.perf_counter()
                async with http.post(
                    base + "/claims", json=body, headers={"Idempotency-Key": f"b{n}"}
                ) as resp:
                    data = await resp.json()
                    assert resp.status == 201, data
                claims.append(time.perf_counter() - t0)
            async with http.get(base + f"/claims/{data['claim']['id']}/evidence") as resp:
                packet = await resp.json()
            print(
                f"evidence packet: {len(packet['speed_trace'])} fixes, "
                f"{len(packet['tire_readings'])} tire readings, {len(packet['alarms'])} alarms"
            )
            summary("claim + evidence packet build (POST /claims)", claims)
            pages: list[float] = []
            cursor = ""
            for _ in range(runs):
                t0 = time.perf_counter()
                async with http.get(base + f"/feed?limit=1000&cursor={cursor}") as resp:
                    page = await resp.json()
                pages.append(time.perf_counter() - t0)
                assert len(page["items"]) == 1000, len(page["items"])
                cursor = page["next_cursor"]
            summary("feed page of 1,000 alarms (GET /feed?limit=1000)", pages)
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--alarms", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--fleet", type=int, default=1800, help="vehicles for the fleet read")
    parser.add_argument("--fleet-only", action="store_true", help="only the fleet read")
    args = parser.parse_args()
    end = datetime.now(UTC).replace(microsecond=0)
    external = os.environ.get("TELEMATICS_DATABASE_URL")
    server: Any = None
    if external:
        admin = external
    else:
        import pgserver

        server = pgserver.get_server(
            Path(tempfile.mkdtemp(prefix="insurer-bench-")), cleanup_mode="delete"
        )
        admin = server.get_uri("postgres")
    name = f"insurer_bench_{os.getpid()}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    url = with_database(admin, name)
    try:
        key = await load(url, 0 if args.fleet_only else args.days, args.alarms, end)
        if not args.fleet_only:
            await measure_exposure(url, args.runs, end, args.days)
        if args.fleet:
            await measure_fleet_exposure(url, args.fleet, args.runs, end, args.days)
        if args.fleet_only:
            return
        await measure(url, key, args.runs, end, args.days)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
