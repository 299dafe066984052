"""Telemetry by vehicle and time through the hour marks (sql/009), not a second index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tests.helpers import RunningServer, Unit, add_vehicle, telemetry


async def test_time_ranges_find_every_fix_across_hours(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    token = await add_vehicle(server.db_url)
    unit = await Unit.connect(server.ws_url, token)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    times = [
        hour - timedelta(minutes=50),
        hour - timedelta(seconds=1),
        hour,
        hour + timedelta(minutes=59, seconds=59),
        hour + timedelta(hours=1, seconds=5),
    ]
    for seq, ts in enumerate(times, start=1):
        await unit.send(telemetry(seq, ts=ts))
    await unit.ack_reaching(len(times))
    marks = await db.fetch("SELECT hour, first_seq FROM telemetry_hours ORDER BY hour")
    assert [(m["hour"], m["first_seq"]) for m in marks] == [
        (hour - timedelta(hours=1), 1),
        (hour, 3),
        (hour + timedelta(hours=1), 5),
    ]

    async def fixes(t0: datetime, t1: datetime) -> list[int]:
        rows = await db.fetch(
            """SELECT t.seq FROM telemetry_seq_range('SU-E12345', $1, $2) r
               JOIN telemetry t ON t.vehicle_id = 'SU-E12345' AND t.seq >= r.lo AND t.seq < r.hi
               WHERE t.ts >= $1 AND t.ts < $2 ORDER BY t.seq""",
            t0,
            t1,
        )
        return [r["seq"] for r in rows]

    assert await fixes(hour - timedelta(seconds=5), hour + timedelta(seconds=5)) == [2, 3]
    assert await fixes(hour - timedelta(hours=2), hour + timedelta(hours=2)) == [1, 2, 3, 4, 5]
    assert await fixes(hour + timedelta(minutes=30), hour + timedelta(hours=1, minutes=1)) == [4, 5]
    await unit.close()
