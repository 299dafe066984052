"""The batch writer finds rows by key however big its tables have grown.

Regressions: the cursor lock joined the flush's JSON rows, whose number the planner
cannot know, and PostgreSQL answered with a hash join over every vehicle's cursor in
every flush. And on a fresh database the writer's cached plans were made against empty
tables and scanned alarms and interventions whole until the first ANALYZE. Each test
grows the tables after the plans were cached, flushes again and reads what the writer's
backend scanned.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from telematics.classify.context import load_policy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.pipeline import StorePlan, VehicleProcessor
from telematics.protocol.messages import ADAS_KINDS, DSM_KINDS, DeviceEvent, InterventionAck
from telematics.store import registry
from telematics.store.writer import REPLAN_FIRST, BatchWriter

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


async def _scans_after_growth(
    db_url: str, db: asyncpg.Connection, analyze: bool, clock_jump: timedelta
) -> dict[str, int]:
    """Flush on empty tables until PostgreSQL caches the plans, grow the tables (then
    ANALYZE them, or move the writer's clock on by ``clock_jump``), flush again; the rows
    the writer's backend read by whole-table scans, per table."""
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
    now = datetime.now(UTC)
    writer = BatchWriter(db_url, min_interval_s=0.0, clock=lambda: now)
    task = asyncio.create_task(writer.run())

    async def round_of_flushes(seq: int) -> None:
        """Each vehicle raises an alarm (intervention, lifecycle rows) and its unit
        reports the previous intervention played (a device status)."""
        kind = next(kinds)
        committed = asyncio.Event()
        left = len(VEHICLES)

        def done(plan: StorePlan) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                committed.set()

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
        if analyze:
            await db.execute(f"ANALYZE {', '.join(KEYED_TABLES)}")
        now += clock_jump
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
    read = await _seq_tuples_read(db)
    assert set(read) == set(KEYED_TABLES)
    return read


async def test_flushes_look_rows_up_by_key_once_autovacuum_analyzed(
    db_url: str, db: asyncpg.Connection
) -> None:
    """The cursor lock scanned every cursor in every flush, analyzed or not."""
    read = await _scans_after_growth(db_url, db, analyze=True, clock_jump=timedelta(0))
    # Scanning a grown table once reads GROWN rows (this connection reads them by key).
    assert all(n < GROWN for n in read.values()), read


async def test_plans_cached_on_empty_tables_are_dropped_as_they_grow(
    db_url: str, db: asyncpg.Connection
) -> None:
    """Before any ANALYZE, alarms and interventions were scanned whole in every flush
    after the tables grew; the writer's next replanning ends that."""
    read = await _scans_after_growth(db_url, db, analyze=False, clock_jump=REPLAN_FIRST)
    assert all(n < GROWN for n in read.values()), read
