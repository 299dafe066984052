"""The batch writer finds rows by key however big its tables have grown.

Regression: the cursor lock joined the flush's JSON rows, whose number the planner cannot
know, and PostgreSQL answered with a hash join over every vehicle's cursor, in every
flush. The test grows the tables, analyzes them as autovacuum would, flushes again and
reads what the writer's backend scanned.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import asyncpg

from telematics.classify.context import load_policy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.pipeline import StorePlan, VehicleProcessor
from telematics.protocol.messages import ADAS_KINDS, DSM_KINDS, DeviceEvent, InterventionAck
from telematics.store import registry
from telematics.store.writer import BatchWriter

POLICY = load_policy()
KEYED_TABLES = ("alarms", "interventions", "ingest_cursor")
GROWN = 3000  # rows added to each table after the statements were first planned
VEHICLES = ("V1", "V2", "V3")


async def _register(db: asyncpg.Connection, ids: list[str]) -> None:
    await registry.add_vehicles(db, [registry.NewVehicle(i, "F1", "coach", None) for i in ids])


async def _grow(db: asyncpg.Connection) -> None:
    """Bulk rows for other vehicles, as months of history would leave them."""
    await _register(db, [f"H{n}" for n in range(GROWN)])
    await db.execute(
        """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived, first_seq,
                               first_ts, last_seq, last_ts, lat, lon, speed_kmh, rules_version)
           SELECT 'old-' || n, 'H' || n, 'fatigue', 'fatigue', 'general', 'history', false,
                  1, now(), 1, now(), 31.3, 120.6, 50, 'test'
           FROM generate_series(0, $1 - 1) AS n""",
        GROWN,
    )
    await db.execute(
        """INSERT INTO interventions (id, alarm_id, vehicle_id, severity, action, message,
                                      cause_seq, cause_kind, issued_at, status_at)
           SELECT 'old-' || n, 'old-' || n, 'H' || n, 'general', 'voice', 'history', 1,
                  'fatigue', now(), now()
           FROM generate_series(0, $1 - 1) AS n""",
        GROWN,
    )


async def _seq_tuples_read(db: asyncpg.Connection) -> dict[str, int]:
    await db.execute("SELECT pg_stat_clear_snapshot()")
    rows = await db.fetch(
        "SELECT relname, seq_tup_read FROM pg_stat_user_tables WHERE relname = ANY($1::text[])",
        list(KEYED_TABLES),
    )
    return {r["relname"]: r["seq_tup_read"] for r in rows}


async def _backends_gone(db: asyncpg.Connection, pids: list[int]) -> None:
    """A backend reports its table statistics when it exits; wait for that."""
    for _ in range(100):
        left = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        )
        if left == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the writer's backend did not exit")


async def test_flushes_look_rows_up_by_key_after_the_tables_grew(
    db_url: str, db: asyncpg.Connection
) -> None:
    await _register(db, list(VEHICLES))
    ids = (f"id{n}" for n in itertools.count())
    processors = {
        v: VehicleProcessor(
            Vehicle(v, "F1", "coach", None, CLASS_PROFILES["coach"].tire_layout, 850.0),
            POLICY,
            new_id=lambda: next(ids),
        )
        for v in VEHICLES
    }
    issued: dict[str, list[str]] = {v: [] for v in VEHICLES}
    kinds = iter(DSM_KINDS[:6] + ADAS_KINDS[:6])  # a new behaviour, so a new alarm, each round
    writer = BatchWriter(db_url, min_interval_s=0.0)
    task = asyncio.create_task(writer.run())

    async def round_of_flushes(seq: int) -> None:
        """Each vehicle raises an alarm (intervention, lifecycle rows) and its unit
        reports the previous intervention played (a device status): one flush."""
        kind = next(kinds)
        committed = asyncio.Event()
        left = len(VEHICLES)

        def done(plan: StorePlan) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                committed.set()

        now = datetime.now(UTC)
        for v, processor in processors.items():
            event = DeviceEvent(seq, now, kind, 2, 31.3, 120.6, 90.0, "D1", None, None)
            acks = [InterventionAck(i, "played") for i in issued[v][-1:]]
            plan = processor.process([event], [], acks, now)
            assert plan.alarms and plan.interventions
            issued[v].extend(i.id for i in plan.interventions)
            await writer.submit(plan, done)
        await asyncio.wait_for(committed.wait(), 10)

    try:
        for seq in range(1, 9):  # enough runs for PostgreSQL to cache a plan
            await round_of_flushes(seq)
        pids = [
            r["pid"]
            for r in await db.fetch(
                """SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            )
        ]
        await _grow(db)
        await db.execute(f"ANALYZE {', '.join(KEYED_TABLES)}")  # as autovacuum would soon
        for seq in range(9, 13):
            await round_of_flushes(seq)
    finally:
        await writer.close()
        await asyncio.wait_for(task, 10)
    await _backends_gone(db, pids)

    statuses = await db.fetchval(
        "SELECT count(*) FROM interventions WHERE status = 'played' AND vehicle_id = ANY($1)",
        list(VEHICLES),
    )
    assert statuses == 11 * len(VEHICLES)  # the flushes did their work
    # Scanning a grown table once reads GROWN rows; the statistics keep what the writer's
    # backend read in all (this connection reads these tables only by key).
    read = await _seq_tuples_read(db)
    assert set(read) == set(KEYED_TABLES)
    assert all(n < GROWN for n in read.values()), read
