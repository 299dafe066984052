"""The batch writer against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from telematics.pipeline import StorePlan
from telematics.store.writer import BatchWriter
from tests.helpers import add_vehicle


def _plan(vehicle_id: str, seq: int, lat: object = 31.3) -> StorePlan:
    now = datetime.now(UTC)
    row = (vehicle_id, seq, now, lat, 120.6, 50.0, None, None, None, None, None)
    return StorePlan(vehicle_id, telemetry=[row], min_seq=seq, max_seq=seq)


async def test_unstorable_plan_is_isolated_and_kept(db_url: str, db: asyncpg.Connection) -> None:
    """A plan the database cannot take is kept as rejected items; its neighbours commit."""
    await add_vehicle(db_url, "A")
    await add_vehicle(db_url, "B")
    writer = BatchWriter(db_url)
    done: list[int] = []
    task = asyncio.create_task(writer.run())
    await writer.submit(_plan("A", 1), lambda p: done.append(p.max_seq))
    await writer.submit(_plan("B", 1, lat="not a number"), lambda p: done.append(p.max_seq))
    await writer.submit(_plan("A", 2), lambda p: done.append(p.max_seq))
    await writer.close()
    await asyncio.wait_for(task, 10)
    assert sorted(done) == [1, 1, 2]  # every plan was answered (acked)
    rows = await db.fetch("SELECT vehicle_id, seq FROM telemetry ORDER BY vehicle_id, seq")
    assert [(r["vehicle_id"], r["seq"]) for r in rows] == [("A", 1), ("A", 2)]
    kept = await db.fetchrow("SELECT vehicle_id, seq, reason FROM rejected_items")
    assert kept["vehicle_id"] == "B" and kept["seq"] == 1
    assert kept["reason"].startswith("storage refused")
    assert await db.fetchval("SELECT last_seq FROM ingest_cursor WHERE vehicle_id = 'B'") == 1


async def test_flush_timings_are_recorded(db_url: str) -> None:
    """Each flush records its duration, its items and its oldest plan's wait for commit."""
    await add_vehicle(db_url, "A")
    writer = BatchWriter(db_url, min_interval_s=0.0)
    task = asyncio.create_task(writer.run())
    done = asyncio.Event()
    await writer.submit(_plan("A", 1), lambda p: None)
    await asyncio.sleep(0.2)  # committed alone
    await writer.submit(_plan("A", 2), lambda p: None)
    await writer.submit(_plan("A", 3), lambda p: done.set())
    await asyncio.wait_for(done.wait(), 10)
    await writer.close()
    await asyncio.wait_for(task, 10)
    stats = writer.stats
    assert stats.flushes == len(stats.flush_ms) == len(stats.flush_items)
    assert sum(stats.flush_items) == 3 and stats.flush_items[0] == 1
    assert len(stats.commit_wait_ms) == stats.flushes
    assert all(ms > 0 for ms in stats.flush_ms)
    # a plan waits at least for its own flush
    assert all(w >= f for w, f in zip(stats.commit_wait_ms, stats.flush_ms, strict=True))


async def test_a_big_batch_does_not_wait_for_the_interval(db_url: str) -> None:
    """Group commit lingers only while the batch is small."""
    await add_vehicle(db_url, "A")
    writer = BatchWriter(db_url, min_interval_s=30.0, linger_below=10)
    task = asyncio.create_task(writer.run())
    first, big = asyncio.Event(), asyncio.Event()
    await writer.submit(_plan("A", 1), lambda p: first.set())
    await asyncio.wait_for(first.wait(), 10)  # the first flush never waits
    await writer.submit(_plan("A", 2), lambda p: None)
    await asyncio.sleep(0.3)  # the writer is gathering a batch (30 s at most)
    for seq in range(3, 7):  # 5 plans of size 2 in all: the linger's threshold
        await writer.submit(_plan("A", seq), lambda p: big.set() if p.max_seq == 6 else None)
    await asyncio.wait_for(big.wait(), 10)  # woken at once, not after the interval
    await writer.close()
    await asyncio.wait_for(task, 10)


async def test_backlog_is_released_exactly_after_replays_and_rejections(db_url: str) -> None:
    """Plans whose rows shrink in the flush (a replay already stored, a plan the database
    refuses) still release the backlog they took: it drops back to zero."""
    await add_vehicle(db_url, "A")
    writer = BatchWriter(db_url, min_interval_s=0.0)
    task = asyncio.create_task(writer.run())
    stored = asyncio.Event()
    await writer.submit(_plan("A", 1), lambda p: None)
    await writer.submit(_plan("A", 2), lambda p: stored.set())
    await asyncio.wait_for(stored.wait(), 10)
    replay = _plan("A", 1)  # committed already: the flush drops its row
    replay.telemetry.append(_plan("A", 2).telemetry[0])
    replay.max_seq = 2
    await writer.submit(replay, lambda p: None)
    await writer.submit(_plan("A", 3, lat="not a number"), lambda p: None)
    await writer.close()
    await asyncio.wait_for(task, 10)
    assert writer.stats.duplicates_dropped == 2
    assert writer.backlog == 0


async def test_partitions_only_for_the_months_that_occur(
    db_url: str, db: asyncpg.Connection
) -> None:
    """A clock that jumped back years (GPS week rollover) costs two months' partitions,
    not one per month in between; both readings are stored."""
    await add_vehicle(db_url, "A")
    old = datetime(2007, 3, 14, 12, 0, tzinfo=UTC)
    rows = [
        ("A", 1, old, 31.3, 120.6, 50.0, None, None, None, None, None),
        ("A", 2, datetime.now(UTC), 31.3, 120.6, 50.0, None, None, None, None, None),
    ]
    writer = BatchWriter(db_url)
    task = asyncio.create_task(writer.run())
    await writer.submit(StorePlan("A", telemetry=rows, min_seq=1, max_seq=2), lambda p: None)
    await writer.close()
    await asyncio.wait_for(task, 10)
    assert await db.fetchval("SELECT count(*) FROM telemetry") == 2
    months = await db.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry'::regclass"
        " AND inhrelid::regclass::text LIKE 'telemetry_20%'"
    )
    assert await db.fetchval("SELECT to_regclass('telemetry_2007_03') IS NOT NULL")
    assert await db.fetchval("SELECT to_regclass('telemetry_2007_04') IS NULL")
    assert months <= 4  # 2007-03 and this month (and any the migrations made)


async def test_offer_queues_while_there_is_room_and_refuses_a_full_backlog(db_url: str) -> None:
    """``offer`` is ``submit`` without waiting: a full backlog refuses the plan and queues
    nothing; once a flush commits, there is room again."""
    await add_vehicle(db_url, "A")
    writer = BatchWriter(db_url, max_pending=2, min_interval_s=0.0)
    acked: list[int] = []
    assert writer.offer(_plan("A", 1), lambda p: acked.append(p.max_seq))  # size 2: now full
    assert not writer.offer(_plan("A", 2), lambda p: acked.append(p.max_seq))
    assert writer.backlog == 2
    task = asyncio.create_task(writer.run())
    for _ in range(200):
        if acked:
            break
        await asyncio.sleep(0.05)
    assert acked == [1] and writer.backlog == 0
    assert writer.offer(_plan("A", 3), lambda p: acked.append(p.max_seq))
    await writer.close()
    await asyncio.wait_for(task, 10)
    assert acked == [1, 3]
